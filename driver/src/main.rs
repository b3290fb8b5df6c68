//! `rds-csi`: the CSI plugin binary.

use clap::{Parser, Subcommand, ValueEnum};
use rds_csi::config::Config;
use rds_csi::grpc::{BoundSocket, parse_endpoint};
use rds_csi::service::{Driver, Mode};
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
    Dev {
        #[arg(long, default_value = "unix:///tmp/rds-csi/csi.sock")]
        endpoint: String,
        /// Keep the simulator's state here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check the RDS: SSH reachability, the pinned host key, the pool and the RouterOS version.
    Doctor {
        #[arg(long, env = "RDS_CSI_CONFIG")]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct Serve {
    /// `unix:///path/to/csi.sock`
    #[arg(long, env = "CSI_ENDPOINT")]
    endpoint: String,
    /// The TOML configuration file; `RDS_CSI_*` variables override it.
    #[arg(long, env = "RDS_CSI_CONFIG")]
    config: PathBuf,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,russh=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    let mut config = Config::load(path)?;
    config.apply_env()?;
    config.validate()?;
    Ok(config)
}

async fn serve(driver: Driver, mode: Mode, endpoint: &str) -> anyhow::Result<()> {
    let path = parse_endpoint(endpoint)?;
    let socket = BoundSocket::bind(&path)?;
    tracing::info!(endpoint, "serving CSI");
    socket
        .serve(driver.router(mode), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match cli.command {
        Command::Controller(s) => {
            serve(
                Driver::new(load(&s.config)?).await?,
                Mode::Controller,
                &s.endpoint,
            )
            .await
        }
        Command::Node(s) => {
            let mut config = Config::load(&s.config)?;
            config.apply_env()?;
            serve(Driver::node_only(config)?, Mode::Node, &s.endpoint).await
        }
        Command::All(s) => {
            serve(Driver::new(load(&s.config)?).await?, Mode::All, &s.endpoint).await
        }
        Command::Dev { endpoint, data_dir } => rds_csi::dev::run(&endpoint, data_dir).await,
        Command::Doctor { config } => {
            let report = rds_csi::doctor::run(&load(&config)?).await;
            print!("{report}");
            if report.ok() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
