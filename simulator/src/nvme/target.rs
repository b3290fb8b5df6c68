//! The tokio edge of the NVMe/TCP target: accepts connections, moves bytes between sockets and
//! the pure [`Queue`], runs file I/O, enforces keep-alive timeouts, and carries out the fault and
//! lifecycle operations the simulator's control API calls.
//!
//! One task serves a connection: it reads, runs the queue, and writes the replies itself. Reads
//! and writes of up to [`INLINE_IO_MAX`] bytes run in that task too (the backing file is a page-
//! cached file on the host, so they take microseconds, less than a hand-off to a blocking thread);
//! everything else, and all I/O while a latency or stall fault is on, goes to blocking threads.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::WriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Exports;
use super::backing;
use super::io::IoOp;
use super::pdu::{Decoded, Frame, RecvBuffer};
use super::queue::{Action, Env, IoRequest, IoResult, Queue, Session};
use super::registry::{CtrlKey, Registry};

/// Bytes read from a socket at a time, at least.
const READ_CHUNK: usize = 256 * 1024;
/// Outgoing bytes gathered before a socket write.
const WRITE_BUFFER: usize = 256 * 1024;
/// The largest read or write run in the connection's own task.
const INLINE_IO_MAX: usize = 64 << 10;

/// A connected queue, as [`Target::connections`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: u64,
    pub host_nqn: String,
    pub subsys_nqn: String,
    pub peer: SocketAddr,
    pub qid: u16,
    pub cntlid: u16,
}

/// Which connections a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionFilter {
    All,
    /// Connections to this subsystem NQN.
    Nqn(String),
    /// Connections from this host NQN.
    Host(String),
}

struct Connection {
    peer: SocketAddr,
    session: Option<Session>,
    cancel: CancellationToken,
    /// Wakes the connection to send completions queued by another task (asynchronous events).
    wake: Arc<Notify>,
}

impl Connection {
    fn matches(&self, filter: &ConnectionFilter) -> bool {
        match (filter, &self.session) {
            (ConnectionFilter::All, _) => true,
            (ConnectionFilter::Nqn(nqn), Some(s)) => s.key.subsys_nqn == *nqn,
            (ConnectionFilter::Host(host), Some(s)) => s.host_nqn == *host,
            (_, None) => false,
        }
    }
}

struct Shared {
    exports: Arc<dyn Exports>,
    registry: Mutex<Registry>,
    port: u16,
    listen_ip: IpAddr,
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
    refuse_until: Mutex<Option<Instant>>,
    io_latency_ns: AtomicU64,
    stalled: watch::Sender<bool>,
    shutdown: CancellationToken,
}

impl Shared {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections.lock().expect("connections lock poisoned")
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("registry lock poisoned")
    }

    /// Closes every connection of a controller and forgets the controller.
    fn tear_down(&self, key: &CtrlKey) {
        self.registry().remove(key);
        for c in self.connections().values() {
            if c.session.as_ref().is_some_and(|s| s.key == *key) {
                c.cancel.cancel();
            }
        }
    }

    fn wake_admin_queue(&self, key: &CtrlKey) {
        for c in self.connections().values() {
            if c.session
                .as_ref()
                .is_some_and(|s| s.key == *key && s.qid == 0)
            {
                c.wake.notify_one();
            }
        }
    }
}

