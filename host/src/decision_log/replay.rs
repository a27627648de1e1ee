//! `agentgate replay`: decides every logged call again under another configuration's policies
//! and schema, natively, and reports what changed. The recorded facts stand: no credential is
//! verified again, no proof spent, no clock read — the question is only what the new policies
//! make of the same calls.
//!
//! A line that cannot be replayed is reported with its source and line number and counts toward
//! the exit status; none is skipped in silence. That covers a line that is not a log entry, a
//! call recorded in a form this version does not read, and a call the new schema rejects (an
//! action it no longer declares, a context or entities that no longer match) where the old
//! configuration had accepted it.

use super::{LogEntry, LoggedDecision};
use agentgate_engine::authorizer::{Authorizer, entity_display};
use agentgate_engine::recorded::RecordedCall;
use agentgate_engine::{Decision, Outcome};
use serde::Serialize;
use std::fmt::Write as _;
use std::io::BufRead;

/// How many changed calls and unreplayable lines a report keeps in full; the counts go on.
pub const MAX_LISTED: usize = 10_000;

/// Lines one worker decides at a time.
const CHUNK_LINES: usize = 2048;

/// The policies the calls are decided again with.
pub struct Replayer {
    authorizer: Authorizer,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").finish_non_exhaustive()
    }
}

/// Calls counted by their old and new decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Transitions {
    /// Allowed before and now.
    pub allow_to_allow: u64,
    /// Allowed before, denied now.
    pub allow_to_deny: u64,
    /// Denied before, allowed now: what a policy CI job gates on.
    pub deny_to_allow: u64,
    /// Denied before and now.
    pub deny_to_deny: u64,
}

/// A call decided differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedCall {
    /// The log file.
    pub source: String,
    /// Its line, from 1.
    pub line: u64,
    /// The decision id.
    pub decision_id: String,
    /// When it was decided.
    pub time: String,
    /// The principal, `Type::"id"`.
    pub principal: String,
    /// The user it acted for.
    pub user: String,
    /// The action id.
    pub action: String,
    /// The resource, `Type::"id"`.
    pub resource: String,
    /// As logged.
    pub old: LoggedDecision,
    /// As decided now.
    pub new: NewDecision,
}

/// The decision under the new policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewDecision {
    /// Allowed.
    pub allowed: bool,
    /// The outcome name.
    pub outcome: String,
    /// The determining policies.
    pub policies: Vec<String>,
    /// Why.
    pub reason: String,
}

/// A line that could not be replayed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreplayable {
    /// The log file.
    pub source: String,
    /// Its line, from 1.
    pub line: u64,
    /// The decision id, when the line had one.
    pub decision_id: Option<String>,
    /// What was wrong.
    pub error: String,
}

/// What a replay found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Lines decided again.
    pub replayed: u64,
    /// Those lines by old → new decision.
    pub transitions: Transitions,
    /// Calls decided the same way but by other determining policies.
    pub same_decision_other_policies: u64,
    /// Calls whose decision changed (the first `MAX_LISTED`).
    pub changed: Vec<ChangedCall>,
    /// Lines that could not be replayed (the first `MAX_LISTED`).
    pub unreplayable: Vec<Unreplayable>,
    /// How many lines could not be replayed.
    pub unreplayable_count: u64,
}

/// Exit status: 1 when a call denied before is allowed now (that wins: it is the finding a
/// policy CI job gates on), 2 when any line could not be replayed, 0 otherwise.
pub const EXIT_DENY_TO_ALLOW: u8 = 1;
/// See [`EXIT_DENY_TO_ALLOW`].
pub const EXIT_UNREPLAYABLE: u8 = 2;

impl Report {
    /// The exit status for this report.
    pub fn exit_code(&self) -> u8 {
        if self.transitions.deny_to_allow > 0 {
            EXIT_DENY_TO_ALLOW
        } else if self.unreplayable_count > 0 {
            EXIT_UNREPLAYABLE
        } else {
            0
        }
    }

