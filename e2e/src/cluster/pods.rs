//! Runs a pod template the chart installed as local processes, one per container, so that what is
//! tested is the chart's own wiring: each container's args and env as the API server stored them,
//! its volumes made from the real ConfigMaps and Secrets, and the ServiceAccount's RBAC (its
//! kube-API clients get a kubeconfig holding a token of the pod's ServiceAccount).
//!
//! What differs from a kubelet: no container runtime, so an image is mapped to a binary built here
//! (the image's tag must be the version built), a container path under a volume's mountPath is
//! rewritten to the volume's directory on this host (hostPath volumes are the host's own paths, as
//! with Bidirectional propagation), an HTTP endpoint on a fixed port is moved to a free loopback
//! port (several clusters run at once), and an image no binary is built for is not run (the caller
//! names which, and who does its job).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, PodSpec, Secret, Volume};
use kube::{Api, Client};

use super::process::Process;
use crate::qemu::free_local_port;

/// Where a container's image comes from on this host.
pub enum Image {
    /// A binary built here for this image.
    Binary(PathBuf),
    /// Not run: the reason says why and who stands in for it.
    NotRun(&'static str),
}

/// What a pod needs from its surroundings.
pub struct PodContext<'a> {
    pub client: Client,
    pub namespace: &'a str,
    /// The node the pod runs on, for `spec.nodeName` field references.
    pub node_name: &'a str,
    /// The pod's name, its containers' host name (`HOSTNAME`, and `os.Hostname()` in a UTS
    /// namespace of their own); `None`: the host's, as in a pod on the host network.
    pub pod_name: Option<&'a str>,
    /// A kubeconfig of the pod's ServiceAccount, passed to containers with `--kubeconfig` when the
    /// image talks to the API server.
    pub kubeconfig: Option<&'a Path>,
    /// The binary of an image (`registry/…/name:tag`).
    pub image: &'a dyn Fn(&str) -> anyhow::Result<Image>,
    /// Environment added to a container (by name): how this host's pod differs on purpose.
    pub extra_env: &'a dyn Fn(&str) -> Vec<(String, String)>,
    /// The node's kubelet directory as the chart names it (`/var/lib/kubelet`) and where this
    /// node's kubelet stand-in keeps it: hostPath volumes under it are the stand-in's, so that
    /// nodes sharing this host keep their plugin sockets and mounts apart.
    pub kubelet_dir: Option<(&'a str, &'a Path)>,
}

/// The processes of a pod.
pub struct LocalPod {
    processes: Vec<Process>,
    /// The directory of every non-hostPath volume, by volume name.
    volumes: BTreeMap<String, PathBuf>,
    /// Containers not run, with why.
    pub not_run: Vec<(String, &'static str)>,
}

impl LocalPod {
    /// Starts every container of `spec` under `dir` (volumes in `dir/volumes`, logs in `logs`).
    pub async fn start(
        name: &str,
        spec: &PodSpec,
        context: &PodContext<'_>,
        dir: &Path,
        logs: &Path,
    ) -> anyhow::Result<LocalPod> {
        let mut volumes = BTreeMap::new();
        for volume in spec.volumes.iter().flatten() {
            if let Some(host_path) = &volume.host_path {
                // Other host paths (/dev, /sys, /lib/modules) are this host's own.
                if let Some(path) = kubelet_path(&host_path.path, context.kubelet_dir) {
                    std::fs::create_dir_all(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    volumes.insert(volume.name.clone(), path);
                }
                continue;
            }
            let path = dir.join("volumes").join(&volume.name);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            fill_volume(volume, &path, context).await?;
            volumes.insert(volume.name.clone(), path);
        }
        let mut pod = LocalPod {
            processes: Vec::new(),
            volumes,
            not_run: Vec::new(),
        };
        for container in &spec.containers {
            let image = container.image.as_deref().unwrap_or_default();
            match (context.image)(image)? {
                Image::NotRun(why) => pod.not_run.push((container.name.clone(), why)),
                Image::Binary(binary) => {
                    let args = pod.args(container, context)?;
                    let env = pod.env(container, context);
                    let process_name = format!("{name}-{}", container.name);
                    pod.processes.push(Process::spawn_on_host(
                        &process_name,
                        context.pod_name,
                        &binary,
                        &args,
                        &env,
                        logs,
                    )?);
                }
            }
        }
        Ok(pod)
    }

    /// The host directory of the volume `name` (an emptyDir, ConfigMap, Secret or projected one).
    pub fn volume(&self, name: &str) -> anyhow::Result<&Path> {
        self.volumes
            .get(name)
            .map(PathBuf::as_path)
            .with_context(|| format!("the pod has no volume {name} on this host"))
    }

    /// Fails, quoting its log, when a container has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.processes
            .iter_mut()
            .try_for_each(Process::check_running)
    }

