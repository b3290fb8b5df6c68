//! A real Kubernetes control plane as processes: etcd, kube-apiserver (RBAC, privileged pods
//! allowed, static tokens for the test's own identities) and kube-controller-manager (every default
//! controller, each with its own ServiceAccount's credentials, as a cluster runs them). No kubelet,
//! scheduler or container runtime: `cluster::kubelet` stands in for kubelet on its nodes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use super::process::Process;
use crate::go_tools::GoTools;
use crate::qemu::free_local_port;

/// How long the API server may take to become ready (it compiles OpenAPI and RBAC on start; under
/// load on two cores that is tens of seconds).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How often readiness is asked for: the API server has no event to await before it can serve.
const READY_POLL: Duration = Duration::from_millis(250);
/// The API audience of the ServiceAccount tokens, the issuer a cluster commonly has.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Which Kubernetes release the control plane runs: both are built by `ci/go-tools.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The release the suites run on.
    Current,
    /// The chart's `kubeVersion` floor (charts/rds-csi/Chart.yaml).
    Floor,
}

impl Release {
    /// The name `ci/go-tools.sh` gives its build.
    fn tool(self) -> &'static str {
        match self {
            Release::Current => "kubernetes",
            Release::Floor => "kubernetes-floor",
        }
    }
}

/// etcd, kube-apiserver and kube-controller-manager, running until [`ControlPlane::shutdown`] (or
/// dropped: every process is killed with it).
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    ca_file: PathBuf,
    admin_kubeconfig: PathBuf,
    client: Client,
    // Stopped in reverse order of start.
    controller_manager: Process,
    apiserver: Process,
    etcd: Process,
}

impl ControlPlane {
    /// Starts the three under `dir` (state, certificates, kubeconfigs and logs go there) and waits
    /// until the API server is ready and the controller manager has made the `default`
    /// ServiceAccount, the sign that its controllers run.
    pub async fn start(tools: &GoTools, dir: &Path) -> anyhow::Result<ControlPlane> {
        ControlPlane::start_release(tools, dir, Release::Current).await
    }

    /// Like [`ControlPlane::start`], with the API server and controller manager of `release`.
    pub async fn start_release(
        tools: &GoTools,
        dir: &Path,
        release: Release,
    ) -> anyhow::Result<ControlPlane> {
        let logs = dir.join("logs");
        let certs = dir.join("certs");
        for d in [&logs, &certs] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let etcd_port = free_local_port()?;
        let etcd_peer_port = free_local_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Process::spawn(
            "etcd",
            &tools.binary("etcd", "etcd")?,
            &[
                format!("--data-dir={}", dir.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                "--log-level=warn".into(),
                // A test cluster's data is thrown away: fsync on every write only costs time.
                "--unsafe-no-fsync".into(),
            ],
            &[],
            &logs,
        )?;

        let sa_key = certs.join("service-account.key");
        let sa_pub = certs.join("service-account.pub");
        openssl(&["genrsa", "-out", path(&sa_key), "2048"])?;
        openssl(&[
            "rsa",
            "-in",
            path(&sa_key),
            "-pubout",
            "-out",
            path(&sa_pub),
        ])?;
        let admin_token = random_token();
        let tokens = certs.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{admin_token},rds-e2e-admin,rds-e2e-admin,\"system:masters\"\n"),
        )?;

