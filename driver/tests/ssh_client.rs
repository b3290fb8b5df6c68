//! The driver's SSH client against the simulator's SSH server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use rds_csi::rds::ssh::{
    Backoff, BreakerConfig, HostKeyPin, PoolConfig, SshError, SshPool, SshTransport, Timeouts,
};
use rds_sim::ssh::{ScriptedShell, SshConfig, User, bulk_text, serve};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn new_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// A port nobody listens on (just freed).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

struct Server {
    shell: Arc<ScriptedShell>,
    addr: String,
    host_key: PrivateKey,
    /// Authorized for `admin`.
    key: Arc<PrivateKey>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, Arc::new(new_key()), new_key())
    }

    fn start_on(listener: TcpListener, key: Arc<PrivateKey>, host_key: PrivateKey) -> Self {
        let admin = User {
            name: "admin".to_owned(),
            authorized_keys: vec![key.public_key().clone()],
            password: None,
        };
        let shell = Arc::new(ScriptedShell::default());
        let addr = listener.local_addr().unwrap().to_string();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            shell.clone(),
            listener,
            SshConfig::new(host_key.clone(), vec![admin]),
            shutdown.clone(),
        ));
        Self {
            shell,
            addr,
            host_key,
            key,
            shutdown,
            task,
        }
    }

    fn pin(&self) -> HostKeyPin {
        HostKeyPin::of_key(self.host_key.public_key())
    }

    async fn connect_with(&self, timeouts: Timeouts) -> SshTransport {
        SshTransport::connect(&self.addr, "admin", self.key.clone(), &self.pin(), timeouts)
            .await
            .unwrap()
    }

    async fn connect(&self) -> SshTransport {
        self.connect_with(Timeouts::default()).await
    }

    fn pool(&self, size: usize) -> SshPool {
        SshPool::new(PoolConfig {
            size,
            ..PoolConfig::new(&self.addr, "admin+ct", self.key.clone(), self.pin())
        })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A TCP relay whose open connections can be made to go silent, as when the RDS loses power:
/// no FIN, no RST, nothing more.
struct Relay {
    addr: String,
    silence: Arc<std::sync::Mutex<CancellationToken>>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let silence = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let current = silence.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut server = TcpStream::connect(&target).await.unwrap();
                let silenced = current.lock().unwrap().clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = copy_bidirectional(&mut client, &mut server) => {}
                        // Keep both sockets open and never read them again.
                        () = silenced.cancelled() => std::future::pending().await,
                    }
                });
            }
        });
        Self { addr, silence }
    }

    /// Silences the connections open now; later ones are relayed.
    fn silence_open_connections(&self) {
        let mut current = self.silence.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
    }
}

/// Named so that `cargo test ssh` selects them.
mod ssh {
    use super::*;