    pub fn processes(&mut self) -> &mut [Process] {
        &mut self.processes
    }

    pub async fn stop(self) {
        for process in self.processes {
            process.stop().await;
        }
    }

    /// Stops every container as kubelet deletes a pod: SIGTERM to all at once, then each may take
    /// `grace` to exit. Returns each process's name and exit status.
    pub async fn terminate(
        self,
        grace: std::time::Duration,
    ) -> anyhow::Result<Vec<(String, std::process::ExitStatus)>> {
        for process in &self.processes {
            process.terminate()?;
        }
        let mut statuses = Vec::new();
        for process in self.processes {
            let name = process.name().to_owned();
            statuses.push((name, process.exited(grace).await?));
        }
        Ok(statuses)
    }

    /// The container's args with its paths and ports made this host's.
    fn args(&self, container: &Container, context: &PodContext<'_>) -> anyhow::Result<Vec<String>> {
        let mounts = self.mounts(container);
        let mut args = Vec::new();
        for arg in container.args.iter().flatten() {
            let arg = expand_env(arg, &self.env(container, context));
            args.push(match arg.split_once("--http-endpoint=") {
                Some(("", _)) => format!("--http-endpoint=127.0.0.1:{}", free_local_port()?),
                _ => rewrite_paths(&arg, &mounts),
            });
        }
        if let Some(kubeconfig) = context.kubeconfig
            && talks_to_api_server(container)
        {
            args.push(format!("--kubeconfig={}", kubeconfig.display()));
        }
        Ok(args)
    }

    /// Container path prefix → host directory, longest first.
    fn mounts(&self, container: &Container) -> Vec<(String, PathBuf)> {
        let mut mounts: Vec<(String, PathBuf)> = container
            .volume_mounts
            .iter()
            .flatten()
            .filter_map(|m| {
                let dir = self.volumes.get(&m.name)?;
                let dir = m.sub_path.as_deref().map_or(dir.clone(), |s| dir.join(s));
                Some((m.mount_path.trim_end_matches('/').to_owned(), dir))
            })
            .collect();
        mounts.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        mounts
    }

    fn env(&self, container: &Container, context: &PodContext<'_>) -> Vec<(String, String)> {
        let mounts = self.mounts(container);
        let mut env: Vec<(String, String)> = container
            .env
            .iter()
            .flatten()
            .filter_map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (Some(value), _) => rewrite_paths(value, &mounts),
                    (None, Some(from)) => field_value(from.field_ref.as_ref()?, context)?,
                    (None, None) => String::new(),
                };
                Some((var.name.clone(), value))
            })
            .collect();
        if let Some(pod) = context.pod_name {
            env.push(("HOSTNAME".to_owned(), pod.to_owned()));
        }
        env.extend((context.extra_env)(&container.name));
        env
    }
}

/// Where the host path `path` under the chart's kubelet directory is for this node.
fn kubelet_path(path: &str, kubelet_dir: Option<(&str, &Path)>) -> Option<PathBuf> {
    let (chart_dir, node_dir) = kubelet_dir?;
    let rest = path.strip_prefix(chart_dir.trim_end_matches('/'))?;
    match rest.strip_prefix('/') {
        Some(rest) => Some(node_dir.join(rest)),
        None if rest.is_empty() => Some(node_dir.to_path_buf()),
        None => None,
    }
}

/// The sidecars find the API server through in-cluster configuration; rds-csi takes none.
fn talks_to_api_server(container: &Container) -> bool {
    container.name != "rds-csi"
}

/// `$(NAME)` references in an arg, as kubelet expands them from the container's env.
fn expand_env(arg: &str, env: &[(String, String)]) -> String {
    env.iter().fold(arg.to_owned(), |arg, (name, value)| {
        arg.replace(&format!("$({name})"), value)
    })
}

/// `text` with a container path under a mount rewritten to the mount's host directory: the whole
/// value (`/csi/csi.sock`), a flag's value (`--config=/etc/…`) or a URL's path (`unix:///csi/…`).
fn rewrite_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    for (prefix, dir) in mounts {
        let Some(start) = text.find(prefix.as_str()) else {
            continue;
        };
        let before = text[..start].chars().last();
        let after = &text[start + prefix.len()..];
        if matches!(before, None | Some('=' | '/')) && (after.is_empty() || after.starts_with('/'))
        {
            return format!("{}{}{after}", &text[..start], dir.display());
        }
    }
    text.to_owned()
}

fn field_value(
    field: &k8s_openapi::api::core::v1::ObjectFieldSelector,
    context: &PodContext<'_>,
) -> Option<String> {
    match field.field_path.as_str() {
        "spec.nodeName" => Some(context.node_name.to_owned()),
        "metadata.name" => context.pod_name.map(str::to_owned),
        "metadata.namespace" => Some(context.namespace.to_owned()),
        _ => None,
    }
}

