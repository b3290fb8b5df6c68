//! Running the file-system tools (mkfs, resize2fs, xfs_growfs) with their output kept for the
//! error message.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::HostError;

/// How long mkfs or a resize may run: far more than either takes on a healthy volume (mkfs
/// initialises ext4's tables lazily), and an answer for the CO on a hung device.
pub const LIMIT: Duration = Duration::from_secs(300);

/// Runs `program args…` within [`LIMIT`]; a failure carries the command line, the exit status
/// and what it printed.
pub fn run(program: &str, args: &[&str]) -> Result<(), HostError> {
    run_within(program, args, LIMIT)
}

fn run_within(program: &str, args: &[&str], limit: Duration) -> Result<(), HostError> {
    let line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HostError::io(format!(
            "cannot run `{line}` (is {program} installed on the node?)"
        )))?;
    // One reader per pipe, so a full pipe never stalls the tool; both end when it exits.
    let (sender, outputs) = mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|p| Box::new(p) as _),
        child.stderr.take().map(|p| Box::new(p) as _),
    ];
    for (index, pipe) in pipes.into_iter().enumerate() {
        let sender = sender.clone();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            let _ = sender.send((index, text));
        });
    }
    let deadline = Instant::now() + limit;
    let mut printed = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match outputs.recv_timeout(left) {
            Ok((index, text)) => printed[index] = text,
            Err(_) => {
                // The child is not reaped yet, so killing it cannot hit another process.
                let _ = child.kill();
                let _ = child.wait();
                return Err(HostError::Timeout {
                    command: line,
                    limit,
                });
            }
        }
    }
    let status = child
        .wait()
        .map_err(HostError::io(format!("waiting for `{line}`")))?;
    if status.success() {
        return Ok(());
    }
    let [stdout, stderr] = printed;
    let mut text = String::from_utf8_lossy(&stderr).trim().to_owned();
    if text.is_empty() {
        text = String::from_utf8_lossy(&stdout).trim().to_owned();
    }
    Err(HostError::Command {
        command: line,
        status: status.to_string(),
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

    #[test]
    fn a_tool_that_hangs_is_killed_at_the_limit() {
        let started = Instant::now();
        let error = run_within("sleep", &["30"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, HostError::Timeout { .. }), "{error}");
        assert!(error.to_string().contains("`sleep 30`"), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it was not killed"
        );
    }
}
