//! Helpers shared by the suites that drive rds-sim with the real OpenSSH client.
#![allow(dead_code)] // each suite uses its own subset

use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

/// Whether the OpenSSH client is here. CI must have it; elsewhere the test says loudly that it
/// did not run.
pub fn have_openssh() -> bool {
    let found = std::process::Command::new("ssh")
        .arg("-V")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the OpenSSH client (`ssh`) is required in CI: install openssh-client"
        );
        eprintln!("SKIPPED: the OpenSSH client (`ssh`) is not installed");
    }
    found
}

/// `ssh` with the options every test needs: no config, no known hosts, no prompts, key auth only.
pub fn openssh(port: u16, key: &Path, login: &str) -> Command {
    let mut command = Command::new("ssh");
    command
        .args(["-F", "/dev/null", "-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "PasswordAuthentication=no",
            "-o",
            "KbdInteractiveAuthentication=no",
        ])
        .args(["-o", "ConnectTimeout=10"])
        .arg("-i")
        .arg(key)
        .arg(format!("{login}@127.0.0.1"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}
