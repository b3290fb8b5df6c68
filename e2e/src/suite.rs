//! The glue between cases and libtest-mimic: each case becomes a trial that starts its own target
//! (so it runs alone under `cargo nextest`, one process per trial), runs, cleans up and stops it;
//! or cases whose target is slow to start (a QEMU guest) run in turn as one trial on one target,
//! which is proved clean after each case ([`in_turn`]).

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Context;
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

/// A running case, borrowing the fixture it runs on.
type CaseFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

/// A named case, to run as a trial of its own ([`Case::trial`]) or in turn with others on one
/// target ([`in_turn`]).
pub struct Case {
    name: String,
    body: Box<dyn for<'a> FnOnce(&'a mut Fixture) -> CaseFuture<'a> + Send>,
}

impl Case {
    pub fn new<F>(name: impl Into<String>, body: F) -> Case
    where
        F: AsyncFnOnce(&mut Fixture) -> anyhow::Result<()> + Send + 'static,
    {
        Case {
            name: name.into(),
            body: Box::new(move |fixture| Box::pin(async move { body(fixture).await })),
        }
    }

    /// A trial that runs the case against a fresh target from the settings `adjust` changes.
    pub fn trial(self, adjust: fn(&mut Settings)) -> Trial {
        let name = self.name.clone();
        on_fresh_target(&name, adjust, async move |fixture: &mut Fixture| {
            self.run(fixture).await
        })
    }

    /// Runs the case on `fixture`, failing it as hung after [`CASE_TIMEOUT`].
    async fn run(self, fixture: &mut Fixture) -> anyhow::Result<()> {
        match tokio::time::timeout(CASE_TIMEOUT, (self.body)(fixture)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "the case did not finish within {CASE_TIMEOUT:?}"
            )),
        }
    }
}

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
    Case::new(name, case).trial(adjust)
}

/// One trial that runs `cases` in order on one target from the settings `adjust` changes, for
/// cases whose target costs more to start than they take to run. After each case the fixture
/// undoes what it made, and the target must then be as the first case found it
/// ([`Fixture::leftovers`]). A case that fails, whose cleanup fails or that leaves the target
/// dirty fails the trial; the next case runs only on a clean target, since on a dirty one its
/// result would say nothing. The failure names every failed case, what it left, and the cases a
/// dirty target kept from running.
pub fn in_turn(name: &str, adjust: fn(&mut Settings), cases: Vec<Case>) -> Trial {
    on_fresh_target(name, adjust, async move |fixture: &mut Fixture| {
        run_in_turn(fixture, cases).await
    })
}

/// [`in_turn`]'s run of `cases` on `fixture`.
async fn run_in_turn(fixture: &mut Fixture, cases: Vec<Case>) -> anyhow::Result<()> {
    let baseline = fixture
        .baseline()
        .await
        .context("observing the target before the first case")?;
    let total = cases.len();
    let mut failures = Vec::new();
    let mut stopped = None;
    let mut cases = cases.into_iter();
    while let Some(case) = cases.next() {
        let name = case.name.clone();
        let started = Instant::now();
        let outcome = case.run(fixture).await;
        let verdict = verdict(outcome, fixture.cleanup().await);
        let dirty = match fixture.leftovers(&baseline).await {
            Ok(left) if left.is_empty() => None,
            Ok(left) => Some(format!(
                "it left the target dirty:\n  {}",
                left.join("\n  ")
            )),
            Err(e) => Some(format!("the target could not be checked after it: {e:#}")),
        };
        let took = started.elapsed();
        let clean = dirty.is_none();
        let problems: Vec<String> = verdict
            .as_ref()
            .err()
            .cloned()
            .into_iter()
            .chain(dirty)
            .collect();
        match (verdict, problems.is_empty()) {
            (Ok(Completion::Ignored { reason }), true) => println!(
                "skipped {name} ({took:.1?}): {}",
                reason.unwrap_or_default()
            ),
            (_, true) => println!("ok      {name} ({took:.1?})"),
            (_, false) => {
                println!("FAILED  {name} ({took:.1?})");
                failures.push(format!("{name}:\n{}", problems.join("\n")));
            }
        }
        if !clean {
            let unrun: Vec<String> = cases.map(|case| case.name).collect();
            if !unrun.is_empty() {
                stopped = Some(format!(
                    "stopped: the {} cases after it did not run on the dirty target:\n  {}",
                    unrun.len(),
                    unrun.join("\n  ")
                ));
            }
            break;
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {total} cases failed on one {} target:\n\n{}{}",
        failures.len(),
        fixture.target().kind(),
        failures.join("\n\n"),
        stopped.map(|s| format!("\n\n{s}")).unwrap_or_default()
    );
    Ok(())
}

/// A trial that runs `body` on a fresh target from the settings `adjust` changes, then cleans up
/// and stops the target.
fn on_fresh_target<F>(name: &str, adjust: fn(&mut Settings), body: F) -> Trial
where
    F: AsyncFnOnce(&mut Fixture) -> anyhow::Result<()> + Send + 'static,
{
    Trial::ignorable_test(name, move || {
        let mut settings = Settings::from_env().map_err(|e| Failed::from(e.to_string()))?;
        adjust(&mut settings);
        run_on_target(&settings, body)
    })
}

/// A trial listed for completeness but not run: `reason` says which issue brings it.
pub fn ignored(name: &str, reason: &'static str) -> Trial {
    Trial::ignorable_test(name, move || Ok(Completion::ignored_with(reason)))
        .with_ignored_flag(true)
}

/// Runs `body` on a fresh target from `settings` in a runtime of its own.
fn run_on_target<F>(settings: &Settings, body: F) -> Result<Completion, Failed>
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
        let outcome = body(&mut fixture).await;
        let shutdown = fixture.shutdown().await;
        verdict(outcome, shutdown).map_err(|message| Failed::from(format!("{message}{seed}")))
    })
}

