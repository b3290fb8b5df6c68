//! The upstream conformance suite, kubernetes-csi's `csi-sanity` (built from its Go module by
//! `ci/go-tools.sh`; `CSI_SANITY=/path/to/csi-sanity` names another), run against a target as a
//! trial that passes only when no spec fails and enough specs pass (see [`Counts`]).
//!
//! csi-sanity itself skips the specs of capabilities the driver does not advertise; no spec is
//! skipped beyond those. The node's directories are made where the node runs: on this host for `sim` and
//! `hardware`, in the guest for `qemu` (through [`guest_paths`]).

mod counts;
pub mod guest_paths;
mod whole_plugin;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use libtest_mimic::Trial;

pub use counts::Counts;
use guest_paths::{Op, Relay, Reply};

use rds_csi::grpc::BoundSocket;

use crate::config::{SanitySettings, Settings};
use crate::fixture::Fixture;
use crate::go_tools::GoTools;
use crate::suite::{self, Skip};

/// The path of a csi-sanity binary to run instead of the one `ci/go-tools.sh` built.
pub const BINARY_ENV: &str = "CSI_SANITY";

/// The sanity suite's trial: every spec, the Node Service's included.
pub const TRIAL: &str = "csi-sanity (upstream binary, every spec)";
/// Of csi-sanity v5.6.0's 103 specs, those that must pass: all but the one it marks pending
/// (ListVolumes pagination) and the 22 it skips for capabilities the driver does not advertise
/// (GroupController, MODIFY_VOLUME and VolumeAttributesClass, PUBLISH_READONLY).
pub const MIN_PASSED: u32 = 80;

/// `sanity_qemu`'s trial: the Node Service specs with the node plugin in the guest.
pub const NODE_TRIAL: &str = "csi-sanity Node Service (upstream binary, node in the QEMU guest)";
/// The Node Service specs that must pass: every one of v5.6.0's 24.
pub const NODE_MIN_PASSED: u32 = 24;

/// What one run covers.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// A ginkgo regular expression of the specs to run; `None`: all.
    pub focus: Option<&'static str>,
    pub min_passed: u32,
}

/// The sanity suite's plan: everything.
pub const EVERY_SPEC: Plan = Plan {
    focus: None,
    min_passed: MIN_PASSED,
};

/// The Node Service's specs alone.
pub const NODE_SPECS: Plan = Plan {
    focus: Some("Node Service"),
    min_passed: NODE_MIN_PASSED,
};

/// A trial that runs csi-sanity by `plan` against the target `adjust` makes of the settings.
/// `guest_path` is the `guest-path` bin, for a node in a guest.
pub fn trial(name: &str, plan: Plan, adjust: fn(&mut Settings), guest_path: &'static str) -> Trial {
    suite::trial_with(name, adjust, async move |fixture: &mut Fixture| {
        let binary = binary()?;
        let counts = run_against(fixture, &binary, plan, Path::new(guest_path)).await?;
        println!(
            "csi-sanity against the {} target: {counts}",
            fixture.target().kind()
        );
        Ok(())
    })
}

/// The csi-sanity binary: `CSI_SANITY`'s, else `ci/go-tools.sh`'s. Where the tools are not built,
/// a [`Skip`] outside CI (see [`crate::go_tools::GoToolsError::skip_reason`]).
fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(BINARY_ENV).filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    match GoTools::locate().and_then(|tools| tools.binary("csi-sanity", "csi-sanity")) {
        Ok(path) => Ok(path),
        Err(error) => match error.skip_reason() {
            Some(reason) => Err(Skip(reason).into()),
            None => Err(anyhow::Error::new(error).context("locating csi-sanity")),
        },
    }
}

/// Runs `binary` by `plan` against the fixture's target and checks its counts.
async fn run_against(
    fixture: &Fixture,
    binary: &Path,
    plan: Plan,
    guest_path: &Path,
) -> anyhow::Result<Counts> {
    let target = fixture.target();
    let node_host = target.node_host();
    let node_dir = node_host.dir().join("csi-sanity");
    node_host.create_dir_all(&node_dir)?;
    let work = tempfile::Builder::new()
        .prefix("csi-sanity-")
        .tempdir()
        .context("creating csi-sanity's work directory")?;
    let mut invocation = Invocation {
        binary,
        endpoint: target.endpoint(),
        controller_endpoint: None,
        node_dir,
        work: work.path(),
        sanity: fixture.sanity(),
        focus: plan.focus,
        path_commands: None,
    };
    let output = match node_host.guest_plugin() {
        None => invocation.run().await?,
        Some(plugin) => {
            // The node is in the guest; the controller stays here.
            let front = BoundSocket::bind(&work.path().join("plugin.sock"))?;
            invocation.endpoint = format!("unix://{}", front.path().display());
            invocation.controller_endpoint = Some(target.endpoint());
            let relay = Relay::bind(&work.path().join("guest-path.sock"))?;
            invocation.path_commands = Some(PathCommands::write(
                guest_path,
                relay.socket(),
                work.path(),
            )?);
            let run_in_guest = |command: &str| {
                let output = plugin.guest().run(command)?;
                Ok(Reply {
                    stdout: output.stdout,
                    stderr: output.stderr,
                    rc: output.rc,
                })
            };
            tokio::select! {
                output = invocation.run() => output?,
                stopped = relay.serve(run_in_guest) => return Err(stopped.unwrap_err()),
                served = whole_plugin::serve(front, target.identity(), target.node()) => {
                    anyhow::bail!("the plugin's endpoint for csi-sanity stopped: {served:?}")
                }
            }
        }
    };
    output.check(plan.min_passed)
}

