//! `rds-csi`: the CSI plugin binary.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use rds_csi::config::{Config, KubernetesConfig};
use rds_csi::grpc::{ListenAddr, Listener};
use rds_csi::service::{Driver, Mode};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    version,
    about = "Kubernetes CSI driver for MikroTik RDS (RouterOS rose-storage, NVMe/TCP)"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        value_enum,
        default_value = "text",
        global = true,
        env = "RDS_CSI_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Identity and Controller services.
    Controller(Serve),
    /// Serve the Identity and Node services.
    Node(Serve),
    /// Serve every service (a single-process deployment, or tests).
    All(Serve),
    /// Run every service against an embedded rds-sim in a temporary directory.
    #[cfg(feature = "dev")]
    Dev {
        #[arg(long, default_value = "unix:///tmp/rds-csi/csi.sock")]
        endpoint: String,
        /// Keep the simulator's state here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check the RDS: SSH reachability, the pinned host key, the pool and the RouterOS version;
    /// with --snapshots, which snapshot methods copy data.
    Doctor {
        #[arg(long, env = "RDS_CSI_CONFIG")]
        config: PathBuf,
        /// Also probe which snapshot methods copy data (writes and removes small probe disks
        /// under <pool>/<baseDir>).
        #[arg(long)]
        snapshots: bool,
        /// Every probe: the snapshot methods and each open RouterOS question the driver depends
        /// on (writes and removes small probe disks), with the rds-sim switch position that
        /// matches each answer.
        #[arg(long)]
        all: bool,
    },
    /// List the driver's disks, files and exports on the RDS that nothing in the cluster names
    /// (docs/operations.md, "Orphans"). Only reads: it never deletes.
    Orphans {
        #[arg(long, env = "RDS_CSI_CONFIG")]
        config: PathBuf,
    },
    /// Snapshot the selected PVCs once, then delete this schedule's snapshots beyond the
    /// retention (a CronJob runs it; see README "Scheduled snapshots").
    SnapshotSchedule(rds_csi::schedule::Args),
}

#[derive(clap::Args)]
struct Serve {
    /// `unix:///path/to/csi.sock`; `tcp://IP:PORT` only for tests (it has no authentication)
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// The TOML configuration file; `RDS_CSI_*` variables override it.
    #[arg(long, env = "RDS_CSI_CONFIG")]
    config: PathBuf,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,russh=warn".into());
    // Colour codes only for a person at a terminal who has not asked for none (NO_COLOR): in a
    // pod's log they are noise.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    checked(Config::load(path)?)
}

/// `config` with the environment's overrides applied, validated.
fn checked(mut config: Config) -> anyhow::Result<Config> {
    config.apply_env()?;
    config.validate()?;
    Ok(config)
}

/// What serving takes from the configuration besides the driver.
struct Serving {
    metrics: Option<SocketAddr>,
    kubernetes: KubernetesConfig,
    kubelet_dir: Option<PathBuf>,
}

impl Serving {
    fn of(config: &Config) -> Serving {
        Serving {
            metrics: config.metrics.listen,
            kubernetes: config.kubernetes.clone(),
            kubelet_dir: config.node.kubelet_dir.clone(),
        }
    }
}