    /// Adds `later`, the report of the lines after this one's.
    fn absorb(&mut self, later: Report) {
        self.replayed += later.replayed;
        let (t, l) = (&mut self.transitions, later.transitions);
        t.allow_to_allow += l.allow_to_allow;
        t.allow_to_deny += l.allow_to_deny;
        t.deny_to_allow += l.deny_to_allow;
        t.deny_to_deny += l.deny_to_deny;
        self.same_decision_other_policies += later.same_decision_other_policies;
        let room = MAX_LISTED.saturating_sub(self.changed.len());
        self.changed.extend(later.changed.into_iter().take(room));
        let room = MAX_LISTED.saturating_sub(self.unreplayable.len());
        self.unreplayable.extend(later.unreplayable.into_iter().take(room));
        self.unreplayable_count += later.unreplayable_count;
    }

    fn unreplayable(&mut self, source: &str, line: u64, decision_id: Option<&str>, error: String) {
        self.unreplayable_count += 1;
        if self.unreplayable.len() < MAX_LISTED {
            self.unreplayable.push(Unreplayable { source: source.to_owned(), line, decision_id: decision_id.map(str::to_owned), error });
        }
    }

    /// The report as text for a terminal.
    pub fn render_text(&self) -> String {
        let t = &self.transitions;
        let mut out = String::new();
        let _ = writeln!(out, "replayed {} decisions", self.replayed);
        let _ = writeln!(out, "  allow -> allow  {}", t.allow_to_allow);
        let _ = writeln!(out, "  allow -> deny   {}", t.allow_to_deny);
        let _ = writeln!(out, "  deny  -> allow  {}", t.deny_to_allow);
        let _ = writeln!(out, "  deny  -> deny   {}", t.deny_to_deny);
        let _ = writeln!(out, "  same decision, other determining policies: {}", self.same_decision_other_policies);
        let _ = writeln!(out, "  could not be replayed: {}", self.unreplayable_count);
        if !self.changed.is_empty() {
            let _ = writeln!(out, "\nchanged:");
            for c in &self.changed {
                let verdict = |allowed: bool| if allowed { "allow" } else { "deny" };
                let _ = writeln!(
                    out,
                    "  {}:{}  {} -> {}  {} for {}: {} on {}",
                    c.source,
                    c.line,
                    verdict(c.old.allowed),
                    verdict(c.new.allowed),
                    c.principal,
                    c.user,
                    c.action,
                    c.resource
                );
                let _ = writeln!(out, "      old: {} by [{}]", c.old.outcome, c.old.policies.join(", "));
                let _ = writeln!(out, "      new: {} by [{}]", c.new.outcome, c.new.policies.join(", "));
            }
            let listed = self.changed.len() as u64;
            let total = t.allow_to_deny + t.deny_to_allow;
            if total > listed {
                let _ = writeln!(out, "  … and {} more", total - listed);
            }
        }
        if !self.unreplayable.is_empty() {
            let _ = writeln!(out, "\ncould not be replayed:");
            for u in &self.unreplayable {
                let _ = writeln!(out, "  {}:{}: {}", u.source, u.line, u.error);
            }
            if self.unreplayable_count > self.unreplayable.len() as u64 {
                let _ = writeln!(out, "  … and {} more", self.unreplayable_count - self.unreplayable.len() as u64);
            }
        }
        out
    }
}

impl Replayer {
    /// Decides with these policies and schema (an `agentgate.toml`'s, as loaded).
    pub fn new(policies: &[agentgate_engine::authorizer::SourceText], schema: &agentgate_engine::authorizer::SourceText) -> Result<Self, String> {
        Ok(Replayer { authorizer: Authorizer::new(policies, schema)? })
    }

