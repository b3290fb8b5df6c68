//! Running `/disk copy` block copies: the registry the engine checks for busy disks and the control
//! API lists, and the copier that moves the bytes at the configured rate on a blocking thread.
//!
//! A copy belongs to the command that started it (FIDELITY.md): it runs while that command's
//! session waits for it, and stops where it is when the command is dropped (its session closed,
//! dropped by a fault, or the simulator restarted). What it wrote stays written.

use crate::routeros::format;
use crate::store::copy_range;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One side of a copy: a disk (by slot) or a file, and its backing file on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The slot of a disk, or the `/file` name of a file.
    pub name: String,
    pub path: PathBuf,
}

/// What `/disk copy` was asked to do, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub src_offset: u64,
    pub dst_offset: u64,
    pub size: u64,
}

/// A copy in progress.
#[derive(Debug)]
pub struct Running {
    pub request: CopyRequest,
    copied: AtomicU64,
    stop: AtomicBool,
}

/// A running copy as `GET /state` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyView {
    pub src: String,
    pub dst: String,
    pub size: u64,
    pub copied: u64,
    /// The command's `status` text: `<bytes copied> / <total bytes> (<percent>%)`.
    pub status: String,
}

/// The `status` of `/disk copy` (MAN-DCOPY: "`<bytes copied> / <total bytes> (<percent>%)`"):
/// plain byte counts, the percentage rounded down so 100% means done.
pub fn status_text(copied: u64, total: u64) -> String {
    let pct = if total == 0 {
        100
    } else {
        u128::from(copied) * 100 / u128::from(total)
    };
    format!("{copied} / {total} ({pct}%)")
}

/// How often a running copy prints its status (RouterOS refreshes monitor output once a second).
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// The largest piece copied between two looks at the rate and the stop flag.
const PIECE: u64 = 1 << 20;

/// Every copy running now, and the rate they are held to.
#[derive(Debug)]
pub struct Copies {
    /// Bytes per second; 0 = as fast as the host goes.
    rate: AtomicU64,
    /// Weak, so a copy that is registered but never run (its line dropped) is not busy forever.
    running: Mutex<Vec<Weak<Running>>>,
    /// Bumped on every start, progress step and end, for observers.
    changes: watch::Sender<u64>,
}

/// Stops a copy when the command waiting for it goes away.
struct StopOnDrop(Arc<Running>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::SeqCst);
    }
}

impl Copies {
    pub fn new(rate: Option<u64>) -> Copies {
        Copies {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            running: Mutex::new(Vec::new()),
            changes: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The copies still running.
    fn live(&self) -> Vec<Arc<Running>> {
        let mut running = self.lock();
        running.retain(|w| w.strong_count() > 0);
        running.iter().filter_map(Weak::upgrade).collect()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The copy rate in bytes per second; `None` is unlimited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::SeqCst)).filter(|r| *r > 0)
    }

