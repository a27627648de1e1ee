//! Counters for `/metrics` (Prometheus text format 0.0.4), kept with atomics on the hot path.

use agentgate_engine::Outcome;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

/// Service metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; Outcome::ALL.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    receipts_signed: AtomicU64,
    receipts_failed: AtomicU64,
}

impl Metrics {
    /// Counts one decision and its latency.
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome)
            && let Some(c) = self.decisions.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ns.fetch_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts a configuration reload.
    pub fn reload(&self, ok: bool) {
        let counter = if ok { &self.reloads_ok } else { &self.reloads_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a receipt signed, or one that could not be.
    pub fn receipt(&self, signed: bool) {
        let counter = if signed { &self.receipts_signed } else { &self.receipts_failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed reloads so far.
    pub fn failed_reloads(&self) -> u64 {
        self.reloads_failed.load(Ordering::Relaxed)
    }

    /// Successful reloads so far.
    pub fn successful_reloads(&self) -> u64 {
        self.reloads_ok.load(Ordering::Relaxed)
    }

    /// Decisions with `outcome` so far.
    pub fn decisions(&self, outcome: Outcome) -> u64 {
        Outcome::ALL.iter().position(|o| *o == outcome).and_then(|i| self.decisions.get(i)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP agentgate_decisions_total Decisions by outcome.");
        let _ = writeln!(out, "# TYPE agentgate_decisions_total counter");
        for (outcome, count) in Outcome::ALL.iter().zip(&self.decisions) {
            let _ = writeln!(out, "agentgate_decisions_total{{outcome=\"{outcome}\"}} {}", count.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP agentgate_decision_duration_seconds Time to decide one call, in the component.");
        let _ = writeln!(out, "# TYPE agentgate_decision_duration_seconds histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "agentgate_decision_duration_seconds_bucket{{le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "agentgate_decision_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "agentgate_decision_duration_seconds_sum {sum}");
        let _ = writeln!(out, "agentgate_decision_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP agentgate_reloads_total Configuration reloads by result.");
        let _ = writeln!(out, "# TYPE agentgate_reloads_total counter");
        let _ = writeln!(out, "agentgate_reloads_total{{result=\"ok\"}} {}", self.reloads_ok.load(Ordering::Relaxed));
        let _ = writeln!(out, "agentgate_reloads_total{{result=\"failed\"}} {}", self.reloads_failed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP agentgate_receipts_total Decision receipts by result (`[receipts]`).");
        let _ = writeln!(out, "# TYPE agentgate_receipts_total counter");
        let _ = writeln!(out, "agentgate_receipts_total{{result=\"signed\"}} {}", self.receipts_signed.load(Ordering::Relaxed));
        let _ = writeln!(out, "agentgate_receipts_total{{result=\"failed\"}} {}", self.receipts_failed.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP agentgate_revocation_reload_failures_total Revocation list loads that failed (the last good list stayed).");
        let _ = writeln!(out, "# TYPE agentgate_revocation_reload_failures_total counter");
        let _ = writeln!(out, "agentgate_revocation_reload_failures_total {}", gauges.revocation_failures);
        // Known for the memory backend; a shared store is not scanned for a gauge.
        if let Some(entries) = gauges.replay_entries {
            let _ = writeln!(out, "# HELP agentgate_replay_store_entries DPoP proof ids remembered.");
            let _ = writeln!(out, "# TYPE agentgate_replay_store_entries gauge");
            let _ = writeln!(out, "agentgate_replay_store_entries {entries}");
        }
        let _ = writeln!(out, "# HELP agentgate_config_generation Configuration generation in force (1 at start).");
        let _ = writeln!(out, "# TYPE agentgate_config_generation gauge");
        let _ = writeln!(out, "agentgate_config_generation {}", gauges.generation);
        let _ = writeln!(out, "# HELP agentgate_audit_lines_dropped_total Audit lines lost: the queue was full (the sink is stalled) or the write failed.");
        let _ = writeln!(out, "# TYPE agentgate_audit_lines_dropped_total counter");
        let _ = writeln!(out, "agentgate_audit_lines_dropped_total{{reason=\"queue_full\"}} {}", gauges.audit.dropped_queue_full);
        let _ = writeln!(out, "agentgate_audit_lines_dropped_total{{reason=\"write_error\"}} {}", gauges.audit.dropped_write_error);
        let _ = writeln!(out, "# HELP agentgate_audit_lines_written_total Audit lines written.");
        let _ = writeln!(out, "# TYPE agentgate_audit_lines_written_total counter");
        let _ = writeln!(out, "agentgate_audit_lines_written_total {}", gauges.audit.written);
        let _ = writeln!(out, "# HELP agentgate_audit_queue_lines Audit lines waiting for the writer.");
        let _ = writeln!(out, "# TYPE agentgate_audit_queue_lines gauge");
        let _ = writeln!(out, "agentgate_audit_queue_lines {}", gauges.audit.queued);
        if let Some(log) = gauges.decision_log {
            let _ = writeln!(out, "# HELP agentgate_decision_log_lines_total Decision-log lines by result (`[decision_log]`).");
            let _ = writeln!(out, "# TYPE agentgate_decision_log_lines_total counter");
            let _ = writeln!(out, "agentgate_decision_log_lines_total{{result=\"written\"}} {}", log.written);
            let _ = writeln!(out, "agentgate_decision_log_lines_total{{result=\"dropped\"}} {}", log.dropped);
        }
        out
    }
}

/// Values read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Replay store size, when the backend knows it cheaply.
    pub replay_entries: Option<usize>,
    /// Failed revocation reloads.
    pub revocation_failures: u64,
    /// Config generation.
    pub generation: u64,
    /// The audit sink's counters.
    pub audit: super::audit::AuditStats,
    /// The decision log's counters, when `[decision_log]` is on.
    pub decision_log: Option<crate::decision_log::LogStats>,
}
