//! The SSH server driven by the real OpenSSH client.

mod common;
use common::have_openssh;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;

use rds_sim::ssh::{ScriptedShell, SshConfig, User, bulk_text, load_or_generate_host_key, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "s3cret";
const PROMPT: &str = "[admin@MikroTik] > ";

struct Server {
    shell: Arc<ScriptedShell>,
    port: u16,
    dir: tempfile::TempDir,
    /// A key authorized for `admin`.
    key: PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_admin");
        let client_key = load_or_generate_host_key(&key).unwrap();
        let host_key = load_or_generate_host_key(&dir.path().join("host_ed25519")).unwrap();
        let admin = User {
            name: "admin".to_owned(),
            authorized_keys: vec![client_key.public_key().clone()],
            password: Some(PASSWORD.to_owned()),
        };
        let shell = Arc::new(ScriptedShell::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            shell.clone(),
            listener,
            SshConfig::new(host_key, vec![admin]),
            shutdown.clone(),
        ));
        Self {
            shell,
            port,
            dir,
            key,
            shutdown,
            task,
        }
    }

    fn ssh(&self, key: &Path, login: &str) -> Command {
        common::openssh(self.port, key, login)
    }

    async fn exec(&self, login: &str, line: &str) -> Output {
        self.ssh(&self.key, login).arg(line).output().await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).unwrap()
}

