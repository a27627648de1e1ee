//! One JSON line per decision, written off the request path. Lines carry identifiers (token `jti`,
//! key thumbprint, agent and user ids) — never a token, proof or signature.
//!
//! A request handler never waits for the writer: lines go into a bounded queue with `try_send`.
//! A line that does not fit (the sink is stalled: an unread pipe, a slow disk) or cannot be
//! written (`ENOSPC`, `EIO`) is dropped and counted, and `/healthz` reports the service unhealthy
//! while that goes on. With `[audit] required = true` the decision endpoints deny meanwhile.
//! SIGHUP reopens a file sink (log rotation).

use serde::Serialize;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after a lost line the sink still counts as unhealthy.
const LOSS_WINDOW: Duration = Duration::from_secs(5);
/// Largest batch the writer gathers before one write.
const BATCH_BYTES: usize = 64 * 1024;
/// Longest free-text field (resource id, reason, …) kept in an audit line, in bytes.
pub const MAX_FIELD_BYTES: usize = 512;
/// Most delegation-chain entries kept in an audit line.
pub const MAX_CHAIN: usize = 16;

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditLine {
    /// RFC 3339 time with milliseconds, UTC.
    pub time: String,
    /// Unique id of this decision (also sent to the upstream / caller).
    pub decision_id: String,
    /// `forward_auth`, `authzen`, `check`.
    pub api: &'static str,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Outcome name.
    pub outcome: String,
    /// Reason text.
    pub reason: String,
    /// Current agent (`act.sub`), if any.
    pub agent: Option<String>,
    /// The user (`sub`).
    pub user: Option<String>,
    /// Delegation chain, current actor first.
    pub chain: Vec<String>,
    /// Cedar action.
    pub action: String,
    /// Cedar resource `Type::"id"`.
    pub resource: String,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Access token `jti`.
    pub token_id: Option<String>,
    /// Proof key thumbprint.
    pub key_thumbprint: Option<String>,
    /// Time in the engine, microseconds.
    pub latency_us: u64,
    /// `X-Request-ID` of the call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The decision's signed receipt (`[receipts]`), when one was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// `text` cut to at most `max` bytes (at a character boundary), marked when cut: audit lines
/// stay bounded whatever a caller sends.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes]", text.get(..end).unwrap_or_default(), text.len())
}

/// Counters and state shared by the handlers and the writer thread.
#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    dropped_queue_full: AtomicU64,
    dropped_write_error: AtomicU64,
    written: AtomicU64,
    writer_failing: AtomicBool,
    last_loss: Mutex<Option<Instant>>,
    reopen: AtomicBool,
}

impl Shared {
    fn lost(&self) {
        if let Ok(mut last) = self.last_loss.lock() {
            *last = Some(Instant::now());
        }
    }
}

/// What `/metrics` and `/healthz` show about the sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditStats {
    /// Lines dropped because the queue was full.
    pub dropped_queue_full: u64,
    /// Lines lost to write errors.
    pub dropped_write_error: u64,
    /// Lines written.
    pub written: u64,
    /// Lines waiting for the writer.
    pub queued: usize,
}

/// The audit sink.
#[derive(Debug, Clone)]
pub struct Audit {
    sender: SyncSender<AuditLine>,
    shared: Arc<Shared>,
    capacity: usize,
    required: bool,
}

impl Audit {
    /// Writes to standard output (`-`) or appends to a file; `queue` lines are buffered.
    pub fn open(path: &str, queue: usize, required: bool) -> std::io::Result<Self> {
        let writer = Sink::open(path)?;
        let capacity = queue.max(1);
        let (sender, receiver) = sync_channel::<AuditLine>(capacity);
        let shared = Arc::new(Shared::default());
        let for_writer = Arc::clone(&shared);
        let path = path.to_owned();
        std::thread::Builder::new().name("agentgate-audit".into()).spawn(move || run_writer(&path, writer, &receiver, &for_writer))?;
        Ok(Audit { sender, shared, capacity, required })
    }