        let port = free_local_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let mut apiserver = Process::spawn(
            "kube-apiserver",
            &tools.binary(release.tool(), "kube-apiserver")?,
            &[
                format!("--etcd-servers={etcd_url}"),
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                // The `kubernetes` Service's endpoints would be this loopback address, which the
                // API refuses; nothing in the test reaches the API server through that Service.
                "--endpoint-reconciler-type=none".into(),
                // A self-signed serving certificate and its CA, written to cert-dir.
                format!("--cert-dir={}", certs.display()),
                format!("--token-auth-file={}", tokens.display()),
                format!("--service-account-issuer={ISSUER}"),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.96.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                // The node plugin's DaemonSet is privileged, as every CSI node plugin is.
                "--allow-privileged=true".into(),
                "--v=1".into(),
            ],
            &[],
            &logs,
        )?;
        let ca_file = certs.join("apiserver.crt");
        wait_until(
            "kube-apiserver writes its serving certificate",
            &mut [&mut etcd, &mut apiserver],
            async || Ok(ca_file.exists()),
        )
        .await?;
        let admin_kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&admin_kubeconfig, &server, &ca_file, &admin_token)?;
        let client = kube_client(&admin_kubeconfig).await?;
        wait_until(
            "kube-apiserver is ready (/readyz)",
            &mut [&mut etcd, &mut apiserver],
            async || {
                let request = http::Request::get("/readyz").body(Vec::new())?;
                Ok(matches!(client.request_text(request).await, Ok(text) if text.trim() == "ok"))
            },
        )
        .await?;

        let mut controller_manager = Process::spawn(
            "kube-controller-manager",
            &tools.binary(release.tool(), "kube-controller-manager")?,
            &[
                format!("--kubeconfig={}", admin_kubeconfig.display()),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", sa_key.display()),
                format!("--root-ca-file={}", ca_file.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                // A node is marked Unknown (and tainted unreachable) this long after its last
                // heartbeat (the stand-ins beat every KUBELET_HEARTBEAT), and attached volumes are
                // checked against their VolumeAttachments this often: both shortened from the
                // defaults (50 s, 1 min) so that a node failure plays out in seconds.
                format!(
                    "--node-monitor-grace-period={}s",
                    NODE_MONITOR_GRACE.as_secs()
                ),
                "--node-monitor-period=1s".into(),
                "--attach-detach-reconcile-sync-period=5s".into(),
                "--v=1".into(),
            ],
            &[],
            &logs,
        )?;
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "default");
        wait_until(
            "kube-controller-manager makes the default ServiceAccount",
            &mut [&mut etcd, &mut apiserver, &mut controller_manager],
            async || Ok(accounts.get_opt("default").await?.is_some()),
        )
        .await?;
        Ok(ControlPlane {
            dir: dir.to_path_buf(),
            server,
            ca_file,
            admin_kubeconfig,
            client,
            controller_manager,
            apiserver,
            etcd,
        })
    }

    /// A client with the cluster-admin's token.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The cluster-admin's kubeconfig, for kubectl, helm and the snapshot controller.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The API server's address, `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig at `<dir>/<namespace>-<name>.kubeconfig` that authenticates as the
    /// ServiceAccount with a token from the TokenRequest API, as a pod's projected token would:
    /// a process run with it has exactly the permissions RBAC grants that ServiceAccount.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<PathBuf> {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![ISSUER.to_owned()],
                expiration_seconds: Some(24 * 3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let token = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for ServiceAccount {namespace}/{name}"))?
            .status
            .context("the TokenRequest came back without a status")?
            .token;
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        write_kubeconfig(&path, &self.server, &self.ca_file, &token)?;
        Ok(path)
    }

    /// Stops the controller manager, the API server and etcd, in that order.
    pub async fn shutdown(self) {
        self.controller_manager.stop().await;
        self.apiserver.stop().await;
        self.etcd.stop().await;
    }
}

/// Polls `done` until it holds, failing (with the logs of `processes`) when one of them exits or
/// [`READY_TIMEOUT`] passes: a process that is starting up has no event to await.
/// How often the simulated nodes' kubelet stand-ins renew their Lease and Ready condition.
pub const KUBELET_HEARTBEAT: Duration = Duration::from_secs(2);
/// kube-controller-manager's `--node-monitor-grace-period`: five heartbeats, kubelet's ratio.
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(10);

pub async fn wait_until(
    what: &str,
    processes: &mut [&mut Process],
    mut done: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        for process in processes.iter_mut() {
            process.check_running()?;
        }
        let last = match done().await {
            Ok(true) => return Ok(()),
            Ok(false) => String::new(),
            Err(e) => format!(" (last error: {e:#})"),
        };
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = processes.iter().map(|p| p.log_tail()).collect();
            anyhow::bail!(
                "waited {READY_TIMEOUT:?} until {what}, in vain{last}; {}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// A kubeconfig at `path` for `server`, trusting `ca_file`, authenticating with `token`.
fn write_kubeconfig(path: &Path, server: &str, ca_file: &Path, token: &str) -> anyhow::Result<()> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rds-e2e\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: rds-e2e\n  user:\n    token: {token}\ncontexts:\n- name: rds-e2e\n  context:\n    cluster: rds-e2e\n    user: rds-e2e\n    namespace: default\ncurrent-context: rds-e2e\n",
        ca_file.display()
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A kube client from the kubeconfig at `path`.
pub async fn kube_client(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))?;
    Client::try_from(config).context("building a kube client")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("the cluster's paths are UTF-8")
}

fn openssl(args: &[&str]) -> anyhow::Result<()> {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .context("running openssl (Debian's openssl package; ci/install-deps.sh installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