/// Serves CSI on `endpoint`, `/metrics` on `metrics` when it is set, and runs the Kubernetes
/// reconcilers when `kubernetes.enabled` and the process has the controller, until interrupted;
/// any of them failing (a taken metrics port) stops the process.
async fn serve(driver: Driver, mode: Mode, endpoint: &str, serving: Serving) -> anyhow::Result<()> {
    let Serving {
        metrics,
        kubernetes,
        kubelet_dir,
    } = serving;
    let listener = Listener::bind(&ListenAddr::parse(endpoint)?)?;
    tracing::info!(endpoint = %listener, "serving CSI");
    // SIGTERM is how Kubernetes stops a pod; SIGINT is a person's Ctrl-C. One listener, set up
    // before anything starts, so that a signal during start-up is not missed by a part that
    // starts listening later.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        }
    });
    let interrupted = || stop.clone().cancelled_owned();
    let csi = async {
        listener.serve(driver.router(mode), interrupted()).await?;
        anyhow::Ok(())
    };
    let metrics = async {
        match metrics {
            Some(addr) => {
                let node = mode
                    .serves_node()
                    .then(|| rds_csi::metrics::NodeProbe::host(kubelet_dir.clone()));
                rds_csi::metrics::serve(addr, driver.rds().cloned(), node, interrupted()).await
            }
            None => Ok(()),
        }
    };
    let reconcilers = async {
        match driver
            .controller()
            .filter(|_| kubernetes.enabled && mode.serves_controller())
        {
            Some(controller) => {
                rds_csi::kubernetes::run(
                    kubernetes,
                    driver.name().to_owned(),
                    controller.clone(),
                    interrupted(),
                )
                .await
            }
            // Nothing to run: serving alone decides when the process ends.
            None => std::future::pending().await,
        }
    };
    // Each ends on the interrupt (the reconcilers after giving up their Lease); one failing
    // stops the process.
    tokio::try_join!(csi, metrics, reconcilers).map(drop)
}

/// A Kubernetes client from KUBECONFIG or the pod's ServiceAccount.
async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot set up the Kubernetes client (no kubeconfig, and not running in a pod?): {e}"
        )
    })
}

async fn orphans(config: Config) -> anyhow::Result<()> {
    let kubernetes = config.kubernetes.clone();
    let driver = Driver::new(config).await?;
    let controller = driver
        .controller()
        .ok_or_else(|| anyhow::anyhow!("the configuration makes no controller"))?;
    let client = kube_client().await?;
    let listing = rds_csi::orphans::Listing {
        found: rds_csi::orphans::list(controller, &client, driver.name()).await?,
        place: controller.place(),
        now: jiff::Timestamp::now(),
        grace: std::time::Duration::from_secs(kubernetes.orphan_grace_seconds),
        delete: kubernetes.delete_orphans,
    };
    print!("{listing}");
    Ok(())
}

async fn snapshot_schedule(args: rds_csi::schedule::Args) -> anyhow::Result<()> {
    use rds_csi::schedule::{Cluster, run};
    let cluster = Cluster::new(kube_client().await?);
    let schedule = args.into_schedule(cluster.default_namespace());
    match run(&cluster, &schedule, jiff::Timestamp::now()).await {
        Ok(report) => {
            print!("{report}");
            Ok(())
        }
        Err(failed) => {
            print!("{}", failed.report);
            eprint!("{failed}");
            std::process::exit(1)
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Controller(s) => {
            let config = load(&s.config)?;
            let serving = Serving::of(&config);
            let driver = Driver::new(config).await?;
            serve(driver, Mode::Controller, &s.endpoint, serving).await
        }
        Command::Node(s) => {
            let mut config = Config::load(&s.config)?;
            config.apply_env()?;
            let serving = Serving::of(&config);
            serve(Driver::node_only(config)?, Mode::Node, &s.endpoint, serving).await
        }
        Command::All(s) => {
            let config = load(&s.config)?;
            let serving = Serving::of(&config);
            serve(Driver::new(config).await?, Mode::All, &s.endpoint, serving).await
        }
        #[cfg(feature = "dev")]
        Command::Dev { endpoint, data_dir } => rds_csi::dev::run(&endpoint, data_dir).await,
        Command::Doctor {
            config,
            snapshots,
            all,
        } => {
            let config = checked(Config::load_driver_or_hardware(&config)?)?;
            let report = rds_csi::doctor::run(&config).await;
            print!("{report}");
            if !report.ok() {
                std::process::exit(1)
            }
            let mut ok = true;
            if snapshots || all {
                let probes = rds_csi::doctor::snapshots::probe(&config).await?;
                print!("{probes}");
                ok &= probes.ok();
            }
            if all {
                let answers = rds_csi::doctor::questions::probe(&config).await?;
                print!("{answers}");
                ok &= answers.ok();
            }
            if !ok {
                std::process::exit(1)
            }
            Ok(())
        }
        Command::Orphans { config } => orphans(load(&config)?).await,
        Command::SnapshotSchedule(args) => snapshot_schedule(args).await,
    }
}
