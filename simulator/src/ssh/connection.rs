//! One TCP connection: authentication, channel requests, and tearing the connection down when
//! the shell drops its session.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use russh::keys::ssh_key;
use russh::server::{
    Auth, ChannelOpenHandle, Config, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::channel::{self, ChannelContext};
use super::{SessionInfo, Shell, User, account_name};

/// What every connection shares.
pub(super) struct Server<S> {
    pub(super) russh: Arc<Config>,
    pub(super) users: Arc<[User]>,
    pub(super) shell: Arc<S>,
}

/// Bytes read from the socket at once: a command's packets, or a chunk of a large one.
const READ_BUFFER: usize = 16 * 1024;

/// Runs one connection until the client leaves, `kill` is cancelled (shutdown, a session
/// dropped by the shell, a hangup fault) or the transport fails.
pub(super) async fn run<S: Shell>(
    server: Arc<Server<S>>,
    tcp: TcpStream,
    peer: SocketAddr,
    kill: CancellationToken,
) {
    // Whatever ends this connection also ends its channel tasks and session watcher.
    let _kill_on_exit = kill.clone().drop_guard();
    // russh's run_stream ignores Config::nodelay; without it every small reply waits for the
    // client's delayed ACK (about 40 ms).
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, %error, "ssh: cannot set TCP_NODELAY");
    }
    // russh owns the stream; a second handle on the socket lets us cut it from outside, which
    // is how a crashed RouterOS looks to the client: no SSH_MSG_DISCONNECT, just a closed socket.
    let (tcp, cutter) = match detach_cutter(tcp) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(%peer, %error, "ssh: cannot duplicate the socket");
            return;
        }
    };
    let handler = Connection {
        shell: server.shell.clone(),
        users: server.users.clone(),
        peer,
        kill: kill.clone(),
        authenticated: None,
        session: None,
        opened: HashMap::new(),
    };
    // russh reads each packet's length, then the packet, straight from the stream: two reads
    // per packet, about twenty per command. A buffer takes whatever has arrived in one.
    let tcp = BufReader::with_capacity(READ_BUFFER, tcp);
    let session = tokio::select! {
        started = russh::server::run_stream(server.russh.clone(), tcp, handler) => match started {
            Ok(session) => session,
            Err(error) => {
                tracing::debug!(%peer, %error, "ssh: handshake failed");
                return;
            }
        },
        () = kill.cancelled() => return,
    };
    tokio::pin!(session);
    let ended = tokio::select! {
        ended = &mut session => ended,
        () = kill.cancelled() => {
            // Shutting the socket down ends russh's reader; awaiting the session then makes
            // sure the shell has heard `session_closed` before this task ends.
            let _ = cutter.shutdown(Shutdown::Both);
            session.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%peer, %error, "ssh: connection ended with an error");
    }
}

fn detach_cutter(tcp: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std_stream = tcp.into_std()?;
    let cutter = std_stream.try_clone()?;
    Ok((TcpStream::from_std(std_stream)?, cutter))
}

/// A session the shell knows about; tells the shell when it is gone.
struct OpenSession<S: Shell> {
    shell: Arc<S>,
    id: u64,
}

impl<S: Shell> Drop for OpenSession<S> {
    fn drop(&mut self) {
        self.shell.session_closed(self.id);
    }
}

/// russh's per-connection handler.
struct Connection<S: Shell> {
    shell: Arc<S>,
    users: Arc<[User]>,
    peer: SocketAddr,
    kill: CancellationToken,
    /// The account that passed authentication (login flags stripped).
    authenticated: Option<String>,
    session: Option<OpenSession<S>>,
    /// Session channels waiting for their exec or shell request.
    opened: HashMap<ChannelId, Channel<Msg>>,
}

impl<S: Shell> Connection<S> {
    fn user(&self, login: &str) -> Option<&User> {
        let account = account_name(login);
        self.users.iter().find(|user| user.name == account)
    }

    fn decide(&mut self, login: &str, accepted: bool) -> Auth {
        if accepted {
            self.authenticated = Some(account_name(login).to_owned());
            Auth::Accept
        } else {
            Auth::reject()
        }
    }

    /// What a channel of this session runs commands with; `None` before authentication.
    fn context(&self) -> Option<ChannelContext<S>> {
        self.session.as_ref().map(|session| ChannelContext {
            shell: self.shell.clone(),
            session: session.id,
            kill: self.kill.clone(),
        })
    }

    fn key_authorized(&self, login: &str, key: &ssh_key::PublicKey) -> bool {
        self.user(login)
            .is_some_and(|user| user.authorizes_key(key))
    }
}

impl<S: Shell> russh::server::Handler for Connection<S> {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        login: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Refuse unknown keys before the client signs with them.
        Ok(if self.key_authorized(login, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        login: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let accepted = self.key_authorized(login, key.public_key);
        Ok(self.decide(login, accepted))
    }

    async fn auth_password(&mut self, login: &str, password: &str) -> Result<Auth, Self::Error> {
        let accepted = self
            .user(login)
            .is_some_and(|user| user.authorizes_password(password));
        Ok(self.decide(login, accepted))
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        let user = self.authenticated.take().unwrap_or_default();
        let (id, dropped) = self.shell.session_opened(SessionInfo {
            user,
            peer: self.peer,
        });
        self.session = Some(OpenSession {
            shell: self.shell.clone(),
            id,
        });
        let kill = self.kill.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = dropped.cancelled() => kill.cancel(),
                () = kill.cancelled() => {}
            }
        });
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Channels open only after authentication, so the session exists; dropping `reply`
        // refuses the channel should that ever not hold.
        if self.session.is_some() {
            reply.accept().await;
            self.opened.insert(channel.id(), channel);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before any request.
        self.opened.remove(&channel);
        Ok(())
    }

    // The replies to requests are sent here, in order, before any output of the request.

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if let (Some(open), Some(context)) = (self.opened.remove(&channel), self.context()) {
            tokio::spawn(channel::serve_shell(open, context));
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        match (self.opened.remove(&channel), self.context()) {
            (Some(open), Some(context)) => channel::exec(open, context, data, session),
            _ => Ok(()),
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Ignored: RouterOS has no environment to set.
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}