    /// Queues a line without waiting; false if it was dropped (the queue is full or the writer
    /// has stopped).
    pub fn write(&self, line: AuditLine) -> bool {
        // Count before sending: the writer decrements as soon as it receives.
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                let before = self.shared.dropped_queue_full.fetch_add(1, Ordering::Relaxed);
                self.shared.lost();
                if before == 0 || before.is_power_of_two() {
                    tracing::error!(dropped = before + 1, "the audit queue is full (the audit sink is stalled); a decision was not audited");
                }
                false
            }
        }
    }

    /// `Err(reason)` while lines are being lost: the queue is full, the last write failed, or a
    /// line was lost in the last few seconds.
    pub fn health(&self) -> Result<(), String> {
        if self.shared.writer_failing.load(Ordering::Relaxed) {
            return Err("audit lines cannot be written (the last write to the audit log failed)".into());
        }
        if self.shared.queued.load(Ordering::Relaxed) >= self.capacity {
            return Err("the audit queue is full (the audit log is not keeping up)".into());
        }
        let recent = self.shared.last_loss.lock().ok().and_then(|l| *l).is_some_and(|t| t.elapsed() < LOSS_WINDOW);
        if recent {
            return Err(format!("audit lines were dropped in the last {} seconds", LOSS_WINDOW.as_secs()));
        }
        Ok(())
    }

    /// True with `[audit] required = true`: decisions are denied while [`Audit::health`] fails.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Asks the writer to reopen a file sink before its next write (SIGHUP, log rotation).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            dropped_queue_full: self.shared.dropped_queue_full.load(Ordering::Relaxed),
            dropped_write_error: self.shared.dropped_write_error.load(Ordering::Relaxed),
            written: self.shared.written.load(Ordering::Relaxed),
            queued: self.shared.queued.load(Ordering::Relaxed),
        }
    }
}

/// Where lines go.
enum Sink {
    Stdout,
    File(std::fs::File),
}

impl Sink {
    fn open(path: &str) -> std::io::Result<Self> {
        if path == "-" { Ok(Sink::Stdout) } else { Ok(Sink::File(std::fs::OpenOptions::new().create(true).append(true).open(path)?)) }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File(f) => f.write_all(bytes),
        }
    }
}

fn run_writer(path: &str, mut sink: Sink, receiver: &Receiver<AuditLine>, shared: &Shared) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    loop {
        let first = match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if shared.reopen.swap(false, Ordering::Relaxed) && path != "-" {
            match Sink::open(path) {
                Ok(reopened) => {
                    sink = reopened;
                    // A new file may cure a failing one (e.g. a full disk after rotation).
                    shared.writer_failing.store(false, Ordering::Relaxed);
                    tracing::info!(path, "audit log reopened");
                }
                Err(e) => tracing::error!(path, error = %e, "could not reopen the audit log; writing to the old one"),
            }
        }
        let Some(first) = first else { continue };
        batch.clear();
        let mut lines = 0u64;
        let mut next = Some(first);
        while let Some(line) = next.take() {
            shared.queued.fetch_sub(1, Ordering::Relaxed);
            if serde_json::to_writer(&mut batch, &line).is_ok() {
                batch.push(b'\n');
                lines += 1;
            }
            if batch.len() < BATCH_BYTES {
                next = receiver.try_recv().ok();
            }
        }
        match sink.write_all(&batch) {
            Ok(()) => {
                shared.written.fetch_add(lines, Ordering::Relaxed);
                if shared.writer_failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(path, "the audit log is writable again");
                }
            }
            Err(e) => {
                shared.dropped_write_error.fetch_add(lines, Ordering::Relaxed);
                shared.lost();
                if !shared.writer_failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(path, error = %e, "writing the audit log failed; audit lines are being lost");
                }
            }
        }
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    // PANIC SAFETY: test code.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rfc3339_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn clipped_fields_stay_bounded() {
        assert_eq!(clip("short", 10), "short");
        let long = "é".repeat(1000);
        let c = clip(&long, 11);
        assert!(c.starts_with("ééééé…"), "{c}");
        assert!(c.ends_with("[2000 bytes]"), "{c}");
    }

    fn line() -> AuditLine {
        AuditLine {
            time: now_rfc3339(),
            decision_id: "d".into(),
            api: "check",
            decision: "deny",
            outcome: "policy_denied".into(),
            reason: "r".into(),
            agent: None,
            user: None,
            chain: Vec::new(),
            action: "a".into(),
            resource: "R::\"x\"".into(),
            policies: Vec::new(),
            token_id: None,
            key_thumbprint: None,
            latency_us: 1,
            request_id: None,
            receipt: None,
        }
    }

    #[test]
    fn a_full_disk_is_counted_and_reported() {
        let audit = Audit::open("/dev/full", 8, true).unwrap();
        assert!(audit.health().is_ok());
        assert!(audit.write(line()));
        let start = Instant::now();
        while audit.stats().dropped_write_error == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "the write error was not counted");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(audit.health().unwrap_err().contains("cannot be written"));
    }
}
