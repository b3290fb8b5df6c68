{{/* Names: <release>-<chart>, shortened to 63 characters, as Kubernetes names allow. */}}
{{- define "rds-csi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rds-csi.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rds-csi.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "rds-csi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "controller"). */}}
{{- define "rds-csi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rds-csi.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rds-csi.componentLabels" -}}
{{ include "rds-csi.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rds-csi.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A sidecar image reference; call with the sidecar's values. */}}
{{- define "rds-csi.sidecarImage" -}}
{{- printf "%s:%s" .image.repository .image.tag }}
{{- end }}

{{/*
The name of a controller sidecar's HTTP port (metrics, leader-election health), by its key under
sidecars. The Deployment's container ports and the metrics Service both use it. A port name is at
most 15 characters: the API server refuses longer ones.
*/}}
{{- define "rds-csi.sidecarPort" -}}
{{- get (dict "provisioner" "provision-http" "attacher" "attacher-http" "resizer" "resizer-http" "snapshotter" "snapshot-http") . }}
{{- end }}

{{- define "rds-csi.controllerServiceAccount" -}}
{{- printf "%s-controller" (include "rds-csi.fullname" .) }}
{{- end }}

{{- define "rds-csi.nodeServiceAccount" -}}
{{- printf "%s-node" (include "rds-csi.fullname" .) }}
{{- end }}

{{- define "rds-csi.sshSecretName" -}}
{{- default (printf "%s-ssh" (include "rds-csi.fullname" .)) .Values.sshKey.existingSecret }}
{{- end }}

{{- define "rds-csi.sshSecretKey" -}}
{{- if .Values.sshKey.existingSecret }}{{ .Values.sshKey.existingSecretKey }}{{ else }}id_ed25519{{ end }}
{{- end }}

{{/* Where the controller finds the key: the file name inside the projected /etc/rds-csi. */}}
{{- define "rds-csi.privateKeyFile" -}}
/etc/rds-csi/id_ed25519
{{- end }}

{{/* The kubelet's directory for this driver's socket. */}}
{{- define "rds-csi.pluginDir" -}}
{{- printf "%s/plugins/%s" (trimSuffix "/" .Values.node.kubeletDir) .Values.config.driverName }}
{{- end }}

{{/*
A TOML basic string. JSON string escapes (\" \\ \n \uXXXX …) are all valid TOML escapes, so a
JSON-encoded string is a correct TOML string whatever the value holds.
*/}}
{{- define "rds-csi.tomlString" -}}
{{- toJson (toString .) }}
{{- end }}

{{/*
A TOML integer from a value that must be a whole number, given as a number or a string; fails
rendering otherwise. YAML numbers arrive as float64, which must not print in exponent form.
Call with (dict "name" "config.rds.sshPort" "value" .Values.config.rds.sshPort).
*/}}
{{- define "rds-csi.tomlInt" -}}
{{- $v := .value }}
{{- if kindIs "string" $v }}
{{- if not (regexMatch "^[0-9]+$" $v) }}
{{- fail (printf "%s must be a whole number, got %q" .name $v) }}
{{- end }}
{{- $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- if or (lt (float64 $v) 0.0) (ne (float64 $v) (floor $v)) }}
{{- fail (printf "%s must be a whole number, got %v" .name $v) }}
{{- end }}
{{- int64 $v }}
{{- else }}
{{- fail (printf "%s must be a whole number, got %v" .name $v) }}
{{- end }}
{{- end }}

{{- define "rds-csi.hostKey" -}}
{{- required "config.rds.hostKey is required: the driver pins the RDS's SSH host key and refuses any other. Get the fingerprint from a machine that reaches the RDS with `ssh-keyscan <rds> | ssh-keygen -lf -` (check it on the RDS's console), then pass the SHA256:... value (or a known_hosts line) with --set config.rds.hostKey=SHA256:..." .Values.config.rds.hostKey }}
{{- end }}

{{- define "rds-csi.address" -}}
{{- required "config.rds.address is required: the RDS's SSH address, e.g. --set config.rds.address=10.0.0.5" .Values.config.rds.address }}
{{- end }}

{{/* Fails rendering when the chart has no SSH key to give the controller. */}}
{{- define "rds-csi.checkSshKey" -}}
{{- if and (not .Values.sshKey.existingSecret) (not .Values.sshKey.privateKey) }}
{{- fail "an SSH private key is required: pass it with --set-file sshKey.privateKey=./id_ed25519, or name a Secret that holds it with --set sshKey.existingSecret=NAME (key: sshKey.existingSecretKey)" }}
{{- end }}
{{- end }}

{{/* Fails rendering when a feature that needs snapshots is on without them. */}}
{{- define "rds-csi.checkSnapshots" -}}
{{- if and .Values.snapshotSchedule.enabled (not .Values.snapshots.enabled) }}
{{- fail "snapshotSchedule.enabled needs snapshots.enabled=true (the external-snapshotter sidecar and the VolumeSnapshotClass)" }}
{{- end }}
{{- end }}

{{/* Fails rendering when the snapshot schedule's values cannot make a working run. */}}
{{- define "rds-csi.checkSnapshotSchedule" -}}
{{- $sched := .Values.snapshotSchedule }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" (toString $sched.name)) }}
{{- fail (printf "snapshotSchedule.name %q must be 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit (it is a label value)" (toString $sched.name)) }}
{{- end }}
{{- if eq (not $sched.selector) (not $sched.pvcs) }}
{{- fail "snapshotSchedule needs exactly one of selector (a label selector, e.g. --set snapshotSchedule.selector=backup=daily) or pvcs (a list of PVC names)" }}
{{- end }}
{{- if and $sched.allNamespaces $sched.pvcs }}
{{- fail "snapshotSchedule.allNamespaces works with selector, not with pvcs: PVC names are looked up in snapshotSchedule.namespace" }}
{{- end }}
{{- if and (eq (include "rds-csi.tomlInt" (dict "name" "snapshotSchedule.keep" "value" $sched.keep)) "0") (not $sched.maxAge) }}
{{- fail "snapshotSchedule needs a retention: keep (snapshots kept per PVC) or maxAge (e.g. 30d), or both" }}
{{- end }}
{{- end }}
