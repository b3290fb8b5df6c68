//! A QEMU guest with a real Linux kernel (Debian's, with nvme-tcp, nvmet and configfs, which the host
//! kernel lacks) and a command agent, for tests that need the real NVMe/TCP initiator or target.
//!
//! ```no_run
//! use rds_e2e::qemu::{Guest, GuestConfig};
//! let guest = Guest::boot(GuestConfig::default())?;
//! let release = guest.run_ok("uname -r")?.stdout;
//! # Ok::<(), rds_e2e::qemu::GuestError>(())
//! ```
//!
//! The image comes from ci/qemu/build-guest.sh (see ci/qemu/README.md). The guest runs under TCG
//! (KVM is unusable on our machines) and is killed when the [`Guest`] is dropped; if the test process
//! dies first, the agent sees its port close and powers the guest off.

mod agent;
mod cpio;
mod error;
mod image;
pub mod kernel_node;
pub mod kubelet_calls;
pub mod node_plugin;
pub mod nvme;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use agent::{Decoder, Message};
pub use error::GuestError;

/// The host's 127.0.0.1 as the guest reaches it (QEMU user-mode networking).
pub const HOST_ADDR: &str = "10.0.2.2";

const QEMU: &str = "qemu-system-x86_64";
const AGENT_PORT: &str = "org.rds.agent";
const CONSOLE_TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct GuestConfig {
    pub memory_mb: u32,
    pub cpus: u32,
    /// `(host port, guest port)`: TCP connections to 127.0.0.1:host port reach the guest's port.
    pub host_forwards: Vec<(u16, u16)>,
    /// `(host file, absolute guest path)`: copied into the guest's root filesystem at boot, keeping
    /// the host file's permissions. Programs need their shared libraries beside them (libm too),
    /// except glibc and libgcc_s, which the image has.
    pub extra_files: Vec<(PathBuf, String)>,
    /// From starting QEMU to the agent's ready message.
    pub boot_timeout: Duration,
    /// Default limit for [`Guest::run`] and [`Guest::run_ok`].
    pub command_timeout: Duration,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            memory_mb: 512,
            cpus: 1,
            host_forwards: Vec::new(),
            extra_files: Vec::new(),
            boot_timeout: Duration::from_secs(120),
            command_timeout: Duration::from_secs(120),
        }
    }
}

/// What a guest command printed (decoded lossily as UTF-8) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub rc: i32,
}

/// A running guest. Commands from several threads are run one after another.
pub struct Guest {
    qemu: Child,
    agent: Mutex<AgentLink>,
    reader: Option<JoinHandle<()>>,
    command_timeout: Duration,
    workdir: TempDir,
}

struct AgentLink {
    requests: ChildStdin,
    messages: Receiver<Result<Message, String>>,
    next_id: u64,
}

