//! Running the file-system tools (mkfs, resize2fs, xfs_growfs) with their output kept for the
//! error message.

use std::process::Command;

use super::HostError;

/// Runs `program args…`; a failure carries the command line, the exit status and what it printed.
pub fn run(program: &str, args: &[&str]) -> Result<(), HostError> {
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(HostError::io(format!(
            "cannot run `{line}` (is {program} installed on the node?)"
        )))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    Err(HostError::Command {
        command: line,
        status: output.status.to_string(),
        output: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_and_its_output() {
        let error = run("sh", &["-c", "echo no space >&2; exit 3"]).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("`sh -c"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("no space"), "{message}");
        run("true", &[]).unwrap();
        let missing = run("rds-csi-no-such-tool", &[]).unwrap_err().to_string();
        assert!(
            missing.contains("is rds-csi-no-such-tool installed"),
            "{missing}"
        );
    }
}