/// One csi-sanity command line.
struct Invocation<'a> {
    binary: &'a Path,
    /// The node's endpoint, and the controller's unless `controller_endpoint` is set.
    endpoint: String,
    controller_endpoint: Option<String>,
    /// Where on the node's machine the staging and target directories go.
    node_dir: PathBuf,
    /// Host files: parameter files, path command scripts.
    work: &'a Path,
    sanity: &'a SanitySettings,
    focus: Option<&'static str>,
    /// The commands that make, remove and check the node's directories, when they are in a
    /// guest.
    path_commands: Option<PathCommands>,
}

/// The scripts csi-sanity runs for the node's directories (see [`guest_paths`]).
struct PathCommands {
    create: PathBuf,
    remove: PathBuf,
    check: PathBuf,
}

impl PathCommands {
    /// Scripts in `dir` that run `guest_path` against the relay at `socket`.
    fn write(guest_path: &Path, socket: &Path, dir: &Path) -> anyhow::Result<PathCommands> {
        let script = |op| guest_paths::command(guest_path, socket, dir, op);
        Ok(PathCommands {
            create: script(Op::Create)?,
            remove: script(Op::Remove)?,
            check: script(Op::Check)?,
        })
    }
}

/// What csi-sanity printed, and how it ended.
struct Output {
    text: String,
    status: std::process::ExitStatus,
    command: String,
}

impl Invocation<'_> {
    async fn run(&self) -> anyhow::Result<Output> {
        let args = self.args()?;
        let output = tokio::process::Command::new(self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| {
                format!(
                    "cannot run {} (set {BINARY_ENV} to use another); is it the csi-sanity \
                     binary?",
                    self.binary.display()
                )
            })?;
        Ok(Output {
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            status: output.status,
            command: format!("{} {}", self.binary.display(), args.join(" ")),
        })
    }

    fn args(&self) -> anyhow::Result<Vec<String>> {
        let sanity = self.sanity;
        let mut args = vec![
            format!("--csi.endpoint={}", self.endpoint),
            format!("--csi.testvolumesize={}", sanity.volume_size),
            format!(
                "--csi.stagingdir={}",
                self.node_dir.join("staging").display()
            ),
            format!("--csi.mountdir={}", self.node_dir.join("mount").display()),
            // The driver's node and controller report the same attach limit, so the spec that
            // publishes one volume more than NodeGetInfo allows can run.
            "--csi.testnodevolumeattachlimit".to_owned(),
            "--ginkgo.no-color".to_owned(),
        ];
        if let Some(controller) = &self.controller_endpoint {
            args.push(format!("--csi.controllerendpoint={controller}"));
        }
        if let Some(commands) = &self.path_commands {
            for (flag, path) in [
                ("createstagingpathcmd", &commands.create),
                ("createmountpathcmd", &commands.create),
                ("removestagingpathcmd", &commands.remove),
                ("removemountpathcmd", &commands.remove),
                ("checkpathcmd", &commands.check),
            ] {
                args.push(format!("--csi.{flag}={}", path.display()));
            }
        }
        if let Some(focus) = self.focus {
            args.push(format!("--ginkgo.focus={focus}"));
        }
        for (flag, parameters) in [
            ("testvolumeparameters", &sanity.volume_parameters),
            (
                "testvolumemutableparameters",
                &sanity.volume_mutable_parameters,
            ),
        ] {
            if parameters.is_empty() {
                continue;
            }
            // csi-sanity reads a YAML map; JSON is YAML.
            let file = self.work.join(format!("{flag}.yaml"));
            std::fs::write(&file, serde_json::to_string(parameters)?)
                .with_context(|| format!("writing {}", file.display()))?;
            args.push(format!("--csi.{flag}={}", file.display()));
        }
        Ok(args)
    }
}