/// A case's result from its `outcome` and what undoing it (cleanup, or shutdown with cleanup)
/// gave.
fn verdict(outcome: anyhow::Result<()>, cleanup: anyhow::Result<()>) -> Result<Completion, String> {
    match (outcome, cleanup) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::requests::unique_name;

    /// A case that passes and leaves nothing: what it creates, the fixture tracks and deletes.
    fn tidy(name: &str) -> Case {
        Case::new(name, async |fx: &mut Fixture| {
            fx.must_create(&unique_name("in-turn-tidy")).await?;
            Ok(())
        })
    }

    #[tokio::test]
    async fn cases_that_leave_the_target_clean_pass_in_turn() {
        let mut fixture = Fixture::start(&Settings::sim_defaults()).await.unwrap();
        let outcome = run_in_turn(&mut fixture, vec![tidy("first"), tidy("second")]).await;
        fixture.shutdown().await.unwrap();
        outcome.unwrap();
    }

    /// The failures are all named, a failed case on a clean target does not stop the run, and a
    /// disk left on rds-sim (made through the bare client, so no cleanup knows it) does.
    #[tokio::test]
    async fn a_case_that_leaves_a_disk_fails_the_run_and_stops_it() {
        let ran_after = Arc::new(AtomicBool::new(false));
        let ran = Arc::clone(&ran_after);
        let cases = vec![
            Case::new("fails", async |_: &mut Fixture| -> anyhow::Result<()> {
                anyhow::bail!("on purpose")
            }),
            tidy("passes"),
            Case::new("leaves a disk", async |fx: &mut Fixture| {
                let request = fx.create_request(&unique_name("in-turn-left"));
                fx.controller().create_volume(request).await?;
                Ok(())
            }),
            Case::new("comes after", async move |_: &mut Fixture| {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            }),
        ];
        let mut fixture = Fixture::start(&Settings::sim_defaults()).await.unwrap();
        let outcome = run_in_turn(&mut fixture, cases).await;
        fixture.shutdown().await.unwrap();
        let message = format!("{:#}", outcome.unwrap_err());
        assert!(message.starts_with("2 of 4 cases failed"), "{message}");
        assert!(message.contains("\n\nfails:\non purpose\n"), "{message}");
        assert!(!message.contains("passes"), "{message}");
        assert!(
            message.contains("\n\nleaves a disk:\nit left the target dirty:\n  + disk "),
            "{message}"
        );
        assert!(
            message.ends_with("did not run on the dirty target:\n  comes after"),
            "{message}"
        );
        assert!(
            !ran_after.load(Ordering::SeqCst),
            "a case ran on a dirty target"
        );
    }
}