/// Where a volume's files come from.
enum Source {
    ConfigMap(String),
    Secret(String),
}

/// The sources of a ConfigMap, Secret or projected volume, each with the keys it selects (all
/// when `None`).
fn sources(volume: &Volume) -> Vec<(Source, Option<Vec<KeyToPath>>)> {
    let mut sources = Vec::new();
    if let Some(map) = &volume.config_map {
        sources.push((Source::ConfigMap(map.name.clone()), map.items.clone()));
    }
    if let Some(secret) = &volume.secret
        && let Some(name) = &secret.secret_name
    {
        sources.push((Source::Secret(name.clone()), secret.items.clone()));
    }
    for source in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
    {
        if let Some(map) = &source.config_map {
            sources.push((Source::ConfigMap(map.name.clone()), map.items.clone()));
        }
        if let Some(secret) = &source.secret {
            sources.push((Source::Secret(secret.name.clone()), secret.items.clone()));
        }
    }
    sources
}

/// Writes the files of a ConfigMap, Secret or projected volume from the API server's objects.
async fn fill_volume(volume: &Volume, dir: &Path, context: &PodContext<'_>) -> anyhow::Result<()> {
    let namespace = context.namespace;
    for (source, items) in sources(volume) {
        let data: BTreeMap<String, Vec<u8>> = match source {
            Source::ConfigMap(name) => {
                Api::<ConfigMap>::namespaced(context.client.clone(), namespace)
                    .get(&name)
                    .await
                    .with_context(|| {
                        format!("reading ConfigMap {name} for volume {}", volume.name)
                    })?
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect()
            }
            Source::Secret(name) => Api::<Secret>::namespaced(context.client.clone(), namespace)
                .get(&name)
                .await
                .with_context(|| format!("reading Secret {name} for volume {}", volume.name))?
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
        };
        let files: Vec<(String, String)> = match items {
            Some(items) => items.into_iter().map(|i| (i.key, i.path)).collect(),
            None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
        };
        for (key, path) in files {
            let bytes = data.get(&key).with_context(|| {
                format!("volume {} names key {key}, which is not there", volume.name)
            })?;
            let file = dir.join(&path);
            std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> Vec<(String, PathBuf)> {
        vec![
            ("/etc/rds-csi".to_owned(), PathBuf::from("/tmp/pod/config")),
            ("/csi".to_owned(), PathBuf::from("/tmp/pod/socket-dir")),
        ]
    }

    #[test]
    fn a_container_path_under_a_mount_is_the_volume_directory() {
        let mounts = mounts();
        assert_eq!(
            rewrite_paths("/csi/csi.sock", &mounts),
            "/tmp/pod/socket-dir/csi.sock"
        );
        assert_eq!(
            rewrite_paths("--csi-address=/csi/csi.sock", &mounts),
            "--csi-address=/tmp/pod/socket-dir/csi.sock"
        );
        assert_eq!(
            rewrite_paths("unix:///csi/csi.sock", &mounts),
            "unix:///tmp/pod/socket-dir/csi.sock"
        );
        assert_eq!(rewrite_paths("/etc/rds-csi", &mounts), "/tmp/pod/config");
        // Only whole path components: /csi-other and /var/csi are not under /csi.
        assert_eq!(rewrite_paths("/csi-other/x", &mounts), "/csi-other/x");
        assert_eq!(rewrite_paths("/var/csi/x", &mounts), "/var/csi/x");
        assert_eq!(rewrite_paths("--v=2", &mounts), "--v=2");
    }

    #[test]
    fn env_references_expand_as_kubelet_expands_them() {
        let env = [("ADDRESS".to_owned(), "/csi/csi.sock".to_owned())];
        assert_eq!(
            expand_env("--csi-address=$(ADDRESS)", &env),
            "--csi-address=/csi/csi.sock"
        );
        assert_eq!(expand_env("$(OTHER)", &env), "$(OTHER)");
    }

    #[test]
    fn host_paths_under_the_kubelet_directory_are_the_nodes_own() {
        let node = Path::new("/tmp/node-a/kubelet");
        let kubelet = Some(("/var/lib/kubelet", node));
        assert_eq!(
            kubelet_path("/var/lib/kubelet/plugins/d", kubelet),
            Some(node.join("plugins/d"))
        );
        assert_eq!(
            kubelet_path("/var/lib/kubelet", kubelet),
            Some(node.to_path_buf())
        );
        assert_eq!(kubelet_path("/var/lib/kubelet-other", kubelet), None);
        assert_eq!(kubelet_path("/dev", kubelet), None);
        assert_eq!(kubelet_path("/var/lib/kubelet/x", None), None);
    }
}
