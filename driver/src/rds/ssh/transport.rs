//! One SSH connection to the RDS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect, client};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::{HostKeyPin, SshError, Timeouts};

/// Bytes read from the socket at once: a command's reply packets, or a chunk of a large one.
const READ_BUFFER: usize = 16 * 1024;

/// An authenticated SSH connection that runs one command at a time, each on its own exec
/// channel.
pub struct SshTransport {
    addr: String,
    handle: client::Handle<PinnedHostKey>,
    command_timeout: Duration,
    /// RouterOS wants channels opened one at a time per connection.
    turn: Mutex<()>,
    /// False once a command has not ended cleanly (an error, a timeout, or its caller gave up):
    /// RouterOS may still be running it and a second channel would break the one-at-a-time
    /// rule, so the connection is done.
    healthy: AtomicBool,
}

/// A failed command, and whether it may have reached the RDS (if not, it is safe to retry).
pub(super) struct Failure {
    pub(super) error: SshError,
    pub(super) sent: bool,
}

impl SshTransport {
    /// Connects to `addr` (`host:port`), checks the host key against `pin` and logs in as
    /// `user` (which may carry RouterOS login flags, `admin+ct`) with `key`.
    pub async fn connect(
        addr: &str,
        user: &str,
        key: Arc<PrivateKey>,
        pin: &HostKeyPin,
        timeouts: Timeouts,
    ) -> Result<Self, SshError> {
        let refused_key = Arc::new(OnceLock::new());
        let handler = PinnedHostKey {
            pin: pin.clone(),
            refused_key: refused_key.clone(),
        };
        let config = Arc::new(client::Config {
            // Idle pooled connections stay open; a dead one is found when a channel will not
            // open (RouterOS ignores keepalive@openssh.com).
            inactivity_timeout: None,
            ..client::Config::default()
        });
        let attempt = async {
            let socket = TcpStream::connect(addr).await?;
            // Each command is a few small packets each way; none may wait for a delayed ACK.
            if let Err(error) = socket.set_nodelay(true) {
                tracing::warn!(%addr, %error, "ssh: cannot set TCP_NODELAY");
            }
            // russh reads each packet's length, then the packet, straight from the stream: two
            // reads per packet. A buffer takes whatever has arrived in one.
            let socket = BufReader::with_capacity(READ_BUFFER, socket);
            let mut handle = client::connect_stream(config, socket, handler).await?;
            let hash = if key.algorithm().is_rsa() {
                // No `server-sig-algs` extension: rsa-sha2-256 (RFC 8332) is the safer guess
                // than SHA-1 `ssh-rsa`, which current servers refuse.
                handle
                    .best_supported_rsa_hash()
                    .await?
                    .unwrap_or(Some(HashAlg::Sha256))
            } else {
                None
            };
            let auth = handle
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash))
                .await?;
            Ok::<_, russh::Error>((handle, auth.success()))
        };
        let connect_error = |reason| SshError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        match tokio::time::timeout(timeouts.connect, attempt).await {
            Err(_) => Err(connect_error(format!(
                "no SSH session within {:?}",
                timeouts.connect
            ))),
            Ok(Err(error)) => Err(match refused_key.get() {
                Some(actual) => SshError::HostKeyMismatch {
                    addr: addr.to_owned(),
                    expected: pin.to_string(),
                    actual: actual.clone(),
                },
                None => connect_error(error.to_string()),
            }),
            // russh reports a connection lost during authentication as a refusal.
            Ok(Ok((handle, false))) if handle.is_closed() => Err(connect_error(
                "the connection closed during authentication".to_owned(),
            )),
            Ok(Ok((_, false))) => Err(SshError::Auth {
                addr: addr.to_owned(),
                user: user.to_owned(),
            }),
            Ok(Ok((handle, true))) => Ok(Self {
                addr: addr.to_owned(),
                handle,
                command_timeout: timeouts.command,
                turn: Mutex::new(()),
                healthy: AtomicBool::new(true),
            }),
        }
    }

    /// True when the connection is gone or no longer fit for commands.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed() || !self.healthy.load(Ordering::SeqCst)
    }

    /// Runs one command line and returns its output, stdout and stderr as they came.
    pub async fn run(&self, line: &str) -> Result<String, SshError> {
        self.exec(line, self.command_timeout)
            .await
            .map(|exec| exec.text)
            .map_err(|failure| failure.error)
    }

    /// Checks that the RDS still serves this connection by opening (and closing) a channel.
    pub async fn probe(&self) -> Result<(), SshError> {
        let _turn = self.turn.lock().await;
        let opened = tokio::time::timeout(self.command_timeout, self.handle.channel_open_session());
        match opened.await {
            Ok(Ok(channel)) => {
                // The channel has proved the point; a failed close shows on the next use.
                let _ = channel.close().await;
                Ok(())
            }
            Ok(Err(error)) => {
                self.healthy.store(false, Ordering::SeqCst);
                Err(self.disconnected(format!("cannot open a channel: {error}")))
            }
            Err(_) => Err(self.give_up("(liveness probe)", self.command_timeout).await),
        }
    }

    /// Runs `line`, giving up on it after `limit`.
    pub(super) async fn exec(&self, line: &str, limit: Duration) -> Result<Exec, Failure> {
        let _turn = self.turn.lock().await;
        if self.is_closed() {
            return Err(Failure {
                error: self.disconnected("the connection is closed".to_owned()),
                sent: false,
            });
        }
        // Cleared for the command's duration, so that a caller dropping this future (its own
        // deadline) leaves the connection marked as unfit.
        self.healthy.store(false, Ordering::SeqCst);
        let sent = AtomicBool::new(false);
        match tokio::time::timeout(limit, self.exec_channel(line, &sent)).await {
            Ok(Ok(output)) => {
                self.healthy.store(true, Ordering::SeqCst);
                Ok(output)
            }
            Ok(Err(failure)) => Err(failure),
            // A channel that would not even open (a connection dead without a FIN) has not
            // carried the command.
            Err(_) => Err(Failure {
                error: self.give_up(line, limit).await,
                sent: sent.load(Ordering::SeqCst),
            }),
        }
    }

    async fn exec_channel(&self, line: &str, sent: &AtomicBool) -> Result<Exec, Failure> {
        let unsent = |reason| Failure {
            error: self.disconnected(reason),
            sent: false,
        };
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|error| unsent(format!("cannot open a channel: {error}")))?;
        sent.store(true, Ordering::SeqCst);
        channel
            .exec(true, line)
            .await
            .map_err(|error| unsent(format!("cannot send the command: {error}")))?;
        let mut output = Vec::new();
        let mut stderr_bytes = 0;
        let mut eof = false;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => output.extend_from_slice(&data),
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    stderr_bytes += data.len();
                    output.extend_from_slice(&data);
                }
                Some(ChannelMsg::Failure) => {
                    return Err(unsent("the RDS refused the exec request".to_owned()));
                }
                Some(ChannelMsg::Eof) => eof = true,
                Some(ChannelMsg::Close) => break,
                // The exit status is not reliable on RouterOS; the caller judges the text.
                Some(_) => {}
                None if eof => break,
                None => {
                    return Err(Failure {
                        error: self.disconnected(
                            "the connection closed before the command finished".to_owned(),
                        ),
                        sent: true,
                    });
                }
            }
        }
        // Valid UTF-8 (RouterOS's output nearly always is) is taken as it is, without a copy.
        let text = String::from_utf8(output)
            .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned());
        Ok(Exec { text, stderr_bytes })
    }

    /// Abandons a command that ran out of time: the connection is closed, so that the RDS
    /// drops the session and no second channel is opened beside the stuck one.
    async fn give_up(&self, command: &str, after: Duration) -> SshError {
        self.healthy.store(false, Ordering::SeqCst);
        // A connection that is already gone needs no goodbye.
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "command timed out", "en")
            .await;
        SshError::Timeout {
            addr: self.addr.clone(),
            command: command.to_owned(),
            after,
        }
    }

    fn disconnected(&self, reason: String) -> SshError {
        SshError::Disconnected {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// Accepts only the pinned host key, and remembers a refused one for the error message.
struct PinnedHostKey {
    pin: HostKeyPin,
    refused_key: Arc<OnceLock<String>>,
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = key.public_key();
        if self.pin.matches(&key) {
            return Ok(true);
        }
        let _ = self
            .refused_key
            .set(self.pin.fingerprint_of(&key).to_string());
        Ok(false)
    }
}

/// What one exec printed: standard output and standard error as they came, and how much of it
/// came on standard error (RouterOS's choice is unverified, REFERENCE.md §13.8: the driver reads
/// both as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub text: String,
    pub stderr_bytes: usize,
}