/// `ssh` typing `password` through SSH_ASKPASS.
fn with_password(mut command: Command, dir: &Path, password: &str) -> Command {
    let askpass = dir.join(format!("askpass-{password}"));
    std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
    command
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PasswordAuthentication=yes",
        ])
        .args(["-o", "BatchMode=no", "-o", "NumberOfPasswordPrompts=1"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force");
    command
}

/// An interactive `ssh -tt` session: keys go in on stdin, the terminal's bytes come out.
struct Terminal {
    child: Child,
    output: ChildStdout,
    seen: Vec<u8>,
}

impl Terminal {
    fn open(server: &Server) -> Self {
        let mut child = server
            .ssh(&server.key, "admin+ct80w")
            .arg("-tt")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let output = child.stdout.take().unwrap();
        Self {
            child,
            output,
            seen: Vec::new(),
        }
    }

    async fn type_keys(&mut self, keys: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(keys.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Reads until the whole transcript so far is `expected`.
    async fn expect(&mut self, expected: &str) {
        let mut buffer = [0u8; 1024];
        while self.seen.len() < expected.len() {
            let read = self.output.read(&mut buffer).await.unwrap();
            assert_ne!(
                read,
                0,
                "terminal closed; seen {:?}",
                String::from_utf8_lossy(&self.seen)
            );
            self.seen.extend_from_slice(&buffer[..read]);
        }
        assert_eq!(String::from_utf8_lossy(&self.seen), expected);
    }

    /// Waits for `ssh` to exit; returns its exit code and the rest of the output.
    async fn closed(mut self) -> (Option<i32>, String) {
        let mut rest = Vec::new();
        self.output.read_to_end(&mut rest).await.unwrap();
        let status = self.child.wait().await.unwrap();
        (status.code(), String::from_utf8(rest).unwrap())
    }
}

/// Named so that `cargo test ssh` selects them.
mod ssh {
    use super::*;

    #[tokio::test]
    async fn exec_writes_the_shell_text_as_is_and_its_exit_status() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;

        let output = server
            .exec("admin", r#"/disk print detail where slot="x""#)
            .await;
        assert_eq!(stdout(&output), "/disk print detail where slot=\"x\"\r\n");
        assert_eq!(output.status.code(), Some(0), "{output:?}");

        let output = server.exec("admin", "fail please").await;
        assert_eq!(stdout(&output), "fail please\r\n");
        assert_eq!(output.status.code(), Some(1));

        let output = server.exec("admin", "quiet").await;
        assert_eq!(stdout(&output), "");
        assert_eq!(output.status.code(), Some(0));

        let stats = server
            .shell
            .wait_for(|stats| stats.sessions_closed == 3)
            .await;
        assert_eq!(stats.sessions_opened, 3);
        server.stop().await;
    }

    #[tokio::test]
    async fn output_larger_than_the_channel_window_arrives_whole() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let size = 5 * 1024 * 1024 + 7;
        let output = server.exec("admin", &format!("bulk {size}")).await;
        assert_eq!(output.status.code(), Some(0));
        assert!(
            output.stdout == bulk_text(size).as_bytes(),
            "{} bytes",
            output.stdout.len()
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn login_flags_are_stripped_before_authentication() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let output = server.exec("admin+ct80w", "/system identity print").await;
        assert_eq!(stdout(&output), "/system identity print\r\n");
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert_eq!(server.shell.stats().users, ["admin"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn wrong_keys_and_users_are_refused() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let stranger = server.dir.path().join("id_stranger");
        load_or_generate_host_key(&stranger).unwrap();

        let refusals = [
            server
                .ssh(&stranger, "admin")
                .arg("x")
                .output()
                .await
                .unwrap(),
            server
                .ssh(&server.key, "root")
                .arg("x")
                .output()
                .await
                .unwrap(),
            server
                .ssh(&server.key, "root+admin")
                .arg("x")
                .output()
                .await
                .unwrap(),
        ];
        for output in refusals {
            assert_eq!(output.status.code(), Some(255), "{output:?}");
            assert!(output.stdout.is_empty());
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("Permission denied"), "{stderr}");
        }
        let stats = server.shell.stats();
        assert_eq!(stats.sessions_opened, 0);
        assert!(stats.lines.is_empty());
        server.stop().await;
    }

    #[tokio::test]
    async fn password_authentication_checks_the_password() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let dir = server.dir.path();
        // OpenSSH keeps the first value of an option, so the password options come first.
        let login = |password| {
            let mut command = with_password(Command::new("ssh"), dir, password);
            command
                .args(["-F", "/dev/null", "-p", &server.port.to_string()])
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ])
                .args(["-o", "LogLevel=ERROR", "admin@127.0.0.1", "with password"])
                .stdin(Stdio::null());
            command
        };

        let output = login(PASSWORD).output().await.unwrap();
        assert_eq!(stdout(&output), "with password\r\n", "{output:?}");
        assert_eq!(output.status.code(), Some(0));

        let output = login("wrong").output().await.unwrap();
        assert_eq!(output.status.code(), Some(255), "{output:?}");
        assert!(output.stdout.is_empty());
        assert_eq!(server.shell.stats().sessions_opened, 1);
        server.stop().await;
    }

    #[tokio::test]
    async fn thirty_two_clients_at_once() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let clients: Vec<_> = (0..32)
            .map(|n| {
                let mut command = server.ssh(&server.key, "admin");
                command.arg(format!("/disk print where slot=\"pvc-{n}\""));
                tokio::spawn(async move { command.output().await.unwrap() })
            })
            .collect();
        for (n, client) in clients.into_iter().enumerate() {
            let output = client.await.unwrap();
            assert_eq!(
                stdout(&output),
                format!("/disk print where slot=\"pvc-{n}\"\r\n")
            );
            assert_eq!(output.status.code(), Some(0), "{output:?}");
        }
        let stats = server
            .shell
            .wait_for(|stats| stats.sessions_closed == 32)
            .await;
        assert_eq!(stats.sessions_opened, 32);
        server.stop().await;
    }

    #[tokio::test]
    async fn many_channels_one_after_another_on_one_connection() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        // An OpenSSH control master holds one connection; each `ssh -S` opens a channel on it.
        let socket = server.dir.path().join("mux");
        let client = || {
            let mut command = server.ssh(&server.key, "admin");
            command.arg("-S").arg(&socket);
            command
        };
        let status = client()
            .args(["-M", "-f", "-N"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap();
        assert!(status.success());

        for n in 0..20 {
            let output = client().arg(format!(":put {n}")).output().await.unwrap();
            assert_eq!(stdout(&output), format!(":put {n}\r\n"), "{output:?}");
            assert_eq!(output.status.code(), Some(0));
        }
        let stats = server.shell.stats();
        assert_eq!(stats.sessions_opened, 1);
        assert_eq!(stats.lines.len(), 20);

        client().args(["-O", "exit"]).output().await.unwrap();
        server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;
        server.stop().await;
    }

    #[tokio::test]
    async fn a_hangup_drops_the_connection_without_a_reply() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let output = server.exec("admin", "hangup").await;
        assert_eq!(output.status.code(), Some(255), "{output:?}");
        assert!(output.stdout.is_empty());
        server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;

        let output = server.exec("admin", "after the crash").await;
        assert_eq!(stdout(&output), "after the crash\r\n");
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_are_closed_at_once_while_not_accepting() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        server.shell.set_accepting(false);
        let output = server.exec("admin", "during restart").await;
        assert_eq!(output.status.code(), Some(255), "{output:?}");
        assert!(output.stdout.is_empty());
        assert_eq!(server.shell.stats().sessions_opened, 0);

        server.shell.set_accepting(true);
        let output = server.exec("admin", "after restart").await;
        assert_eq!(stdout(&output), "after restart\r\n");
        server.stop().await;
    }

    #[tokio::test]
    async fn interactive_shell_edits_lines_and_quits() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let mut terminal = Terminal::open(&server);
        let mut transcript = PROMPT.to_owned();
        terminal.expect(&transcript).await;

        terminal.type_keys("/disk prinx\x7ft\r").await;
        transcript += "/disk prinx\x08 \x08t\r\n/disk print\r\n";
        transcript += PROMPT;
        terminal.expect(&transcript).await;

        terminal.type_keys("abandoned\x03\r").await;
        transcript += &format!("abandoned\r\n{PROMPT}\r\n{PROMPT}");
        terminal.expect(&transcript).await;

        terminal.type_keys("/quit\r").await;
        transcript += "/quit\r\n";
        terminal.expect(&transcript).await;
        assert_eq!(terminal.closed().await, (Some(0), String::new()));
        assert_eq!(server.shell.stats().lines, ["/disk print"]);
        server.stop().await;
    }

    #[tokio::test]
    async fn ctrl_d_on_an_empty_line_logs_out() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let mut terminal = Terminal::open(&server);
        terminal.expect(PROMPT).await;
        terminal.type_keys("\x04").await;
        assert_eq!(terminal.closed().await, (Some(0), String::new()));
        server.stop().await;
    }

    #[tokio::test]
    async fn dropping_the_session_closes_a_live_terminal() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let mut terminal = Terminal::open(&server);
        terminal.expect(PROMPT).await;
        assert_eq!(server.shell.drop_sessions(), 1);
        assert_eq!(terminal.closed().await, (Some(255), String::new()));
        server
            .shell
            .wait_for(|stats| stats.sessions_closed == 1)
            .await;
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_closes_live_connections() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        let mut terminal = Terminal::open(&server);
        terminal.expect(PROMPT).await;
        let shell = server.shell.clone();
        server.stop().await;
        assert_eq!(terminal.closed().await.0, Some(255));
        assert_eq!(shell.stats().sessions_closed, 1);
    }

    #[tokio::test]
    async fn offers_no_post_quantum_key_exchange_and_no_chacha20() {
        if !have_openssh() {
            return;
        }
        let server = Server::start().await;
        // Offering the client only what the server lacks makes OpenSSH print the server's list,
        // at INFO level: `-v` lifts the ERROR level the other tests want.
        let refused = |option: &'static str| {
            let mut command = server.ssh(&server.key, "admin");
            command.args(["-o", option, "-v", "x"]);
            async move {
                let output = command.output().await.unwrap();
                assert_eq!(output.status.code(), Some(255), "{output:?}");
                String::from_utf8(output.stderr).unwrap()
            }
        };
        let kex = refused("KexAlgorithms=sntrup761x25519-sha512@openssh.com").await;
        assert!(
            kex.contains(
                "no matching key exchange method found. Their offer: curve25519-sha256,\
                 curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,\
                 diffie-hellman-group16-sha512,diffie-hellman-group14-sha256,ext-info-s,\
                 kex-strict-s-v00@openssh.com"
            ),
            "{kex}"
        );
        let ciphers = refused("Ciphers=chacha20-poly1305@openssh.com").await;
        assert!(
            ciphers.contains(
                "no matching cipher found. Their offer: aes256-gcm@openssh.com,\
                 aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr"
            ),
            "{ciphers}"
        );
        assert_eq!(server.shell.stats().sessions_opened, 0);
        server.stop().await;
    }
}
