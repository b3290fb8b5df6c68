//! The glue between cases and libtest-mimic: each case becomes a trial that starts its own target
//! (so it runs alone under `cargo nextest`, one process per trial), runs, cleans up and stops it.

use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::config::{Settings, TargetKind};
use crate::fixture::Fixture;
use crate::target::TargetError;

/// A case's reason not to run here (a capability not advertised, no simulator on this target);
/// return it as the case's error and the trial is reported as ignored with this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Skip(pub String);

/// How long one case may take before it is failed as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// A trial that runs `case` against a fresh target chosen by the environment.
pub fn trial<F>(name: &str, case: F) -> Trial
where
    F: AsyncFnOnce(&mut Fixture) -> anyhow::Result<()> + Send + 'static,
{
    trial_with(name, |_| {}, case)
}

/// A trial whose settings `adjust` changes first, for a case that needs a particular simulator
/// (a Btrfs pool, say) whatever the configuration gives the rest of the suite.
pub fn trial_with<F>(name: &str, adjust: fn(&mut Settings), case: F) -> Trial
where
    F: AsyncFnOnce(&mut Fixture) -> anyhow::Result<()> + Send + 'static,
{
    Trial::ignorable_test(name, move || {
        let mut settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        adjust(&mut settings);
        run_case(&settings, case)
    })
}

/// A trial listed for completeness but not run: `reason` says which issue brings it.
pub fn ignored(name: &str, reason: &'static str) -> Trial {
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
        .with_ignored_flag(true)
}

/// Runs `case` on a fresh target from `settings` in a runtime of its own.
pub fn run_case<F>(settings: &Settings, case: F) -> Result<Completion, Failed>
where
    F: AsyncFnOnce(&mut Fixture) -> anyhow::Result<()>,
{
    let runtime = runtime()?;
    let seed = match settings.target {
        TargetKind::Sim => format!(" (rds-sim seed {})", settings.sim.seed),
        _ => String::new(),
    };
    runtime.block_on(async {
        let mut fixture = match Fixture::start(settings).await {
            Ok(fixture) => fixture,
            Err(TargetError::Skipped(reason)) => {
                eprintln!("SKIPPED: {reason}");
                return Ok(Completion::ignored_with(reason));
            }
            Err(e) => {
                let message = format!("starting the {} target: {e}", settings.target);
                return Err(Failed::from(message));
            }
        };
        let outcome = match tokio::time::timeout(CASE_TIMEOUT, case(&mut fixture)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "the case did not finish within {CASE_TIMEOUT:?}"
            )),
        };
        let shutdown = fixture.shutdown().await;
        verdict(outcome, shutdown).map_err(|message| Failed::from(format!("{message}{seed}")))
    })
}

fn verdict(
    outcome: anyhow::Result<()>,
    shutdown: anyhow::Result<()>,
) -> Result<Completion, String> {
    match (outcome, shutdown) {
        (Ok(()), Ok(())) => Ok(Completion::Completed),
        (Err(error), Ok(())) => match error.downcast::<Skip>() {
            Ok(skip) => Ok(Completion::ignored_with(skip.0)),
            Err(error) => Err(format!("{error:#}")),
        },
        (Ok(()), Err(cleanup)) => Err(format!("{cleanup:#}")),
        (Err(error), Err(cleanup)) => Err(format!("{error:#}\nand then: {cleanup:#}")),
    }
}

/// A multi-threaded runtime, as the driver and the simulator run in production.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot build a tokio runtime: {e}")))
}

/// Runs `trials` with libtest's command line. Targets that share one RDS between trials
/// (`hardware`, and `kind`, whose trials also share one namespace) run them one at a time unless
/// `--test-threads` says otherwise, since cases count what they list.
pub fn run(trials: Vec<Trial>) -> ! {
    init_tracing();
    let mut args = Arguments::from_args();
    if matches!(
        TargetKind::from_env(),
        Ok(TargetKind::Hardware | TargetKind::Kind)
    ) && args.test_threads.is_none()
    {
        args.test_threads = Some(1);
    }
    libtest_mimic::run(&args, trials).exit()
}

/// Logs of the driver and the simulator on stderr, filtered by `RUST_LOG`, when it is set.
fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
}