    #[tokio::test]
    async fn commands_return_the_text_whatever_the_exit_status() {
        let server = Server::start().await;
        let transport = server.connect().await;
        let line = r#"/disk print detail where slot="pvc-1""#;
        assert_eq!(transport.run(line).await.unwrap(), format!("{line}\r\n"));
        assert_eq!(
            transport.run("failure: no such item").await.unwrap(),
            "failure: no such item\r\n"
        );
        assert_eq!(transport.run("quiet").await.unwrap(), "");
        let size = 3 * 1024 * 1024 + 1;
        assert_eq!(
            transport.run(&format!("bulk {size}")).await.unwrap(),
            bulk_text(size)
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn one_connection_carries_many_commands_one_channel_at_a_time() {
        let server = Server::start().await;
        let transport = Arc::new(server.connect().await);
        let commands: Vec<_> = (0..64)
            .map(|n| {
                let transport = transport.clone();
                tokio::spawn(async move { (n, transport.run(&format!(":put {n}")).await) })
            })
            .collect();
        for command in commands {
            let (n, output) = command.await.unwrap();
            assert_eq!(output.unwrap(), format!(":put {n}\r\n"));
        }
        let stats = server.shell.stats();
        assert_eq!(stats.sessions_opened, 1);
        assert_eq!(stats.lines.len(), 64);
        assert_eq!(stats.max_running_in_one_session, 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_different_host_key_is_refused_with_both_fingerprints() {
        let server = Server::start().await;
        let pin = HostKeyPin::of_key(new_key().public_key());
        let error = SshTransport::connect(
            &server.addr,
            "admin",
            server.key.clone(),
            &pin,
            Timeouts::default(),
        )
        .await
        .err()
        .unwrap();
        let actual = server.pin().to_string();
        assert_eq!(
            error,
            SshError::HostKeyMismatch {
                addr: server.addr.clone(),
                expected: pin.to_string(),
                actual: actual.clone(),
            }
        );
        let message = error.to_string();
        for part in [
            server.addr.as_str(),
            &pin.to_string(),
            &actual,
            "rds.hostKey",
        ] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        assert_eq!(server.shell.stats().sessions_opened, 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn an_unknown_client_key_is_refused() {
        let server = Server::start().await;
        let stranger = Arc::new(new_key());
        let error = SshTransport::connect(
            &server.addr,
            "admin",
            stranger,
            &server.pin(),
            Timeouts::default(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(
            error,
            SshError::Auth {
                addr: server.addr.clone(),
                user: "admin".to_owned(),
            }
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn a_command_that_never_finishes_times_out_and_ends_the_connection() {
        let server = Server::start().await;
        let command = Duration::from_millis(300);
        let transport = server
            .connect_with(Timeouts {
                command,
                ..Timeouts::default()
            })
            .await;
        let error = transport.run("hang").await.unwrap_err();
        assert_eq!(
            error,
            SshError::Timeout {
                addr: server.addr.clone(),
                command: "hang".to_owned(),
                after: command,
            }
        );
        // The client hung up, so the server dropped the session and the stuck command.
        let stats = server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;
        assert_eq!(stats.lines, ["hang"]);
        assert!(transport.is_closed());
        assert!(matches!(
            transport.run("after").await,
            Err(SshError::Disconnected { .. })
        ));
        server.stop().await;
    }

    #[tokio::test]
    async fn a_copy_gets_the_copy_timeout_and_every_other_command_the_command_timeout() {
        let server = Server::start().await;
        let timeouts = Timeouts {
            command: Duration::from_millis(300),
            copy: Duration::from_millis(600),
            ..Timeouts::default()
        };
        let pool = SshPool::new(PoolConfig {
            size: 1,
            timeouts,
            ..PoolConfig::new(&server.addr, "admin", server.key.clone(), server.pin())
        });
        let timed_out = |after| SshError::Timeout {
            addr: server.addr.clone(),
            command: "hang".to_owned(),
            after,
        };
        assert_eq!(pool.run("hang").await, Err(timed_out(timeouts.command)));
        assert_eq!(pool.run_copy("hang").await, Err(timed_out(timeouts.copy)));
        // Each timed-out command ended its connection, so the server dropped both sessions.
        let stats = server
            .shell
            .wait_for(|stats| stats.sessions_closed == 2)
            .await;
        assert_eq!(stats.sessions_opened, 2);
        assert_eq!(stats.lines, ["hang", "hang"]);
        assert_eq!(pool.run_copy("copied").await.unwrap(), "copied\r\n");
        server.stop().await;
    }

    #[tokio::test]
    async fn the_probe_opens_a_channel() {
        let server = Server::start().await;
        let transport = server.connect().await;
        transport.probe().await.unwrap();
        assert!(server.shell.stats().lines.is_empty());

        assert_eq!(server.shell.drop_sessions(), 1);
        server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;
        assert!(matches!(
            transport.probe().await,
            Err(SshError::Disconnected { .. })
        ));
        assert!(transport.is_closed());
        server.stop().await;
    }

    #[tokio::test]
    async fn the_pool_reconnects_after_the_server_drops_its_sessions() {
        let server = Server::start().await;
        let pool = server.pool(1);
        assert_eq!(pool.run("before").await.unwrap(), "before\r\n");

        assert_eq!(server.shell.drop_sessions(), 1);
        server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;
        assert_eq!(pool.run("after").await.unwrap(), "after\r\n");
        pool.probe().await.unwrap();

        let stats = server.shell.stats();
        assert_eq!(stats.sessions_opened, 2);
        assert_eq!(stats.lines, ["before", "after"]);
        assert_eq!(stats.users, ["admin", "admin"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_command_is_retried_on_a_new_connection_when_a_silent_one_never_took_it() {
        let server = Server::start().await;
        let relay = Relay::start(server.addr.clone()).await;
        let pool = SshPool::new(PoolConfig {
            size: 1,
            // Long enough for "before" on a loaded machine, short for the silent attempt.
            timeouts: Timeouts {
                command: Duration::from_secs(1),
                ..Timeouts::default()
            },
            ..PoolConfig::new(&relay.addr, "admin", server.key.clone(), server.pin())
        });
        assert_eq!(pool.run("before").await.unwrap(), "before\r\n");

        relay.silence_open_connections();
        // The channel never opens on the silent connection, so the command cannot have run
        // there; the pool sends it once more, on a new connection.
        assert_eq!(pool.run("after").await.unwrap(), "after\r\n");
        let stats = server.shell.stats();
        assert_eq!(stats.sessions_opened, 2);
        assert_eq!(stats.lines, ["before", "after"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_command_lost_with_its_connection_is_not_retried() {
        let server = Server::start().await;
        let pool = server.pool(1);
        assert!(matches!(
            pool.run("hangup").await,
            Err(SshError::Disconnected { .. })
        ));
        assert_eq!(server.shell.stats().lines, ["hangup"]);
        assert_eq!(pool.run("next").await.unwrap(), "next\r\n");
        server.stop().await;
    }

    #[tokio::test]
    async fn thirty_two_commands_through_a_pool_of_four() {
        let server = Server::start().await;
        let pool = Arc::new(server.pool(4));
        let commands: Vec<_> = (0..32)
            .map(|n| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    (
                        n,
                        pool.run(&format!("/disk print where slot=\"pvc-{n}\""))
                            .await,
                    )
                })
            })
            .collect();
        for command in commands {
            let (n, output) = command.await.unwrap();
            assert_eq!(
                output.unwrap(),
                format!("/disk print where slot=\"pvc-{n}\"\r\n")
            );
        }
        let stats = server.shell.stats();
        assert!(stats.sessions_opened <= 4, "{stats:?}");
        assert_eq!(stats.sessions_closed, 0);
        assert_eq!(stats.max_running_in_one_session, 1);
        assert_eq!(stats.lines.len(), 32);
        server.stop().await;
    }

    fn pool_for(
        addr: SocketAddr,
        key: Arc<PrivateKey>,
        pin: HostKeyPin,
        breaker: BreakerConfig,
    ) -> SshPool {
        SshPool::new(PoolConfig {
            size: 1,
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            breaker,
            ..PoolConfig::new(&addr.to_string(), "admin", key, pin)
        })
    }

    #[tokio::test]
    async fn the_breaker_opens_after_consecutive_connection_failures() {
        let addr = closed_port().await;
        let pool = pool_for(
            addr,
            Arc::new(new_key()),
            HostKeyPin::of_key(new_key().public_key()),
            BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_secs(3600),
            },
        );
        for _ in 0..3 {
            let error = pool.run("x").await.unwrap_err();
            assert!(
                matches!(&error, SshError::Connect { addr: a, .. } if *a == addr.to_string()),
                "{error}"
            );
        }
        for _ in 0..2 {
            match pool.run("x").await.unwrap_err() {
                SshError::CircuitOpen {
                    addr: a,
                    failures,
                    retry_in,
                    last_error,
                } => {
                    assert_eq!(a, addr.to_string());
                    assert_eq!(failures, 3);
                    assert!(retry_in > Duration::from_secs(3000), "{retry_in:?}");
                    assert!(last_error.contains("cannot connect"), "{last_error}");
                }
                other => panic!("expected CircuitOpen, got {other}"),
            }
        }
        assert!(matches!(
            pool.probe().await,
            Err(SshError::CircuitOpen { .. })
        ));
    }

    #[tokio::test]
    async fn a_successful_half_open_probe_closes_the_breaker() {
        let addr = closed_port().await;
        let key = Arc::new(new_key());
        let host_key = new_key();
        let pool = pool_for(
            addr,
            key.clone(),
            HostKeyPin::of_key(host_key.public_key()),
            BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::ZERO,
            },
        );
        for _ in 0..2 {
            assert!(matches!(pool.run("x").await, Err(SshError::Connect { .. })));
        }

        // The RDS comes back on the same address.
        let listener = TcpListener::bind(addr).await.unwrap();
        let server = Server::start_on(listener, key, host_key);
        assert_eq!(pool.run("back").await.unwrap(), "back\r\n");
        assert_eq!(pool.run("again").await.unwrap(), "again\r\n");
        assert_eq!(server.shell.stats().sessions_opened, 1);
        server.stop().await;
    }
}