    /// Replays every line of `reader` (named `source` in the report) into `report`, on `workers`
    /// threads (the report is the same for any number). Only an error reading the input stops
    /// it; every bad line is reported and the rest go on.
    pub fn replay(&self, source: &str, reader: impl BufRead, report: &mut Report, workers: usize) -> std::io::Result<()> {
        let workers = workers.max(1);
        let mut lines = reader.lines();
        let mut line_no = 0u64;
        loop {
            // A batch of `workers` chunks, decided side by side and reported in line order.
            let mut batch: Vec<(u64, String)> = Vec::with_capacity(workers * CHUNK_LINES);
            while batch.len() < workers * CHUNK_LINES {
                let Some(line) = lines.next() else { break };
                line_no += 1;
                batch.push((line_no, line?));
            }
            if batch.is_empty() {
                return Ok(());
            }
            if batch.len() <= CHUNK_LINES {
                report.absorb(self.replay_chunk(source, &batch));
                continue;
            }
            let parts = std::thread::scope(|scope| {
                let running: Vec<_> = batch.chunks(CHUNK_LINES).map(|chunk| scope.spawn(move || self.replay_chunk(source, chunk))).collect();
                running.into_iter().map(|worker| worker.join()).collect::<Result<Vec<Report>, _>>()
            });
            // A worker that panicked would lose its lines: stop rather than skip them.
            let parts = parts.map_err(|_| std::io::Error::other("a replay worker failed; the report would be incomplete"))?;
            for part in parts {
                report.absorb(part);
            }
        }
    }

    fn replay_chunk(&self, source: &str, lines: &[(u64, String)]) -> Report {
        let mut report = Report::default();
        for (line_no, text) in lines {
            if !text.trim().is_empty() {
                self.replay_line(source, *line_no, text, &mut report);
            }
        }
        report
    }

    /// Replays one line.
    pub fn replay_line(&self, source: &str, line: u64, text: &str, report: &mut Report) {
        let entry: LogEntry = match serde_json::from_str(text) {
            Ok(entry) => entry,
            Err(e) => return report.unreplayable(source, line, None, format!("not a decision-log line: {e}")),
        };
        let call = match RecordedCall::parse(&entry.call) {
            Ok(call) => call,
            Err(e) => return report.unreplayable(source, line, Some(&entry.decision_id), e),
        };
        let new = call.decide_again(&self.authorizer);
        // A call the old configuration took to its policies but the new schema rejects was not
        // decided by the new policies at all: that is not a "deny", it is a call they cannot
        // judge.
        if new.outcome == Outcome::InvalidRequest && entry.decision.outcome != Outcome::InvalidRequest.as_str() {
            return report.unreplayable(source, line, Some(&entry.decision_id), format!("the new schema rejects the recorded call: {}", new.reason));
        }
        report.replayed += 1;
        let t = &mut report.transitions;
        match (entry.decision.allowed, new.allowed) {
            (true, true) => t.allow_to_allow += 1,
            (true, false) => t.allow_to_deny += 1,
            (false, true) => t.deny_to_allow += 1,
            (false, false) => t.deny_to_deny += 1,
        }
        if entry.decision.allowed == new.allowed {
            if entry.decision.policies != new.policies {
                report.same_decision_other_policies += 1;
            }
            return;
        }
        if report.changed.len() < MAX_LISTED {
            report.changed.push(changed_call(source, line, entry, &call, new));
        }
    }
}

fn changed_call(source: &str, line: u64, entry: LogEntry, call: &RecordedCall, new: Decision) -> ChangedCall {
    ChangedCall {
        source: source.to_owned(),
        line,
        decision_id: entry.decision_id,
        time: entry.time,
        principal: entity_display(call.principal_kind.type_name(), &call.principal_id),
        user: call.facts.user.clone(),
        action: call.action.clone(),
        resource: entity_display(&call.resource.type_name, &call.resource.id),
        old: entry.decision,
        new: NewDecision { allowed: new.allowed, outcome: new.outcome.as_str().to_owned(), policies: new.policies, reason: new.reason },
    }
}