/// A running NVMe/TCP target. Dropping it closes the listener and every connection.
pub struct Target {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl Target {
    /// Listens on `listen` (port 0 picks a free port) and serves the exports on that port.
    pub async fn start(listen: SocketAddr, exports: Arc<dyn Exports>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            exports,
            registry: Mutex::new(Registry::default()),
            port: local_addr.port(),
            listen_ip: listen.ip(),
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            refuse_until: Mutex::new(None),
            io_latency_ns: AtomicU64::new(0),
            stalled: watch::Sender::new(false),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self { shared, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The connections that completed Fabrics Connect.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<_> = self
            .shared
            .connections()
            .iter()
            .filter_map(|(id, c)| {
                let s = c.session.as_ref()?;
                Some(ConnectionInfo {
                    id: *id,
                    host_nqn: s.host_nqn.clone(),
                    subsys_nqn: s.key.subsys_nqn.clone(),
                    peer: c.peer,
                    qid: s.qid,
                    cntlid: s.key.cntlid,
                })
            })
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    /// Closes the matching connections now; hosts see the connection drop and reconnect.
    pub fn drop_connections(&self, filter: ConnectionFilter) {
        for c in self.shared.connections().values() {
            if c.matches(&filter) {
                c.cancel.cancel();
            }
        }
    }

    /// Closes every new connection at once for `duration`, as a target that is down would.
    pub fn refuse_for(&self, duration: Duration) {
        *self
            .shared
            .refuse_until
            .lock()
            .expect("refuse lock poisoned") = Some(Instant::now() + duration);
    }

    /// Delays every I/O command (read, write, flush...) by `latency` before it runs.
    pub fn set_io_latency(&self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.shared.io_latency_ns.store(ns, Ordering::Relaxed);
    }

    /// While stalled, I/O commands do not complete; admin commands (keep alive) still do.
    pub fn stall_io(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// The export's size changed: hosts get a namespace-attribute-changed event.
    pub fn notify_resized(&self, nqn: &str) {
        let Some(export) = self.shared.exports.lookup(nqn, self.shared.port) else {
            return;
        };
        let keys = self.shared.registry().namespace_resized(nqn, export.size);
        for key in keys {
            self.shared.wake_admin_queue(&key);
        }
    }

    /// The export was turned off or its disk removed: its controllers go away and their
    /// connections close.
    pub fn disconnect_nqn(&self, nqn: &str) {
        let keys = self
            .shared
            .registry()
            .keys_where(|k, _| k.subsys_nqn == nqn);
        for key in keys {
            self.shared.tear_down(&key);
        }
        self.drop_connections(ConnectionFilter::Nqn(nqn.to_owned()));
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "NVMe/TCP accept failed");
                    continue;
                }
            },
        };
        let refusing = shared
            .refuse_until
            .lock()
            .expect("refuse lock poisoned")
            .is_some_and(|until| Instant::now() < until);
        if refusing {
            drop(stream);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = shared.shutdown.child_token();
        let wake = Arc::new(Notify::new());
        shared.connections().insert(
            id,
            Connection {
                peer,
                session: None,
                cancel: cancel.clone(),
                wake: Arc::clone(&wake),
            },
        );
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let session = serve(&shared, stream, id, cancel.clone(), wake).await;
            // Stops this connection's keep-alive timer, if it ran one.
            cancel.cancel();
            shared.connections().remove(&id);
            if let Some(s) = session {
                shared.registry().release_queue(&s.key, s.qid);
            }
        });
    }
}

/// A file operation that ended: its command, its result, and the bytes it was to write.
struct Finished {
    cid: u16,
    result: IoResult,
    written: u64,
}

/// The per-connection state the edge keeps beside the pure queue.
struct Edge<'a> {
    shared: &'a Arc<Shared>,
    id: u64,
    /// Frames to send, in order.
    out: Vec<Frame>,
    /// The queue asked to close the connection once `out` is sent.
    closing: bool,
    /// File operations on blocking threads.
    io: JoinSet<Finished>,
    /// File operations done in this task, to report to the queue in order.
    done: VecDeque<Finished>,
    file: Option<Arc<File>>,
    session: Option<Session>,
    cancel: CancellationToken,
}

