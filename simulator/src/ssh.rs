//! The simulator's SSH server: RouterOS's SSH transport in front of a [`Shell`].
//!
//! The server authenticates users (public key, optionally password; the login name may carry
//! RouterOS terminal flags, `admin+ct80w`), runs each **exec** request as one command line and
//! offers an interactive **shell** with a prompt and line editing. It knows nothing of the
//! RouterOS language: every line goes to [`Shell::exec`], and the text that comes back is written
//! unchanged (the shell already ends lines in CRLF).
//!
//! Faults reach the transport two ways: a [`Reply::Hangup`] drops the TCP connection without a
//! reply, and cancelling a session's token (a simulated restart) drops that connection too. While
//! [`Shell::accepting`] is false, new TCP connections are closed before the SSH banner.
//!
//! Algorithms: RouterOS offers no post-quantum key exchange (recent OpenSSH clients warn about
//! it), so the server offers only classical ones, see [`KEX_ALGORITHMS`] and [`CIPHERS`].

mod channel;
mod connection;
mod keys;
mod line_editor;
mod scripted;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::Config;
use russh::{MethodKind, MethodSet, Preferred, SshId, cipher, kex};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use keys::{
    KeyFileError, load_or_generate_host_key, parse_authorized_keys, read_authorized_keys,
};
pub use scripted::{ScriptedShell, ShellStats, bulk_text};

/// What the shell answers to one command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Console output (CRLF line endings, written as is), the exec channel's stream it goes to,
    /// and its exit status.
    Output {
        text: String,
        stream: Stream,
        exit_status: u32,
    },
    /// A crash fault: drop the whole TCP connection without replying.
    Hangup,
}

/// Where an exec channel's output goes: a shell channel has only its terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stream {
    #[default]
    Stdout,
    /// SSH extended data of type 1 (RFC 4254 §5.2).
    Stderr,
}

/// Who opened a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The account name, without RouterOS login flags (`admin` for `admin+ct80w`).
    pub user: String,
    pub peer: SocketAddr,
}

/// The RouterOS console behind the SSH server.
pub trait Shell: Send + Sync + 'static {
    /// False during a simulated restart: new connections are closed at once.
    fn accepting(&self) -> bool;
    /// Called after authentication. The token is cancelled when the simulator drops the session
    /// (fault or restart); the server then closes the connection.
    fn session_opened(&self, info: SessionInfo) -> (u64, CancellationToken);
    /// Called once per opened session, when its connection has ended.
    fn session_closed(&self, id: u64);
    /// Runs one command line of session `session`.
    fn exec(&self, session: u64, line: &str) -> impl Future<Output = Reply> + Send;
    /// The interactive prompt, e.g. `[admin@MikroTik] > `.
    fn prompt(&self, session: u64) -> String;
}

/// An account that may log in.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub authorized_keys: Vec<PublicKey>,
    /// Password authentication is offered only when some user has a password.
    pub password: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("authorized_keys", &self.authorized_keys.len())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl User {
    fn authorizes_key(&self, key: &PublicKey) -> bool {
        self.authorized_keys
            .iter()
            .any(|authorized| authorized.key_data() == key.key_data())
    }

    fn authorizes_password(&self, password: &str) -> bool {
        self.password.as_deref() == Some(password)
    }
}

/// Key exchange algorithms offered, most preferred first: classical only, as RouterOS offers,
/// plus the RFC 8308 extension-negotiation and OpenSSH strict-kex markers.
pub const KEX_ALGORITHMS: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// Ciphers offered: the AES-GCM and AES-CTR families of RouterOS's `/ip ssh ciphers=auto`
/// (RouterOS has no ChaCha20-Poly1305; CBC and 3DES are left out as weak).
pub const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Server settings.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub host_key: PrivateKey,
    pub users: Vec<User>,
    /// The identification string after `SSH-2.0-`; RouterOS sends `ROSSSH`.
    pub software_version: String,
    /// Close connections idle for this long (`None`: never).
    pub inactivity_timeout: Option<Duration>,
    /// Constant time a refused authentication takes (against timing probes of accounts).
    pub auth_rejection_time: Duration,
}

impl SshConfig {
    pub fn new(host_key: PrivateKey, users: Vec<User>) -> Self {
        Self {
            host_key,
            users,
            software_version: "ROSSSH".to_owned(),
            inactivity_timeout: None,
            auth_rejection_time: Duration::from_secs(1),
        }
    }

    fn russh_config(&self) -> Config {
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        if self.users.iter().any(|user| user.password.is_some()) {
            methods.push(MethodKind::Password);
        }
        Config {
            server_id: SshId::Standard(Cow::Owned(format!("SSH-2.0-{}", self.software_version))),
            methods,
            auth_rejection_time: self.auth_rejection_time,
            // OpenSSH opens with a "none" attempt to learn the methods; refusing it is no
            // information to hide, and the default delay would slow every login by a second.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key.clone()],
            inactivity_timeout: self.inactivity_timeout,
            preferred: Preferred {
                kex: Cow::Borrowed(KEX_ALGORITHMS),
                cipher: Cow::Borrowed(CIPHERS),
                ..Preferred::default()
            },
            nodelay: true,
            ..Config::default()
        }
    }
}

/// Serves SSH on `listener` until `shutdown` is cancelled, then closes every connection and
/// returns once they have ended.
pub async fn serve<S: Shell>(
    shell: Arc<S>,
    listener: TcpListener,
    config: SshConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let server = Arc::new(connection::Server {
        russh: Arc::new(config.russh_config()),
        users: config.users.into(),
        shell,
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    if server.shell.accepting() {
                        connections.spawn(connection::run(
                            server.clone(),
                            tcp,
                            peer,
                            shutdown.child_token(),
                        ));
                    }
                }
                // Errors of one pending connection (reset before accept, out of descriptors)
                // must not stop the server.
                Err(error) => tracing::warn!(%error, "ssh: accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.join_all().await;
    Ok(())
}

/// The account part of a RouterOS login name: `admin+ct80w` logs in as `admin`.
fn account_name(login: &str) -> &str {
    login
        .split_once('+')
        .map_or(login, |(account, _flags)| account)
}

#[cfg(test)]
mod tests {
    use super::account_name;

    #[test]
    fn login_flags_are_stripped() {
        assert_eq!(account_name("admin+ct80w"), "admin");
        assert_eq!(account_name("admin+cetw511h4098"), "admin");
        assert_eq!(account_name("admin"), "admin");
        assert_eq!(account_name("admin+"), "admin");
    }
}
