//! One JSON line per decision, written off the request path. Lines carry identifiers (token `jti`,
//! key thumbprint, agent and user ids) — never a token, proof or signature.

use serde::Serialize;
use std::io::Write as _;
use std::sync::mpsc::{SyncSender, sync_channel};

/// Lines buffered before requests wait for the writer.
const QUEUE: usize = 16 * 1024;

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
}

/// The audit sink.
#[derive(Debug, Clone)]
pub struct Audit {
    sender: SyncSender<AuditLine>,
}

impl Audit {
    /// Writes to standard output (`-`) or appends to a file.
    pub fn open(path: &str) -> std::io::Result<Self> {
        let mut writer: Box<dyn std::io::Write + Send> = if path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?)
        };
        let (sender, receiver) = sync_channel::<AuditLine>(QUEUE);
        std::thread::Builder::new().name("agentgate-audit".into()).spawn(move || {
            while let Ok(line) = receiver.recv() {
                if let Ok(text) = serde_json::to_string(&line) {
                    let _ = writeln!(writer, "{text}");
                }
                // Flush when the queue is drained, not per line.
                if receiver.try_recv().map(|next| {
                    if let Ok(text) = serde_json::to_string(&next) {
                        let _ = writeln!(writer, "{text}");
                    }
                }).is_err() {
                    let _ = writer.flush();
                }
            }
            let _ = writer.flush();
        })?;
        Ok(Audit { sender })
    }

    /// Queues a line (waits when the writer is far behind rather than dropping records).
    pub fn write(&self, line: AuditLine) {
        if self.sender.send(line).is_err() {
            tracing::error!("the audit writer has stopped; a decision was not audited");
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
    #[test]
    fn rfc3339_shape() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
