//! A child process of the cluster target (etcd, an API server, a sidecar, rds-csi): its output goes
//! to a log file, it is killed when dropped, and a failure quotes the end of its log.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

/// How much of a log a failure message quotes.
const LOG_TAIL: usize = 4000;

/// A running child, killed (and reaped) when dropped.
pub struct Process {
    name: String,
    log: PathBuf,
    child: tokio::process::Child,
}

impl Process {
    /// Starts `program` with `args` and `env`, its stdout and stderr appended to `<logs>/<name>.log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        logs: &Path,
    ) -> anyhow::Result<Process> {
        Process::spawn_on_host(name, None, program, args, env, logs)
    }

    /// [`Process::spawn`], with `hostname` as its host name (a UTS namespace of its own, as a
    /// pod's containers have): what client-go's leader election takes for its identity. Needs
    /// root.
    pub fn spawn_on_host(
        name: &str,
        hostname: Option<&str>,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        logs: &Path,
    ) -> anyhow::Result<Process> {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", log.display()))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        if let Some(hostname) = hostname {
            let hostname = hostname.as_bytes().to_vec();
            // SAFETY: between fork and exec the closure makes two system calls and touches only
            // memory it owns, allocated before the fork.
            unsafe {
                command.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWUTS) != 0
                        || libc::sethostname(hostname.as_ptr().cast(), hostname.len()) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {name} ({}): {e}", program.display()))?;
        Ok(Process {
            name: name.to_owned(),
            log,
            child,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fails, quoting its log, when the process has exited: for a check while waiting for it.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!("{} exited ({status}); {}", self.name, self.log_tail()),
        }
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Stops it (SIGKILL) and waits for it to be reaped.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Asks it to stop (SIGTERM, as kubelet stops a container) without waiting.
    pub fn terminate(&self) -> anyhow::Result<()> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} has exited already", self.name))?;
        let pid = i32::try_from(pid)?;
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (we hold the Child).
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            anyhow::bail!(
                "SIGTERM to {}: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Waits, at most `grace`, for it to exit, then kills it (kubelet's terminationGracePeriod).
    pub async fn exited(mut self, grace: std::time::Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                let _ = self.child.kill().await;
                anyhow::bail!(
                    "{} did not exit within {grace:?} of SIGTERM; {}",
                    self.name,
                    self.log_tail()
                )
            }
        }
    }
}

/// The end of the log at `path`, labelled with its path.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(LOG_TAIL);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    format!("last lines of {}:\n{}", path.display(), &text[start..])
}
