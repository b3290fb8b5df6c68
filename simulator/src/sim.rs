//! The simulator as one object: the CLI engine behind a lock, the fault plan, the live sessions and
//! the command log. The SSH server and the control API both drive it; tests drive it in-process.

use crate::engine::{Engine, EngineConfig, Event, LoggedCommand, Traffic};
use crate::faults::{BadPattern, CrashPoint, Fault, FaultPlan};
use crate::ssh::{Reply, SessionInfo, Shell};
use crate::store::{CopySemantics, Disk, FileEntry, Pool};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub data_dir: PathBuf,
    pub pool: Pool,
    pub engine: EngineConfig,
    pub seed: u64,
}

/// What one command line produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Output {
        text: String,
        exit_status: u32,
    },
    /// Drop the connection without a reply (crash faults).
    Hangup,
}

/// A parsed command in the log, with the session and line it came from.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    pub seq: u64,
    pub session: u64,
    pub line: String,
    pub command: LoggedCommand,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: u64,
    pub user: String,
    pub peer: String,
    pub age_ms: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolView {
    pub name: String,
    pub size: u64,
    pub free: u64,
}

/// The state read-out of the control API.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub disks: Vec<Disk>,
    pub files: Vec<FileView>,
    pub pool: PoolView,
    pub sessions: Vec<SessionView>,
    pub copy_from: CopySemantics,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
}

impl From<FileEntry> for FileView {
    fn from(f: FileEntry) -> Self {
        FileView {
            name: f.name,
            kind: f.kind.type_text(),
            size: f.size,
        }
    }
}

struct Session {
    user: String,
    peer: SocketAddr,
    opened: Instant,
    token: CancellationToken,
}

pub struct Sim {
    config: SimConfig,
    engine: Mutex<Engine>,
    faults: Mutex<FaultPlan>,
    sessions: Mutex<HashMap<u64, Session>>,
    next_session: AtomicU64,
    refuse_until: Mutex<Option<Instant>>,
    log: Mutex<Vec<LogRecord>>,
    traffic: Mutex<HashMap<String, Traffic>>,
    events: broadcast::Sender<Event>,
    restarts: broadcast::Sender<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not wedge the whole simulator.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    pub fn open(config: SimConfig) -> std::io::Result<Sim> {
        let engine = Engine::open(&config.data_dir, config.pool.clone(), config.engine.clone())?;
        Ok(Sim {
            faults: Mutex::new(FaultPlan::new(config.seed)),
            engine: Mutex::new(engine),
            config,
            sessions: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
            refuse_until: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            traffic: Mutex::new(HashMap::new()),
            events: broadcast::channel(1024).0,
            restarts: broadcast::channel(16).0,
        })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// False while a restart's downtime lasts.
    pub fn accepting(&self) -> bool {
        let mut until = lock(&self.refuse_until);
        match *until {
            Some(t) if Instant::now() < t => false,
            Some(_) => {
                *until = None;
                true
            }
            None => true,
        }
    }

    /// Registers a session; the token is cancelled when the simulator drops it.
    pub fn open_session(&self, user: &str, peer: SocketAddr) -> (u64, CancellationToken) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        lock(&self.sessions).insert(
            id,
            Session {
                user: user.to_string(),
                peer,
                opened: Instant::now(),
                token: token.clone(),
            },
        );
        (id, token)
    }

    pub fn close_session(&self, id: u64) {
        lock(&self.sessions).remove(&id);
    }

    /// Runs one command line as a session would, with the fault plan applied.
    pub async fn exec(&self, session: u64, line: &str) -> Reply {
        let delay = lock(&self.faults).latency_for(line);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (injected, crash, exit_on_error, pool_full) = {
            let mut f = lock(&self.faults);
            let injected = f.take_error(line);
            let crash = if injected.is_none() {
                f.take_crash(line)
            } else {
                None
            };
            (injected, crash, f.exit_status_on_error, f.pool_full)
        };
        if let Some(text) = injected {
            return Reply::Output {
                text: format!("{text}\r\n"),
                exit_status: u32::from(exit_on_error),
            };
        }
        if crash == Some(CrashPoint::BeforeCommit) {
            return Reply::Hangup;
        }
        let result = {
            let traffic = lock(&self.traffic).clone();
            let read = |slot: &str| traffic.get(slot).copied().unwrap_or_default();
            let mut engine = lock(&self.engine);
            engine.pool_full = pool_full;
            engine.run_line(line, &read)
        };
        {
            let mut log = lock(&self.log);
            for command in result.log {
                let seq = log.len() as u64;
                log.push(LogRecord {
                    seq,
                    session,
                    line: line.to_string(),
                    command,
                });
            }
        }
        for e in result.events {
            // Nobody listening (no NVMe/TCP target) is fine.
            let _ = self.events.send(e);
        }
        if crash == Some(CrashPoint::AfterCommit) {
            return Reply::Hangup;
        }
        Reply::Output {
            text: result.output,
            exit_status: u32::from(result.error && exit_on_error),
        }
    }

