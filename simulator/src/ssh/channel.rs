//! One session channel: an exec request runs one command line; a shell request runs an
//! interactive console until `/quit`, Ctrl-D or the client leaves.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use russh::server::{Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg};
use tokio_util::sync::CancellationToken;

use super::line_editor::{Edit, LineEditor};
use super::{Reply, Shell, Stream};

pub(super) struct ChannelContext<S> {
    pub(super) shell: Arc<S>,
    pub(super) session: u64,
    /// Cancelled when the connection goes; cancelling it drops the connection.
    pub(super) kill: CancellationToken,
}

/// A command's reply on an exec channel.
pub(super) struct Output {
    text: String,
    stream: Stream,
    exit_status: u32,
}

impl<S: Shell> ChannelContext<S> {
    /// Runs `line`; `None` when the connection is gone or the shell hung up (the connection is
    /// then being dropped and nothing more may be written).
    async fn exec(&self, line: &str) -> Option<Output> {
        let reply = tokio::select! {
            reply = self.shell.exec(self.session, line) => reply,
            () = self.kill.cancelled() => return None,
        };
        match reply {
            Reply::Output {
                text,
                stream,
                exit_status,
            } => Some(Output {
                text,
                stream,
                exit_status,
            }),
            Reply::Hangup => {
                self.kill.cancel();
                None
            }
        }
    }
}

/// Runs an exec request's command. A command that finishes without waiting (no latency fault,
/// no copy to wait for: nearly all of them) is answered here, in the same write as the
/// request's success reply: output, exit status, EOF and close leave in one TCP segment instead
/// of three. Any other goes on in a task of its own and answers through `channel`.
pub(super) fn exec<S: Shell>(
    channel: Channel<Msg>,
    context: ChannelContext<S>,
    command: &[u8],
    session: &mut Session,
) -> Result<(), russh::Error> {
    let line = String::from_utf8_lossy(command).into_owned();
    let mut run = Box::pin(async move { context.exec(&line).await });
    match run.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(output)) => reply_now(session, channel.id(), output),
        Poll::Ready(None) => Ok(()),
        Poll::Pending => {
            tokio::spawn(async move {
                let Some(output) = run.await else { return };
                // A transport error means the connection is going away; nobody is left to tell.
                if let Err(error) = reply_later(&channel, output).await {
                    tracing::debug!(%error, "ssh: exec channel ended with an error");
                }
            });
            Ok(())
        }
    }
}

fn reply_now(session: &mut Session, id: ChannelId, output: Output) -> Result<(), russh::Error> {
    match output.stream {
        _ if output.text.is_empty() => {}
        Stream::Stdout => session.data(id, output.text.into_bytes())?,
        Stream::Stderr => session.extended_data(id, 1, output.text.into_bytes())?,
    }
    session.exit_status_request(id, output.exit_status)?;
    session.eof(id)?;
    session.close(id)
}

async fn reply_later(channel: &Channel<Msg>, output: Output) -> Result<(), russh::Error> {
    match output.stream {
        _ if output.text.is_empty() => {}
        Stream::Stdout => channel.data_bytes(output.text.into_bytes()).await?,
        Stream::Stderr => {
            channel
                .extended_data_bytes(1, output.text.into_bytes())
                .await?
        }
    }
    finish(channel, output.exit_status).await
}

/// Serves a shell channel until the console ends.
pub(super) async fn serve_shell<S: Shell>(mut channel: Channel<Msg>, context: ChannelContext<S>) {
    if let Err(error) = shell(&mut channel, &context).await {
        tracing::debug!(%error, "ssh: shell channel ended with an error");
    }
}

async fn shell<S: Shell>(
    channel: &mut Channel<Msg>,
    context: &ChannelContext<S>,
) -> Result<(), russh::Error> {
    let prompt = || context.shell.prompt(context.session).into_bytes();
    channel.data_bytes(prompt()).await?;
    let mut editor = LineEditor::default();
    loop {
        let message = tokio::select! {
            message = channel.wait() => message,
            () = context.kill.cancelled() => return Ok(()),
        };
        let input = match message {
            Some(ChannelMsg::Data { data }) => data,
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
            Some(_) => continue,
        };
        for edit in editor.feed(&input) {
            match edit {
                Edit::Echo(bytes) => channel.data_bytes(bytes).await?,
                Edit::Interrupt => {
                    channel.data_bytes(b"\r\n".to_vec()).await?;
                    channel.data_bytes(prompt()).await?;
                }
                Edit::EndOfInput => return finish(channel, 0).await,
                Edit::Line(line) => {
                    channel.data_bytes(b"\r\n".to_vec()).await?;
                    let command = line.trim();
                    if command == "/quit" || command == "quit" {
                        return finish(channel, 0).await;
                    }
                    if !command.is_empty() {
                        let Some(output) = context.exec(&line).await else {
                            return Ok(());
                        };
                        if !output.text.is_empty() {
                            channel.data_bytes(output.text.into_bytes()).await?;
                        }
                    }
                    channel.data_bytes(prompt()).await?;
                }
            }
        }
    }
    finish(channel, 0).await
}

async fn finish(channel: &Channel<Msg>, exit_status: u32) -> Result<(), russh::Error> {
    channel.exit_status(exit_status).await?;
    channel.eof().await?;
    channel.close().await
}
