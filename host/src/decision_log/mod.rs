//! The decision log (`[decision_log]`, opt-in): one JSON line per decision that reached the
//! policies, holding the call as it was authorized — the verified principal and facts and what
//! the caller asked (`agentgate_engine::recorded::RecordedCall`) — and the decision made. Never a
//! token, proof, identity token or signature. `agentgate replay` decides the lines again under
//! other policies (docs/replay.md).
//!
//! Calls stopped before the policies (a token that did not verify, a replayed proof, a revoked
//! token...) are not logged: no policy change can change how they are decided.
//!
//! `serve` writes off the request path, through a bounded queue like the audit log's: a line
//! that does not fit is dropped and counted (`/metrics`), never waited for. The file rotates
//! itself by size (`rotate`).

pub mod replay;
pub mod rotate;

use agentgate_engine::Decision;
use agentgate_engine::recorded::RecordedCall;
use rotate::RotatingFile;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

/// Largest batch the writer gathers before one write.
const BATCH_BYTES: usize = 256 * 1024;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// The decision id (as in the audit line and the receipt).
    pub decision_id: String,
    /// RFC 3339 UTC time of the decision.
    pub time: String,
    /// Which API decided it: `check`, `authzen`, `forward_auth`, `proxy`, `cli`.
    pub api: String,
    /// The content hash of the policies, schema and settings it was decided under (as on
    /// `/healthz`).
    pub config_digest: String,
    /// The decision made.
    pub decision: LoggedDecision,
    /// The call as authorized (`RecordedCall`), kept as JSON here so that a line of another
    /// form is refused with the record's own message.
    pub call: serde_json::Value,
}

/// What was decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedDecision {
    /// Allowed.
    pub allowed: bool,
    /// The outcome name.
    pub outcome: String,
    /// The determining policies.
    pub policies: Vec<String>,
}

impl LogEntry {
    /// The line for `decision` of `call`.
    pub fn new(decision_id: &str, api: &str, config_digest: &str, decision: &Decision, call: &RecordedCall) -> Result<Self, String> {
        Ok(LogEntry {
            decision_id: decision_id.to_owned(),
            time: crate::server::audit::now_rfc3339(),
            api: api.to_owned(),
            config_digest: config_digest.to_owned(),
            decision: LoggedDecision { allowed: decision.allowed, outcome: decision.outcome.as_str().to_owned(), policies: decision.policies.clone() },
            call: serde_json::to_value(call).map_err(|e| e.to_string())?,
        })
    }
}

/// Where the log goes and how much of it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    /// The file.
    pub path: PathBuf,
    /// Rotate before the file would pass this size.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.keep`).
    pub keep: u32,
}

/// What `/metrics` shows about the log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStats {
    /// Lines written.
    pub written: u64,
    /// Lines lost: the queue was full or a write failed.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
}

enum Message {
    Line(Box<LogEntry>),
    /// Everything sent before has been written (or counted as lost) when this is answered.
    Flush(SyncSender<()>),
}

/// The log writer: a thread behind a bounded queue.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: SyncSender<Message>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Line(_) => "Line",
            Message::Flush(_) => "Flush",
        })
    }
}

impl DecisionLog {
    /// Opens (creating) the log file and starts its writer; `queue` lines are buffered.
    pub fn open(target: &LogTarget, queue: usize) -> std::io::Result<Self> {
        let file = RotatingFile::open(&target.path, target.max_bytes, target.keep)?;
        let (sender, receiver) = sync_channel::<Message>(queue.max(1));
        let counters = Arc::new(Counters::default());
        let for_writer = Arc::clone(&counters);
        let path = target.path.clone();
        std::thread::Builder::new().name("agentgate-decision-log".into()).spawn(move || run_writer(&path, file, &receiver, &for_writer))?;
        Ok(DecisionLog { sender, counters })
    }

    /// Queues a line without waiting; false if it was dropped (and counted).
    pub fn write(&self, entry: LogEntry) -> bool {
        match self.sender.try_send(Message::Line(Box::new(entry))) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let before = self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                if before == 0 || before.is_power_of_two() {
                    tracing::error!(dropped = before + 1, "the decision log queue is full; a decision was not logged");
                }
                false
            }
        }
    }

    /// Waits (at most `timeout`) until every line queued so far is written; false on timeout.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (done, wait) = sync_channel(1);
        if self.sender.send(Message::Flush(done)).is_err() {
            return false;
        }
        wait.recv_timeout(timeout).is_ok()
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> LogStats {
        LogStats { written: self.counters.written.load(Ordering::Relaxed), dropped: self.counters.dropped.load(Ordering::Relaxed) }
    }
}

fn run_writer(path: &Path, mut file: RotatingFile, receiver: &Receiver<Message>, counters: &Counters) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut failing = false;
    loop {
        let first = match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.clear();
        let mut lines = 0u64;
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Line(entry) => {
                    if serde_json::to_writer(&mut batch, &entry).is_ok() {
                        batch.push(b'\n');
                        lines += 1;
                    } else {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH_BYTES && flushes.is_empty() {
                next = receiver.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            match file.append(&batch) {
                Ok(()) => {
                    counters.written.fetch_add(lines, Ordering::Relaxed);
                    if std::mem::take(&mut failing) {
                        tracing::warn!(path = %path.display(), "the decision log is writable again");
                    }
                }
                Err(e) => {
                    counters.dropped.fetch_add(lines, Ordering::Relaxed);
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(path = %path.display(), error = %e, "writing the decision log failed; decisions are not being logged");
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
