//! The simulator as one object: the CLI engine behind a lock, the fault plan, the live sessions and
//! the command log. The SSH server and the control API both drive it; tests drive it in-process.

use crate::copies::CopyView;
use crate::engine::quirks::{AllowList, ErrorStream};
use crate::engine::{Engine, EngineConfig, Event, LineResult, LoggedCommand, Traffic};
use crate::faults::{CrashPoint, Fault, FaultError, FaultPlan};
use crate::nvme::{ConnectionFilter, Export, Exports, Target};
use crate::ssh::{Reply, SessionInfo, Shell, Stream};
use crate::store::{CopySemantics, Disk, FileEntry, Pool, PoolFs, Subvolume};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
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
    /// `xfs` or `btrfs`.
    pub fs: PoolFs,
}

/// The state read-out of the control API.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub disks: Vec<Disk>,
    pub files: Vec<FileView>,
    pub pool: PoolView,
    /// Btrfs subvolumes (a Btrfs pool only).
    pub subvolumes: Vec<Subvolume>,
    pub sessions: Vec<SessionView>,
    /// Live NVMe/TCP queues (RouterOS has no CLI listing for them: README assumption 4).
    pub nvme_connections: Vec<NvmeConnectionView>,
    pub copy_from: CopySemantics,
    /// `/disk copy` commands running now (RouterOS lists them nowhere but in their own output).
    pub copies: Vec<CopyView>,
    /// Bytes per second `/disk copy` moves; `null` is unlimited.
    pub copy_rate: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NvmeConnectionView {
    pub host_nqn: String,
    pub subsys_nqn: String,
    pub peer: String,
    pub qid: u16,
    pub cntlid: u16,
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
    nvme: OnceLock<Target>,
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
            nvme: OnceLock::new(),
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
            return self.error_reply(format!("{text}\r\n"), exit_on_error);
        }
        if crash == Some(CrashPoint::BeforeCommit) {
            return Reply::Hangup;
        }
        let mut result = self.with_engine(pool_full, |engine, read| engine.run_line(line, read));
        let (mut text, mut error) = (String::new(), false);
        // A line that starts a `/disk copy` waits for it outside the engine, then goes on.
        loop {
            let pending = result.pending.take();
            // Rendered here, with the engine free for other sessions.
            let output = result.output();
            if text.is_empty() {
                text = output;
            } else {
                text.push_str(&output);
            }
            error |= result.error;
            self.absorb(session, line, result);
            let Some(pending) = pending else { break };
            let copies = lock(&self.engine).copies.clone();
            match copies.run(pending.copy.clone()).await {
                Ok(status) => text.push_str(&status),
                Err(failure) => {
                    text.push_str(&format!("{failure}\r\n"));
                    error = true;
                    break;
                }
            }
            result = self.with_engine(pool_full, |engine, read| engine.resume(pending, read));
        }
        if crash == Some(CrashPoint::AfterCommit) {
            return Reply::Hangup;
        }
        match error {
            true => self.error_reply(text, exit_on_error),
            false => Reply::Output {
                text,
                stream: Stream::Stdout,
                exit_status: 0,
            },
        }
    }

    /// An error's text, on the stream the `error-stream` switch picks, with exit status 1 when
    /// the `exit-status-on-error` fault is on.
    fn error_reply(&self, text: String, exit_on_error: bool) -> Reply {
        let stream = match lock(&self.engine).config.quirks.error_stream {
            ErrorStream::Stdout => Stream::Stdout,
            ErrorStream::Stderr => Stream::Stderr,
        };
        Reply::Output {
            text,
            stream,
            exit_status: u32::from(exit_on_error),
        }
    }

    /// Runs `f` on the locked engine with the current traffic counters.
    fn with_engine(
        &self,
        pool_full: bool,
        f: impl FnOnce(&mut Engine, &dyn Fn(&str) -> Traffic) -> LineResult,
    ) -> LineResult {
        let traffic = lock(&self.traffic).clone();
        let read = |slot: &str| traffic.get(slot).copied().unwrap_or_default();
        let mut engine = lock(&self.engine);
        engine.pool_full = pool_full;
        f(&mut engine, &read)
    }

    /// Logs a result's commands and passes its events on.
    fn absorb(&self, session: u64, line: &str, result: LineResult) {
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
            if let Some(target) = self.nvme.get() {
                match &e {
                    Event::Resized { nqn } => target.notify_resized(nqn),
                    Event::Unexported { nqn } => target.disconnect_nqn(nqn),
                }
            }
            // Nobody subscribed is fine.
            let _ = self.events.send(e);
        }
    }

    /// Applies a fault now.
    pub fn inject(&self, fault: &Fault) -> Result<(), FaultError> {
        let target = || self.nvme.get().ok_or(FaultError::NoTarget);
        match fault {
            Fault::Restart { downtime_ms } => self.restart(Duration::from_millis(*downtime_ms)),
            Fault::DropSessions => self.drop_sessions(),
            Fault::NvmeDrop { nqn, host } => {
                let target = target()?;
                let filter = match (nqn, host) {
                    (None, None) => ConnectionFilter::All,
                    (Some(n), None) => ConnectionFilter::Nqn(n.clone()),
                    (None, Some(h)) => ConnectionFilter::Host(h.clone()),
                    (Some(_), Some(_)) => return Err(FaultError::NqnAndHost),
                };
                target.drop_connections(filter);
            }
            Fault::NvmeRefuse { duration_ms } => {
                target()?.refuse_for(Duration::from_millis(*duration_ms));
            }
            Fault::NvmeLatency { latency_ms } => {
                target()?.set_io_latency(Duration::from_millis(*latency_ms));
            }
            Fault::NvmeStall { enabled } => target()?.stall_io(*enabled),
            other => lock(&self.faults).add(other)?,
        }
        Ok(())
    }

    /// Hands the simulator its NVMe/TCP target, so disk changes and faults reach it.
    pub fn attach_target(&self, target: Target) {
        if self.nvme.set(target).is_err() {
            tracing::warn!("an NVMe/TCP target is already attached; keeping the first");
        }
    }

    pub fn target(&self) -> Option<&Target> {
        self.nvme.get()
    }

    /// Drops every connection, refuses new ones for `downtime`, reloads committed state.
    pub fn restart(&self, downtime: Duration) {
        *lock(&self.refuse_until) = Some(Instant::now() + downtime);
        self.drop_sessions();
        let mut engine = lock(&self.engine);
        // A reboot ends every command, copies included; what they wrote stays.
        engine.copies.stop_all();
        match Engine::open(
            &self.config.data_dir,
            self.config.pool.clone(),
            engine.config.clone(),
        ) {
            Ok(mut fresh) => {
                fresh.copies = engine.copies.clone();
                *engine = fresh;
            }
            Err(e) => tracing::error!("restart could not reload state: {e}"),
        }
        drop(engine);
        if let Some(target) = self.nvme.get() {
            target.drop_connections(ConnectionFilter::All);
            target.refuse_for(downtime);
        }
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

    /// Sets one open RouterOS question's answer (`engine::quirks`); the error says what is
    /// accepted.
    pub fn set_quirk(&self, name: &str, position: &str) -> Result<(), String> {
        lock(&self.engine).config.quirks.set(name, position)
    }

    /// Sets the bytes per second `/disk copy` moves (`None`: unlimited); running copies follow.
    pub fn set_copy_rate(&self, rate: Option<u64>) {
        let mut engine = lock(&self.engine);
        engine.config.copy_rate = rate;
        engine.copies.set_rate(rate);
    }

    /// Fires whenever a `/disk copy` starts, makes progress or ends.
    pub fn subscribe_copies(&self) -> tokio::sync::watch::Receiver<u64> {
        lock(&self.engine).copies.subscribe()
    }

    /// Disk changes the NVMe/TCP target follows (resizes, exports ended), for observers.
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
        // Looked up before inserting: this runs for every NVMe/TCP I/O, the slot is rarely new.
        let c = match t.get_mut(slot) {
            Some(c) => c,
            None => t.entry(slot.to_string()).or_default(),
        };
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
        lock(&self.engine).store.state.disk_copies()
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
            disks: engine.store.state.disk_copies(),
            files: engine
                .store
                .files()
                .into_iter()
                .map(FileView::from)
                .collect(),
            pool: PoolView {
                name: engine.store.pool.name.clone(),
                size: engine.store.pool.size,
                free: engine.pool_free(),
                fs: engine.store.fs,
            },
            subvolumes: engine.store.subvolumes().to_vec(),
            sessions,
            nvme_connections: self
                .nvme
                .get()
                .map(|t| {
                    t.connections()
                        .into_iter()
                        .map(|c| NvmeConnectionView {
                            host_nqn: c.host_nqn,
                            subsys_nqn: c.subsys_nqn,
                            peer: c.peer.to_string(),
                            qid: c.qid,
                            cntlid: c.cntlid,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            copy_from: engine.config.copy_from,
            copies: engine.copies.views(),
            copy_rate: engine.copies.rate(),
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

/// The hosts an allow-list admits, read as the `allow-list` switch says (its format is
/// undocumented: REFERENCE.md §13.3): several separated by commas, or the whole value as one
/// host name. None (empty) admits every host.
fn allowed_hosts(value: &str, form: AllowList) -> Vec<String> {
    let value = value.trim();
    match form {
        AllowList::List => value
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect(),
        AllowList::Single if value.is_empty() => Vec::new(),
        AllowList::Single => vec![value.to_string()],
    }
}

fn uuid_bytes(hex: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = hex
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    out
}

impl Sim {
    fn export_of(&self, store: &crate::store::Store, d: &Disk, form: AllowList) -> Export {
        Export {
            nqn: d.nvme_tcp_server_nqn.clone(),
            slot: d.slot.clone(),
            file: store.host_path(&d.file_path),
            size: d.file_size,
            uuid: uuid_bytes(&d.uuid),
            serial: d.uuid.chars().take(20).collect(),
            allowed_hosts: allowed_hosts(&d.nvme_tcp_server_allow_host_name, form),
        }
    }
}

impl Sim {
    /// The exported disks on `port` that `keep` accepts, in list order.
    fn exports(&self, port: u16, keep: impl Fn(&Disk) -> bool) -> Vec<Export> {
        let engine = lock(&self.engine);
        let store = &engine.store;
        let form = engine.config.quirks.allow_list;
        store
            .state
            .disks
            .iter()
            .filter(|d| d.nvme_tcp_export && d.nvme_tcp_server_port == port && keep(d))
            .map(|d| self.export_of(store, d, form))
            .collect()
    }
}

impl Exports for Sim {
    fn lookup(&self, nqn: &str, port: u16) -> Option<Export> {
        // The first disk in list order serves a shared NQN (FIDELITY.md).
        self.exports(port, |d| d.nvme_tcp_server_nqn == nqn)
            .into_iter()
            .next()
    }

    fn list(&self, port: u16) -> Vec<Export> {
        self.exports(port, |_| true)
    }

    fn record_io(&self, slot: &str, read_bytes: u64, written_bytes: u64) {
        self.record_traffic(slot, read_bytes, written_bytes);
    }
}