impl Edge<'_> {
    fn dispatch(&mut self, actions: &mut Vec<Action>) {
        for action in actions.drain(..) {
            match action {
                Action::Send(frame) => self.out.push(frame),
                Action::Close => self.closing = true,
                Action::Io(req) => self.start_io(req),
                Action::Attached(session) => self.attached(session),
            }
        }
    }

    fn attached(&mut self, session: Session) {
        if let Some(export) = &session.export {
            let path = &export.file;
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
            {
                Ok(f) => self.file = Some(Arc::new(f)),
                Err(e) => tracing::warn!(
                    error = %e,
                    path = %path.display(),
                    "cannot open the namespace's backing file; its I/O will fail"
                ),
            }
        }
        if session.qid == 0 && session.kato_secs > 0 {
            let cancel = self.cancel.clone();
            tokio::spawn(keep_alive(
                Arc::clone(self.shared),
                session.key.clone(),
                cancel,
            ));
        }
        if let Some(c) = self.shared.connections().get_mut(&self.id) {
            c.session = Some(session.clone());
        }
        self.session = Some(session);
    }

    fn start_io(&mut self, req: IoRequest) {
        let IoRequest { cid, op } = req;
        let written = match &op {
            IoOp::Write { data, .. } => data.len() as u64,
            _ => 0,
        };
        let finished = move |result| Finished {
            cid,
            result,
            written,
        };
        let Some(file) = self.file.clone() else {
            self.io.spawn(async move { finished(IoResult::Failed) });
            return;
        };
        let latency = Duration::from_nanos(self.shared.io_latency_ns.load(Ordering::Relaxed));
        let mut stalled = self.shared.stalled.subscribe();
        if latency.is_zero() && !*stalled.borrow() {
            let inline = match &op {
                IoOp::Read { len, .. } => *len <= INLINE_IO_MAX,
                IoOp::Write { data, .. } => data.len() <= INLINE_IO_MAX,
                _ => false,
            };
            if inline {
                self.done.push_back(finished(backing::perform(&file, op)));
            } else {
                self.io
                    .spawn_blocking(move || finished(backing::perform(&file, op)));
            }
            return;
        }
        self.io.spawn(async move {
            let _ = stalled.wait_for(|s| !*s).await;
            tokio::time::sleep(latency).await;
            let done = tokio::task::spawn_blocking(move || backing::perform(&file, op)).await;
            finished(done.unwrap_or(IoResult::Failed))
        });
    }

    /// Dispatches `actions`, then hands the queue every file operation done in place, and the
    /// actions that follows from it, until none is left.
    fn settle(&mut self, queue: &mut Queue, env: &Env<'_>, actions: &mut Vec<Action>) {
        loop {
            self.dispatch(actions);
            let Some(done) = self.done.pop_front() else {
                return;
            };
            self.complete(queue, done, env, actions);
        }
    }

    fn complete(
        &mut self,
        queue: &mut Queue,
        done: Finished,
        env: &Env<'_>,
        actions: &mut Vec<Action>,
    ) {
        self.count(&done);
        queue.io_done(done.cid, done.result, env, actions);
    }

    /// Counts a successful read or write in the disk's traffic counters.
    fn count(&self, finished: &Finished) {
        let Some(export) = self.session.as_ref().and_then(|s| s.export.as_ref()) else {
            return;
        };
        let (read, written) = match &finished.result {
            IoResult::Read(data) => (data.len() as u64, 0),
            IoResult::Done => (0, finished.written),
            IoResult::Failed => return,
        };
        if read > 0 || written > 0 {
            self.shared.exports.record_io(&export.slot, read, written);
        }
    }
}

