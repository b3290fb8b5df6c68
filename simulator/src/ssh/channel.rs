//! One session channel: an exec request runs one command line; a shell request runs an
//! interactive console until `/quit`, Ctrl-D or the client leaves.

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio_util::sync::CancellationToken;

use super::line_editor::{Edit, LineEditor};
use super::{Reply, Shell, Stream};

pub(super) struct ChannelContext<S> {
    pub(super) shell: Arc<S>,
    pub(super) session: u64,
    /// Cancelled when the connection goes; cancelling it drops the connection.
    pub(super) kill: CancellationToken,
}

impl<S: Shell> ChannelContext<S> {
    /// Runs `line`; `None` when the connection is gone or the shell hung up (the connection is
    /// then being dropped and nothing more may be written).
    async fn exec(&self, line: &str) -> Option<(String, Stream, u32)> {
        let reply = tokio::select! {
            reply = self.shell.exec(self.session, line) => reply,
            () = self.kill.cancelled() => return None,
        };
        match reply {
            Reply::Output {
                text,
                stream,
                exit_status,
            } => Some((text, stream, exit_status)),
            Reply::Hangup => {
                self.kill.cancel();
                None
            }
        }
    }
}

/// Serves a channel until its exec or shell has finished.
pub(super) async fn serve<S: Shell>(mut channel: Channel<Msg>, context: ChannelContext<S>) {
    loop {
        let message = tokio::select! {
            message = channel.wait() => message,
            () = context.kill.cancelled() => return,
        };
        let outcome = match message {
            Some(ChannelMsg::Exec { command, .. }) => exec(&channel, &context, &command).await,
            Some(ChannelMsg::RequestShell { .. }) => shell(&mut channel, &context).await,
            // pty, env and window changes only prepare the channel; their replies are sent by
            // the connection handler.
            Some(_) => continue,
            None => return,
        };
        // A transport error means the connection is going away; nobody is left to tell.
        if let Err(error) = outcome {
            tracing::debug!(%error, "ssh: channel ended with an error");
        }
        return;
    }
}

async fn exec<S: Shell>(
    channel: &Channel<Msg>,
    context: &ChannelContext<S>,
    command: &[u8],
) -> Result<(), russh::Error> {
    let line = String::from_utf8_lossy(command);
    let Some((text, stream, exit_status)) = context.exec(&line).await else {
        return Ok(());
    };
    match stream {
        _ if text.is_empty() => {}
        Stream::Stdout => channel.data_bytes(text.into_bytes()).await?,
        Stream::Stderr => channel.extended_data_bytes(1, text.into_bytes()).await?,
    }
    channel.exit_status(exit_status).await?;
    channel.eof().await?;
    channel.close().await
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
                Edit::EndOfInput => return finish(channel).await,
                Edit::Line(line) => {
                    channel.data_bytes(b"\r\n".to_vec()).await?;
                    let command = line.trim();
                    if command == "/quit" || command == "quit" {
                        return finish(channel).await;
                    }
                    if !command.is_empty() {
                        let Some((text, _, _)) = context.exec(&line).await else {
                            return Ok(());
                        };
                        if !text.is_empty() {
                            channel.data_bytes(text.into_bytes()).await?;
                        }
                    }
                    channel.data_bytes(prompt()).await?;
                }
            }
        }
    }
    finish(channel).await
}

async fn finish(channel: &Channel<Msg>) -> Result<(), russh::Error> {
    channel.exit_status(0).await?;
    channel.eof().await?;
    channel.close().await
}