    /// Applies a fault now.
    pub fn inject(&self, fault: &Fault) -> Result<(), BadPattern> {
        match fault {
            Fault::Restart { downtime_ms } => self.restart(Duration::from_millis(*downtime_ms)),
            Fault::DropSessions => self.drop_sessions(),
            other => lock(&self.faults).add(other)?,
        }
        Ok(())
    }

    /// Drops every connection, refuses new ones for `downtime`, reloads committed state.
    pub fn restart(&self, downtime: Duration) {
        *lock(&self.refuse_until) = Some(Instant::now() + downtime);
        self.drop_sessions();
        let mut engine = lock(&self.engine);
        match Engine::open(
            &self.config.data_dir,
            self.config.pool.clone(),
            engine.config.clone(),
        ) {
            Ok(fresh) => *engine = fresh,
            Err(e) => tracing::error!("restart could not reload state: {e}"),
        }
        drop(engine);
        let _ = self.restarts.send(());
    }

    pub fn drop_sessions(&self) {
        for s in lock(&self.sessions).values() {
            s.token.cancel();
        }
    }

    pub fn set_copy_from(&self, semantics: CopySemantics) {
        lock(&self.engine).config.copy_from = semantics;
    }

    /// Changes to disks that the NVMe/TCP target must follow.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Fires on every restart.
    pub fn subscribe_restarts(&self) -> broadcast::Receiver<()> {
        self.restarts.subscribe()
    }

    /// Adds I/O to a slot's `monitor-traffic` counters.
    pub fn record_traffic(&self, slot: &str, read: u64, written: u64) {
        let mut t = lock(&self.traffic);
        let c = t.entry(slot.to_string()).or_default();
        if read > 0 {
            c.read_ops += 1;
            c.read_bytes += read;
        }
        if written > 0 {
            c.write_ops += 1;
            c.write_bytes += written;
        }
    }

    pub fn disks(&self) -> Vec<Disk> {
        lock(&self.engine).store.state.disks.clone()
    }

    /// The host path of a disk's backing file.
    pub fn backing_path(&self, disk: &Disk) -> PathBuf {
        lock(&self.engine).store.host_path(&disk.file_path)
    }

    pub fn state(&self) -> StateView {
        let engine = lock(&self.engine);
        let sessions = lock(&self.sessions)
            .iter()
            .map(|(id, s)| SessionView {
                id: *id,
                user: s.user.clone(),
                peer: s.peer.to_string(),
                age_ms: s.opened.elapsed().as_millis(),
            })
            .collect();
        StateView {
            disks: engine.store.state.disks.clone(),
            files: engine
                .store
                .files()
                .into_iter()
                .map(FileView::from)
                .collect(),
            pool: PoolView {
                name: engine.store.pool.name.clone(),
                size: engine.store.pool.size,
                free: engine.store.pool_free(engine.pool_full),
            },
            sessions,
            copy_from: engine.config.copy_from,
        }
    }

    /// Parsed commands with sequence number ≥ `since`.
    pub fn log_since(&self, since: u64) -> Vec<LogRecord> {
        lock(&self.log)
            .iter()
            .filter(|r| r.seq >= since)
            .cloned()
            .collect()
    }
}

impl Shell for Sim {
    fn accepting(&self) -> bool {
        Sim::accepting(self)
    }

    fn session_opened(&self, info: SessionInfo) -> (u64, CancellationToken) {
        self.open_session(&info.user, info.peer)
    }

    fn session_closed(&self, id: u64) {
        self.close_session(id);
    }

    fn exec(&self, session: u64, line: &str) -> impl Future<Output = Reply> + Send {
        Sim::exec(self, session, line)
    }

    fn prompt(&self, session: u64) -> String {
        let user = lock(&self.sessions)
            .get(&session)
            .map_or_else(|| "admin".to_string(), |s| s.user.clone());
        let identity = lock(&self.engine).store.state.identity.clone();
        format!("[{user}@{identity}] > ")
    }
}