/// Serves one connection until it closes; returns the queue it carried, if any.
async fn serve(
    shared: &Arc<Shared>,
    mut stream: TcpStream,
    id: u64,
    cancel: CancellationToken,
    wake: Arc<Notify>,
) -> Option<Session> {
    let _ = stream.set_nodelay(true);
    let traddr = match (shared.listen_ip.is_unspecified(), stream.local_addr()) {
        (true, Ok(local)) => local.ip().to_string(),
        _ => shared.listen_ip.to_string(),
    };
    let (mut rd, wr) = stream.split();
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, wr);
    let env = Env {
        registry: &shared.registry,
        exports: shared.exports.as_ref(),
        port: shared.port,
        traddr: &traddr,
    };
    let mut edge = Edge {
        shared,
        id,
        out: Vec::new(),
        closing: false,
        io: JoinSet::new(),
        done: VecDeque::new(),
        file: None,
        session: None,
        cancel: cancel.clone(),
    };
    let mut queue = Queue::new();
    let mut rb = RecvBuffer::default();
    let mut need = 8;
    let mut actions = Vec::new();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return edge.session,
            read = rd.read(rb.spare(need, READ_CHUNK)) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => rb.commit(n),
                }
                loop {
                    let consumed = match queue.codec().decode(rb.filled()) {
                        Ok(Decoded::Pdu(pdu, len)) => {
                            queue.handle(pdu, &rb.filled()[..len], &env, &mut actions);
                            len
                        }
                        Ok(Decoded::NeedMore(n)) => {
                            need = n;
                            break;
                        }
                        Err(e) => {
                            tracing::info!(error = %e, connection = id, "closing NVMe/TCP connection");
                            let head = &rb.filled()[..rb.filled().len().min(128)];
                            queue.decode_failed(&e, head, &mut actions);
                            break;
                        }
                    };
                    rb.consume(consumed);
                    edge.settle(&mut queue, &env, &mut actions);
                    if queue.is_closed() {
                        break;
                    }
                }
                edge.settle(&mut queue, &env, &mut actions);
            }
            Some(done) = edge.io.join_next(), if !edge.io.is_empty() => {
                let done = done.unwrap_or(Finished { cid: 0, result: IoResult::Failed, written: 0 });
                edge.complete(&mut queue, done, &env, &mut actions);
                edge.settle(&mut queue, &env, &mut actions);
            }
            _ = wake.notified() => {
                queue.poll_events(&env, &mut actions);
                edge.settle(&mut queue, &env, &mut actions);
            }
        }
        let frames = std::mem::take(&mut edge.out);
        let sent = tokio::select! {
            _ = cancel.cancelled() => return edge.session,
            sent = send(&mut w, frames) => sent,
        };
        if sent.is_err() {
            break;
        }
        if edge.closing || queue.is_closed() {
            let _ = w.shutdown().await;
            break;
        }
    }
    edge.session.take()
}

/// Writes `frames` and flushes them.
async fn send(w: &mut BufWriter<WriteHalf<'_>>, frames: Vec<Frame>) -> std::io::Result<()> {
    for f in &frames {
        write_frame(w, f).await?;
    }
    w.flush().await
}

async fn write_frame(w: &mut BufWriter<WriteHalf<'_>>, f: &Frame) -> std::io::Result<()> {
    w.write_all(&f.header).await?;
    w.write_all(&f.data).await?;
    if let Some(d) = f.data_digest {
        w.write_all(&d).await?;
    }
    Ok(())
}

/// Enforces a controller's keep-alive timeout while its admin queue is connected: a period
/// without any command from the host tears the controller down, closing all its queues.
async fn keep_alive(shared: Arc<Shared>, key: CtrlKey, admin_queue: CancellationToken) {
    loop {
        let kato = match shared.registry().get(&key) {
            Some(c) if c.kato_secs() > 0 => c.kato_secs(),
            _ => return,
        };
        tokio::select! {
            _ = admin_queue.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(u64::from(kato))) => {}
        }
        let alive = match shared.registry().get_mut(&key) {
            Some(c) => c.keep_alive_period_elapsed(),
            None => return,
        };
        if !alive {
            tracing::info!(subsys = %key.subsys_nqn, cntlid = key.cntlid, kato, "keep-alive timeout expired");
            shared.tear_down(&key);
            return;
        }
    }
}
