//! The rds-csi binary's log, as a pod's log collects it: stderr into a pipe.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A pipe is no terminal, so the log carries no colour codes (kubectl logs would show them raw).
#[test]
fn the_log_into_a_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nhostNqn = \"nqn.2014-08.org.nvmexpress:uuid:5e2e0000-0000-4000-8000-00000000000a\"\n\
             fabric = \"loop\"\nloopRoot = \"{}\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut plugin = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .arg("node")
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.path().join("csi.sock").display()))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        // NO_COLOR would hide colour codes whatever the driver decides about pipes.
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = plugin.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let serving = line.contains("serving CSI");
        seen.push(line);
        if serving {
            break;
        }
    }
    plugin.kill().unwrap();
    plugin.wait().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.contains("serving CSI")),
        "the plugin did not start: {seen:?}"
    );
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
}
