//! Store metrics for `/metrics`: the latency of proof round trips, errors by kind, calls decided
//! in degraded (local-only) mode, and the mode in force.

use super::StoreError;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bounds of the round-trip histogram, in seconds (50 µs … 250 ms).
const BUCKETS: [f64; 12] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
/// Error kinds, in `StoreError::kind` spelling.
const KINDS: [&str; 5] = ["timeout", "connection", "full", "content", "other"];

/// Counters, kept with atomics on the hot path.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
    errors: [AtomicU64; KINDS.len()],
    degraded: AtomicU64,
    degraded_allowed: AtomicBool,
    revocation_entries: AtomicUsize,
}

impl StoreMetrics {
    /// Counts one proof round trip.
    pub fn proof_round_trip(&self, took: Duration, error: Option<&StoreError>) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        if let Some(e) = error {
            self.store_error(e);
        }
    }

    /// Counts a store error.
    pub fn store_error(&self, error: &StoreError) {
        if let Some(counter) = KINDS.iter().position(|k| *k == error.kind()).and_then(|i| self.errors.get(i)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Errors of `kind` so far.
    pub fn errors(&self, kind: &str) -> u64 {
        KINDS.iter().position(|k| *k == kind).and_then(|i| self.errors.get(i)).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Counts a check decided with local state because the store was unavailable.
    pub fn degraded(&self) {
        self.degraded.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks decided in degraded mode so far.
    pub fn degraded_count(&self) -> u64 {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Whether degraded mode is allowed (`on_unavailable = "local"`).
    pub fn set_degraded_allowed(&self, allowed: bool) {
        self.degraded_allowed.store(allowed, Ordering::Relaxed);
    }

    /// The size of the revocation list in force.
    pub fn revocation_entries(&self, entries: usize) {
        self.revocation_entries.store(entries, Ordering::Relaxed);
    }

    /// The exposition text for these metrics, with `backend` as a label.
    pub fn render(&self, backend: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP agentgate_store_round_trip_seconds Time of one replay-store round trip (check and insert of a proof id).");
        let _ = writeln!(out, "# TYPE agentgate_store_round_trip_seconds histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "agentgate_store_round_trip_seconds_bucket{{backend=\"{backend}\",le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "agentgate_store_round_trip_seconds_bucket{{backend=\"{backend}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "agentgate_store_round_trip_seconds_sum{{backend=\"{backend}\"}} {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "agentgate_store_round_trip_seconds_count{{backend=\"{backend}\"}} {count}");
        let _ = writeln!(out, "# HELP agentgate_store_errors_total Store operations that failed, by kind.");
        let _ = writeln!(out, "# TYPE agentgate_store_errors_total counter");
        for (kind, counter) in KINDS.iter().zip(&self.errors) {
            let _ = writeln!(out, "agentgate_store_errors_total{{backend=\"{backend}\",kind=\"{kind}\"}} {}", counter.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP agentgate_store_degraded_total Checks decided with this node's local state because the store was unavailable (`on_unavailable = \"local\"`)."
        );
        let _ = writeln!(out, "# TYPE agentgate_store_degraded_total counter");
        let _ = writeln!(out, "agentgate_store_degraded_total{{backend=\"{backend}\"}} {}", self.degraded.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP agentgate_store_mode The store in force and what an unavailable store means (1 for the mode in force).");
        let _ = writeln!(out, "# TYPE agentgate_store_mode gauge");
        let local = self.degraded_allowed.load(Ordering::Relaxed);
        let _ = writeln!(out, "agentgate_store_mode{{backend=\"{backend}\",on_unavailable=\"deny\"}} {}", u8::from(!local));
        let _ = writeln!(out, "agentgate_store_mode{{backend=\"{backend}\",on_unavailable=\"local\"}} {}", u8::from(local));
        let _ = writeln!(out, "# HELP agentgate_revocation_entries Entries of the revocation list in force.");
        let _ = writeln!(out, "# TYPE agentgate_revocation_entries gauge");
        let _ = writeln!(out, "agentgate_revocation_entries {}", self.revocation_entries.load(Ordering::Relaxed));
    }
}
