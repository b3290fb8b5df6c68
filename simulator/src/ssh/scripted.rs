//! A stand-in [`Shell`] for transport tests (rds-sim's server tests, rds-csi's client tests):
//! it echoes lines, fails, hangs or hangs up on cue, and records what the transport did so a
//! test can wait for an event instead of sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Reply, SessionInfo, Shell, Stream};

/// What the transport has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellStats {
    pub sessions_opened: u64,
    pub sessions_closed: u64,
    /// The most sessions open at the same time.
    pub max_open_sessions: u64,
    /// Users of opened sessions, in order.
    pub users: Vec<String>,
    /// Lines passed to `exec`, in order.
    pub lines: Vec<String>,
    /// Exec calls started and not yet answered (or dropped).
    pub running: u64,
    /// The most exec calls running at the same time within one session.
    pub max_running_in_one_session: u64,
}

#[derive(Default)]
struct Sessions {
    next_id: u64,
    tokens: HashMap<u64, CancellationToken>,
    users: HashMap<u64, String>,
    running: HashMap<u64, u64>,
}

/// Answers each line by a script:
/// - `hangup`: [`Reply::Hangup`];
/// - `hang`: never answers;
/// - `quiet…`: no output, exit status 0;
/// - `bulk N`: N bytes of CRLF-ended lines (for flow control), exit status 0;
/// - `fail…`: the line and CRLF, exit status 1;
/// - anything else: the line and CRLF, exit status 0.
pub struct ScriptedShell {
    accepting: AtomicBool,
    sessions: Mutex<Sessions>,
    stats: watch::Sender<ShellStats>,
}

impl Default for ScriptedShell {
    fn default() -> Self {
        Self {
            accepting: AtomicBool::new(true),
            sessions: Mutex::default(),
            stats: watch::Sender::new(ShellStats::default()),
        }
    }
}

impl ScriptedShell {
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::SeqCst);
    }

    /// Drops every open session, as a restart would; returns how many there were.
    pub fn drop_sessions(&self) -> usize {
        let sessions = self.lock();
        sessions.tokens.values().for_each(CancellationToken::cancel);
        sessions.tokens.len()
    }

    pub fn stats(&self) -> ShellStats {
        self.stats.borrow().clone()
    }

    /// Waits until the stats satisfy `condition`, and returns them.
    pub async fn wait_for(&self, condition: impl FnMut(&ShellStats) -> bool) -> ShellStats {
        let mut changes = self.stats.subscribe();
        let stats = changes
            .wait_for(condition)
            .await
            .expect("the shell owns the sender");
        stats.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn exec_started(&self, session: u64, line: &str) -> RunningExec<'_> {
        let mut sessions = self.lock();
        let running = sessions.running.entry(session).or_default();
        *running += 1;
        let in_session = *running;
        self.stats.send_modify(|stats| {
            stats.lines.push(line.to_owned());
            stats.running += 1;
            stats.max_running_in_one_session = stats.max_running_in_one_session.max(in_session);
        });
        RunningExec {
            shell: self,
            session,
        }
    }
}

/// Counts an exec call as running until it is answered or dropped.
struct RunningExec<'a> {
    shell: &'a ScriptedShell,
    session: u64,
}

impl Drop for RunningExec<'_> {
    fn drop(&mut self) {
        let mut sessions = self.shell.lock();
        if let Some(running) = sessions.running.get_mut(&self.session) {
            *running -= 1;
        }
        self.shell.stats.send_modify(|stats| stats.running -= 1);
    }
}

impl Shell for ScriptedShell {
    fn accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    fn session_opened(&self, info: SessionInfo) -> (u64, CancellationToken) {
        let token = CancellationToken::new();
        let mut sessions = self.lock();
        sessions.next_id += 1;
        let id = sessions.next_id;
        sessions.tokens.insert(id, token.clone());
        sessions.users.insert(id, info.user.clone());
        let open = sessions.tokens.len() as u64;
        self.stats.send_modify(|stats| {
            stats.sessions_opened += 1;
            stats.max_open_sessions = stats.max_open_sessions.max(open);
            stats.users.push(info.user);
        });
        (id, token)
    }

    fn session_closed(&self, id: u64) {
        let mut sessions = self.lock();
        sessions.tokens.remove(&id);
        sessions.users.remove(&id);
        sessions.running.remove(&id);
        self.stats.send_modify(|stats| stats.sessions_closed += 1);
    }

    fn exec(&self, session: u64, line: &str) -> impl Future<Output = Reply> + Send {
        let running = self.exec_started(session, line);
        let line = line.to_owned();
        async move {
            let _running = running;
            match scripted_reply(&line) {
                Some(reply) => reply,
                None => std::future::pending().await,
            }
        }
    }

    fn prompt(&self, session: u64) -> String {
        let sessions = self.lock();
        let user = sessions.users.get(&session).map_or("?", String::as_str);
        format!("[{user}@MikroTik] > ")
    }
}

/// The script of [`ScriptedShell`]; `None`: never answer.
fn scripted_reply(line: &str) -> Option<Reply> {
    let output = |text, exit_status| {
        Some(Reply::Output {
            text,
            stream: Stream::Stdout,
            exit_status,
        })
    };
    if line == "hangup" {
        Some(Reply::Hangup)
    } else if line == "hang" {
        None
    } else if let Some(size) = line.strip_prefix("bulk ") {
        output(bulk_text(size.parse().unwrap_or(0)), 0)
    } else if line.starts_with("quiet") {
        output(String::new(), 0)
    } else if line.starts_with("fail") {
        output(format!("{line}\r\n"), 1)
    } else {
        output(format!("{line}\r\n"), 0)
    }
}

/// `size` bytes of numbered 64-byte lines, the last one cut short.
pub fn bulk_text(size: usize) -> String {
    let mut text = String::with_capacity(size + 64);
    let mut number = 0u64;
    while text.len() < size {
        text.push_str(&format!("{number:>16} {:.<45}\r\n", ""));
        number += 1;
    }
    text.truncate(size);
    text
}
