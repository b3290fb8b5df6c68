//! The upstream conformance suite, kubernetes-csi's `csi-sanity` binary, run against a target when
//! `CSI_SANITY=/path/to/csi-sanity` is set.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, ensure};
use libtest_mimic::Trial;

use crate::config::SanitySettings;
use crate::fixture::Fixture;
use crate::suite;

/// The path of the csi-sanity binary.
pub const BINARY_ENV: &str = "CSI_SANITY";
/// A ginkgo regular expression of specs to skip, replacing [`DEFAULT_SKIP`].
pub const SKIP_ENV: &str = "CSI_SANITY_SKIP";
/// What the driver cannot pass yet: the node service (issue 6) and the controller specs that
/// call NodeGetInfo for a node ID; snapshot specs skip themselves while the capability is absent.
pub const DEFAULT_SKIP: &str =
    "Node Service|volume lifecycle|already published but is incompatible";

/// The trial's name.
pub const TRIAL: &str = "csi-sanity (external binary, CSI_SANITY)";

/// The trial that runs csi-sanity, or an ignored one saying how to enable it.
pub fn trial() -> Trial {
    match std::env::var_os(BINARY_ENV).filter(|path| !path.is_empty()) {
        None => suite::ignored(
            TRIAL,
            "set CSI_SANITY=/path/to/csi-sanity to run the upstream suite against this target",
        ),
        Some(binary) => {
            let binary = PathBuf::from(binary);
            suite::trial(TRIAL, async move |fixture: &mut Fixture| {
                let skip = std::env::var(SKIP_ENV).unwrap_or_else(|_| DEFAULT_SKIP.to_owned());
                let endpoint = fixture.target().endpoint();
                run(&binary, &endpoint, fixture.sanity(), &skip).await
            })
        }
    }
}

/// Runs `binary` against the CSI endpoint `endpoint`; fails with its whole output when it fails.
pub async fn run(
    binary: &Path,
    endpoint: &str,
    sanity: &SanitySettings,
    skip: &str,
) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("csi-sanity-")
        .tempdir()
        .context("creating csi-sanity's directories")?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg(format!("--csi.endpoint={endpoint}"))
        .arg(format!("--csi.testvolumesize={}", sanity.volume_size))
        .arg(format!(
            "--csi.stagingdir={}",
            dir.path().join("staging").display()
        ))
        .arg(format!(
            "--csi.mountdir={}",
            dir.path().join("mount").display()
        ))
        .arg("--ginkgo.no-color");
    if !skip.is_empty() {
        command.arg(format!("--ginkgo.skip={skip}"));
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
        let file = dir.path().join(format!("{flag}.yaml"));
        std::fs::write(&file, serde_json::to_string(parameters)?)
            .with_context(|| format!("writing {}", file.display()))?;
        command.arg(format!("--csi.{flag}={}", file.display()));
    }
    let output = command
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {} (named by {BINARY_ENV}); is it the csi-sanity binary?",
                binary.display()
            )
        })?;
    ensure!(
        output.status.success(),
        "{} failed ({}) against {endpoint}:\n{}{}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for csi-sanity that records its arguments and exits with `status`.
    fn fake_binary(dir: &Path, status: u8) -> PathBuf {
        let path = dir.join("csi-sanity");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}/args\necho 'Ran 3 of 9 Specs'\nexit {status}\n",
            dir.display()
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn passes_the_endpoint_size_parameters_and_skip_list() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), 0);
        let sanity = SanitySettings {
            volume_size: 1 << 30,
            volume_parameters: [("fsType".to_owned(), "xfs".to_owned())].into(),
            ..SanitySettings::default()
        };
        run(&binary, "unix:///tmp/x.sock", &sanity, "Node Service")
            .await
            .unwrap();
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        let args: Vec<&str> = args.lines().collect();
        assert!(
            args.contains(&"--csi.endpoint=unix:///tmp/x.sock"),
            "{args:?}"
        );
        assert!(
            args.contains(&"--csi.testvolumesize=1073741824"),
            "{args:?}"
        );
        assert!(args.contains(&"--ginkgo.skip=Node Service"), "{args:?}");
        assert!(
            args.iter()
                .any(|a| a.starts_with("--csi.testvolumeparameters=")),
            "{args:?}"
        );
    }

    #[tokio::test]
    async fn a_failing_run_reports_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let binary = fake_binary(dir.path(), 1);
        let message = run(
            &binary,
            "unix:///tmp/x.sock",
            &SanitySettings::default(),
            "",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(message.contains("Ran 3 of 9 Specs"), "{message}");
        assert!(message.contains("unix:///tmp/x.sock"), "{message}");
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert!(!args.contains("--ginkgo.skip"), "{args}");
        assert!(!args.contains("--csi.testvolumeparameters"), "{args}");
    }

    #[tokio::test]
    async fn a_missing_binary_is_named() {
        let message = run(
            Path::new("/nonexistent/csi-sanity"),
            "unix:///tmp/x.sock",
            &SanitySettings::default(),
            "",
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(message.contains("/nonexistent/csi-sanity"), "{message}");
        assert!(message.contains(BINARY_ENV), "{message}");
    }
}