impl Output {
    /// The counts, when no spec failed, at least `min_passed` passed and csi-sanity exited 0;
    /// otherwise an error with the whole output.
    fn check(self, min_passed: u32) -> anyhow::Result<Counts> {
        let verdict = match Counts::parse(&self.text) {
            None => Err("its output has no ginkgo counts".to_owned()),
            Some(counts) => counts
                .verdict(min_passed)
                .and_then(|()| match self.status.success() {
                    true => Ok(counts),
                    false => Err(format!("it exited with {} ({counts})", self.status)),
                }),
        };
        verdict.map_err(|why| anyhow::anyhow!("{}: {why}:\n{}", self.command, self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for csi-sanity that records its arguments, prints `report` and exits with
    /// `status`.
    fn fake_binary(dir: &Path, report: &str, status: u8) -> PathBuf {
        let path = dir.join("csi-sanity");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}/args\nprintf '{report}'\nexit {status}\n",
            dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    const PASSED: &str = "Ran 90 of 96 Specs in 4 seconds\\nSUCCESS! -- 84 Passed | 0 Failed | \
                          0 Pending | 6 Skipped\\n";

    fn invocation<'a>(
        binary: &'a Path,
        work: &'a Path,
        sanity: &'a SanitySettings,
    ) -> Invocation<'a> {
        Invocation {
            binary,
            endpoint: "unix:///tmp/x.sock".into(),
            controller_endpoint: None,
            node_dir: work.join("node"),
            work,
            sanity,
            focus: None,
            path_commands: None,
        }
    }

    fn args(dir: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(dir.join("args")).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn runs_every_spec_with_the_attach_limit_and_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), PASSED, 0);
        let sanity = SanitySettings {
            volume_size: 1 << 30,
            volume_parameters: [("fsType".to_owned(), "xfs".to_owned())].into(),
            ..SanitySettings::default()
        };
        let counts = invocation(&binary, dir.path(), &sanity)
            .run()
            .await
            .unwrap()
            .check(80)
            .unwrap();
        assert_eq!(counts.passed, 84);
        let args = args(dir.path());
        for wanted in [
            "--csi.endpoint=unix:///tmp/x.sock",
            "--csi.testvolumesize=1073741824",
            "--csi.testnodevolumeattachlimit",
        ] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        assert!(
            args.iter()
                .any(|a| a.starts_with("--csi.testvolumeparameters=")),
            "{args:?}"
        );
        for absent in [
            "--ginkgo.focus",
            "--ginkgo.skip",
            "--csi.controllerendpoint",
            "cmd=",
        ] {
            assert!(
                !args.iter().any(|a| a.contains(absent)),
                "{absent} in {args:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_node_elsewhere_gets_its_endpoint_and_the_path_commands() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), PASSED, 0);
        let sanity = SanitySettings::default();
        let guest_path = dir.path().join("guest-path");
        let socket = dir.path().join("relay.sock");
        let mut invocation = invocation(&binary, dir.path(), &sanity);
        invocation.endpoint = "unix:///tmp/plugin.sock".into();
        invocation.controller_endpoint = Some("unix:///tmp/x.sock".into());
        invocation.focus = Some("Node Service");
        invocation.path_commands =
            Some(PathCommands::write(&guest_path, &socket, dir.path()).unwrap());
        invocation.run().await.unwrap();
        let args = args(dir.path());
        let create = format!("{}", dir.path().join("create-path").display());
        for wanted in [
            "--csi.endpoint=unix:///tmp/plugin.sock".to_owned(),
            "--csi.controllerendpoint=unix:///tmp/x.sock".to_owned(),
            "--ginkgo.focus=Node Service".to_owned(),
            format!("--csi.createstagingpathcmd={create}"),
            format!("--csi.createmountpathcmd={create}"),
            format!(
                "--csi.removemountpathcmd={}",
                dir.path().join("remove-path").display()
            ),
            format!(
                "--csi.checkpathcmd={}",
                dir.path().join("check-path").display()
            ),
        ] {
            assert!(args.contains(&wanted), "{wanted} in {args:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_spec_or_a_failing_exit_fails_with_the_whole_output() {
        let dir = tempfile::tempdir().unwrap();
        let sanity = SanitySettings::default();
        let failed = "Ran 90 of 96 Specs in 4 seconds\\nFAIL! -- 83 Passed | 1 Failed | 0 \
                      Pending | 6 Skipped\\n";
        for (report, status, why) in [
            (failed, 1, "1 specs failed"),
            (PASSED, 1, "exited with"),
            ("no counts here\\n", 0, "no ginkgo counts"),
        ] {
            let binary = fake_binary(dir.path(), report, status);
            let message = invocation(&binary, dir.path(), &sanity)
                .run()
                .await
                .unwrap()
                .check(80)
                .unwrap_err()
                .to_string();
            assert!(message.contains(why), "{why} in {message}");
            assert!(
                message.contains("--csi.endpoint=unix:///tmp/x.sock"),
                "{message}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sanity = SanitySettings::default();
        let missing = Path::new("/nonexistent/csi-sanity");
        let message = match invocation(missing, dir.path(), &sanity).run().await {
            Ok(_) => panic!("a missing binary ran"),
            Err(error) => error.to_string(),
        };
        assert!(message.contains("/nonexistent/csi-sanity"), "{message}");
        assert!(message.contains(BINARY_ENV), "{message}");
    }
}