    /// Sets the rate; running copies follow from their next piece on.
    pub fn set_rate(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Ordering::SeqCst);
    }

    /// Whether a running copy reads or writes the backing file at `path` (a disk and its file
    /// are the same thing).
    pub fn busy(&self, path: &std::path::Path) -> bool {
        self.live()
            .iter()
            .any(|r| r.request.src.path == path || r.request.dst.path == path)
    }

    /// Registers a copy; [`Copies::run`] then does it.
    pub fn start(&self, request: CopyRequest) -> Arc<Running> {
        let running = Arc::new(Running {
            request,
            copied: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        self.lock().push(Arc::downgrade(&running));
        self.changed();
        running
    }

    pub fn views(&self) -> Vec<CopyView> {
        self.live()
            .iter()
            .map(|r| {
                let copied = r.copied.load(Ordering::SeqCst);
                CopyView {
                    src: r.request.src.name.clone(),
                    dst: r.request.dst.name.clone(),
                    size: r.request.size,
                    copied,
                    status: status_text(copied, r.request.size),
                }
            })
            .collect()
    }

    /// Stops every running copy (a restart).
    pub fn stop_all(&self) {
        for r in self.live() {
            r.stop.store(true, Ordering::SeqCst);
        }
    }

    /// Fires on every start, progress step and end of a copy.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Does a registered copy and returns what the command prints: a `status:` line each second
    /// and one at the end, or the error text. Dropping the future stops the copy.
    pub async fn run(self: &Arc<Self>, running: Arc<Running>) -> Result<String, String> {
        let _stop = StopOnDrop(running.clone());
        let copies = self.clone();
        let job = running.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = copies.copy(&job);
            copies
                .lock()
                .retain(|r| !std::ptr::eq(r.as_ptr(), Arc::as_ptr(&job)));
            copies.changed();
            outcome
        })
        .await
        .map_err(|e| format!("failure: the copy stopped: {e}"))?
    }

    /// The copy itself, on a blocking thread: paced to the rate, stopping when asked.
    fn copy(&self, job: &Running) -> Result<String, String> {
        let req = &job.request;
        let io = |e: std::io::Error| format!("failure: {e}");
        let src = File::open(&req.src.path).map_err(io)?;
        let dst = OpenOptions::new()
            .write(true)
            .open(&req.dst.path)
            .map_err(io)?;
        let mut lines = String::new();
        let mut last_line = Instant::now();
        let mut due = Instant::now();
        let mut before = 0u64;
        let piece = match self.rate() {
            // Small pieces at low rates, so progress and stop requests are seen often.
            Some(rate) => (rate / 8).clamp(4096, PIECE),
            None => PIECE,
        };
        let finished = copy_range(
            &src,
            &dst,
            (req.src_offset, req.dst_offset, req.size),
            piece,
            &mut |done| {
                job.copied.store(done, Ordering::SeqCst);
                self.changed();
                if let Some(rate) = self.rate() {
                    due += Duration::from_secs_f64((done - before) as f64 / rate as f64);
                    while Instant::now() < due {
                        if job.stop.load(Ordering::SeqCst) {
                            return false;
                        }
                        std::thread::sleep(
                            due.saturating_duration_since(Instant::now())
                                .min(Duration::from_millis(50)),
                        );
                    }
                } else {
                    due = Instant::now();
                }
                before = done;
                if last_line.elapsed() >= STATUS_EVERY && done < req.size {
                    last_line = Instant::now();
                    lines.push_str(&format::key_values(&[(
                        "status",
                        status_text(done, req.size),
                    )]));
                }
                !job.stop.load(Ordering::SeqCst)
            },
        )
        .map_err(io)?;
        if !finished {
            return Err("failure: the copy was interrupted".into());
        }
        lines.push_str(&format::key_values(&[(
            "status",
            status_text(req.size, req.size),
        )]));
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_busy_while_someone_holds_it() {
        let copies = Copies::new(None);
        let side = |name: &str| Endpoint {
            name: name.into(),
            path: PathBuf::from(format!("/pool/{name}.img")),
        };
        let running = copies.start(CopyRequest {
            src: side("a"),
            dst: side("b"),
            src_offset: 0,
            dst_offset: 0,
            size: 10,
        });
        assert!(copies.busy(&side("b").path));
        assert!(!copies.busy(&side("c").path));
        assert_eq!(copies.views()[0].status, "0 / 10 (0%)");
        // A line dropped before its copy ran leaves nothing busy.
        drop(running);
        assert!(!copies.busy(&side("b").path));
        assert!(copies.views().is_empty());
    }

    #[test]
    fn status_is_bytes_of_total_and_a_percentage_rounded_down() {
        assert_eq!(status_text(0, 1024), "0 / 1024 (0%)");
        assert_eq!(status_text(1023, 1024), "1023 / 1024 (99%)");
        assert_eq!(status_text(1024, 1024), "1024 / 1024 (100%)");
        assert_eq!(status_text(0, 0), "0 / 0 (100%)");
    }
}