impl Guest {
    /// Builds the image if needed, starts QEMU and waits for the agent. A machine that cannot build
    /// the image or start QEMU gives [`GuestError::Unavailable`].
    pub fn boot(config: GuestConfig) -> Result<Guest, GuestError> {
        let image = image::cached()?;
        let workdir = tempfile::Builder::new()
            .prefix("rds-qemu-")
            .tempdir()
            .map_err(GuestError::io("creating a work directory for QEMU"))?;
        let initrd = if config.extra_files.is_empty() {
            image.initrd.clone()
        } else {
            let initrd = workdir.path().join("initrd.img");
            image::initrd_with_extra_files(&image.initrd, &config.extra_files, &initrd)?;
            initrd
        };
        let qemu_log = fs::File::create(workdir.path().join("qemu.log"))
            .map_err(GuestError::io("creating the QEMU log"))?;
        let mut qemu = qemu_command(&config, &image.kernel, &initrd, workdir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(qemu_log)
            .spawn()
            .map_err(|e| GuestError::Unavailable(format!("cannot start {QEMU}: {e}")))?;
        let requests = qemu.stdin.take().expect("stdin is piped");
        let stdout = qemu.stdout.take().expect("stdout is piped");
        let (sender, messages) = mpsc::channel();
        let reader = thread::Builder::new()
            .name("qemu-agent-reader".into())
            .spawn(move || read_agent(stdout, &sender))
            .map_err(GuestError::io("starting the agent reader thread"))?;
        let guest = Guest {
            qemu,
            agent: Mutex::new(AgentLink {
                requests,
                messages,
                next_id: 1,
            }),
            reader: Some(reader),
            command_timeout: config.command_timeout,
            workdir,
        };
        guest.await_ready(config.boot_timeout)?;
        Ok(guest)
    }

    /// Runs `command` with `sh -c` in the guest (as root, in `/`, stdin from /dev/null) and returns
    /// its output whatever its exit status.
    pub fn run(&self, command: &str) -> Result<Output, GuestError> {
        self.run_with_timeout(command, self.command_timeout)
    }

    /// Like [`Guest::run`], with an error that carries the output when the exit status is not 0.
    pub fn run_ok(&self, command: &str) -> Result<Output, GuestError> {
        let output = self.run(command)?;
        if output.rc != 0 {
            return Err(GuestError::CommandFailed {
                command: command.to_string(),
                output,
            });
        }
        Ok(output)
    }

    /// Like [`Guest::run`] with its own limit. After a timeout the command may still be running in
    /// the guest; the next command starts when it ends.
    pub fn run_with_timeout(&self, command: &str, timeout: Duration) -> Result<Output, GuestError> {
        let mut agent = self.agent.lock().unwrap_or_else(PoisonError::into_inner);
        let id = agent.next_id;
        agent.next_id += 1;
        let gone = |guest: &Guest| GuestError::Gone {
            command: command.to_string(),
            diagnostics: guest.diagnostics(),
        };
        let sent = agent
            .requests
            .write_all(agent::request(id, command).as_bytes())
            .and_then(|()| agent.requests.flush());
        if sent.is_err() {
            return Err(gone(self));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match agent.messages.recv_timeout(remaining) {
                Ok(Ok(Message::Reply { id: reply, output })) if reply == id => return Ok(output),
                // The late answer to a command that timed out earlier.
                Ok(Ok(Message::Reply { .. })) => {}
                Ok(Ok(Message::Ready { .. })) => {
                    return Err(GuestError::Protocol("the agent restarted".into()));
                }
                Ok(Err(garbled)) => return Err(GuestError::Protocol(garbled)),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(GuestError::Timeout {
                        command: command.to_string(),
                        timeout,
                        diagnostics: self.diagnostics(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => return Err(gone(self)),
            }
        }
    }

    fn await_ready(&self, timeout: Duration) -> Result<(), GuestError> {
        let agent = self.agent.lock().unwrap_or_else(PoisonError::into_inner);
        let failed = |reason: String| GuestError::Boot {
            reason,
            diagnostics: self.diagnostics(),
        };
        match agent.messages.recv_timeout(timeout) {
            Ok(Ok(Message::Ready { missing_modules })) if missing_modules.is_empty() => Ok(()),
            Ok(Ok(Message::Ready { missing_modules })) => Err(failed(format!(
                "kernel modules failed to load: {}",
                missing_modules.join(", ")
            ))),
            Ok(Ok(Message::Reply { id, .. })) => Err(failed(format!(
                "a reply to command {id} came before the agent was ready"
            ))),
            Ok(Err(garbled)) => Err(failed(garbled)),
            Err(RecvTimeoutError::Timeout) => Err(failed(format!(
                "no ready message from the agent within {timeout:?}"
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(failed(format!("{QEMU} exited"))),
        }
    }

    /// QEMU's own messages and the end of the kernel console, for error messages.
    fn diagnostics(&self) -> String {
        let read =
            |name: &str| fs::read_to_string(self.workdir.path().join(name)).unwrap_or_default();
        let console = read("console.log");
        let lines: Vec<&str> = console.lines().collect();
        let tail = lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..].join("\n");
        format!(
            "--- {QEMU} stderr ---\n{}--- last {CONSOLE_TAIL_LINES} lines of the guest console ---\n{tail}",
            read("qemu.log")
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // Errors mean QEMU has already exited, which is the goal.
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn qemu_command(config: &GuestConfig, kernel: &Path, initrd: &Path, workdir: &Path) -> Command {
    let forwards: String = config
        .host_forwards
        .iter()
        .map(|(host, guest)| format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"))
        .collect();
    let mut command = Command::new(QEMU);
    command
        .args(["-accel", "tcg", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none"])
        .args(["-m", &config.memory_mb.to_string()])
        .args(["-smp", &config.cpus.to_string()])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .arg("-serial")
        .arg(format!("file:{}", workdir.join("console.log").display()))
        .args(["-netdev", &format!("user,id=net0{forwards}")])
        .args(["-device", "virtio-net-pci,netdev=net0"])
        // Entropy: without it the kernel's random pool takes seconds to initialise under TCG, and
        // getrandom() callers such as mkfs wait for it.
        .args(["-device", "virtio-rng-pci"])
        // The agent's port is QEMU's stdin and stdout.
        .args(["-device", "virtio-serial-pci"])
        .args(["-chardev", "stdio,id=agent"])
        .args([
            "-device",
            &format!("virtserialport,chardev=agent,name={AGENT_PORT}"),
        ]);
    command
}

/// Decodes the agent's lines until QEMU's stdout closes, which disconnects the channel, or until the
/// framing breaks, which is reported once: nothing after it can be trusted.
fn read_agent(stdout: ChildStdout, messages: &Sender<Result<Message, String>>) {
    let mut decoder = Decoder::default();
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let message = match lines.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => match decoder.feed(&line).transpose() {
                None => continue,
                Some(message) => message,
            },
            Err(e) => Err(format!("reading from {QEMU}: {e}")),
        };
        let garbled = message.is_err();
        if messages.send(message).is_err() || garbled {
            return;
        }
    }
}

/// A loopback port nothing listens on now, for a server that binds it a moment later (QEMU's host
/// forward, a sidecar's HTTP endpoint, etcd). It is drawn at random from below the kernel's
/// ephemeral range: a port the kernel handed out for `bind(0)` goes back into that range and any
/// outgoing connection of the many tests running at once may take it before the server binds it
/// (seen: a sidecar failing with "address already in use"). Below the range only another
/// explicit pick can collide, which the random draw makes rare (`node_plugin` retries anyway).
pub fn free_local_port() -> std::io::Result<u16> {
    const LOWEST: u16 = 10_000;
    let below = ephemeral_start().unwrap_or(32_768);
    if below > LOWEST {
        let mut rng = rand::rng();
        for _ in 0..64 {
            let port = rand::Rng::random_range(&mut rng, LOWEST..below);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`).
fn ephemeral_start() -> Option<u16> {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// `text` as one word of a guest shell command line, whatever it holds.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Boots a guest for a test. `Ok(None)` means skip: this machine cannot run a guest and `CI` is not
/// `true` (the reason is printed). In CI the same condition is an error, as is any boot failure.
pub fn boot_or_skip(config: GuestConfig) -> Result<Option<Guest>, GuestError> {
    match Guest::boot(config) {
        Ok(guest) => Ok(Some(guest)),
        Err(e) => match skip_reason(&e) {
            Some(reason) => {
                eprintln!("SKIPPED: {reason}");
                Ok(None)
            }
            None => Err(e),
        },
    }
}

/// Why a test may skip rather than fail on `error`: this machine cannot run a guest at all and `CI`
/// is not `true`. `None` for every other error, and for every error in CI.
pub fn skip_reason(error: &GuestError) -> Option<String> {
    match error {
        GuestError::Unavailable(reason) if std::env::var("CI").as_deref() != Ok("true") => Some(
            format!("no QEMU guest on this machine (CI=true makes this fatal): {reason}"),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_is_bindable_and_outside_the_kernels_ephemeral_range() {
        let start = ephemeral_start().expect("Linux names its ephemeral port range");
        for _ in 0..20 {
            let port = free_local_port().unwrap();
            if start > 10_000 {
                assert!(
                    (10_000..start).contains(&port),
                    "{port} (range from {start})"
                );
            }
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[test]
    fn sh_quote_makes_one_word_of_anything() {
        for text in [
            "plain",
            "two words",
            "it's",
            "'",
            "$(reboot)",
            "a\"b\\c",
            "",
        ] {
            let output = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(text)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout), text);
        }
    }

    #[test]
    fn a_guest_can_be_shared_between_test_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Guest>();
    }

    #[test]
    fn host_forwards_become_qemu_hostfwd_rules() {
        let config = GuestConfig {
            host_forwards: vec![(14420, 4420), (18080, 80)],
            ..GuestConfig::default()
        };
        let command = qemu_command(&config, Path::new("/k"), Path::new("/i"), Path::new("/w"));
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let netdev = args
            .iter()
            .position(|a| a == "-netdev")
            .expect("a -netdev option");
        assert_eq!(
            args[netdev + 1],
            "user,id=net0,hostfwd=tcp:127.0.0.1:14420-:4420,hostfwd=tcp:127.0.0.1:18080-:80"
        );
    }
}
