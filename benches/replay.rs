//! `agentgate replay` speed: a 100,000-line decision log, decided again under the mail demo's
//! policies (every line as logged by the engine: the calls are recorded by the native engine from
//! real, verified calls, then spread over many users and mailboxes so that a fifth of them are
//! denied). One iteration reads, parses and decides all 100,000 lines, as the CLI does.
//!
//! `recording/`: what `[decision_log]` adds to a bound call (repeated token, host crypto: the
//! build `serve` runs with `crypto = "host"`): `check` against `check-recorded`, which also
//! returns the call as authorized (serialized in the guest, parsed by the host).
//!
//! `cargo bench --bench replay`; decisions/s = 100,000 / the time shown.

// PANIC SAFETY: bench code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use agentgate::Decide;
use agentgate::config::CryptoPlacement;
use agentgate::decision_log::LogEntry;
use agentgate::decision_log::replay::{Replayer, Report};
use common::Fixture;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const LINES: usize = 100_000;

/// The log: one recorded call per line, each for its own user, mailbox and token id.
fn log(f: &Fixture) -> Vec<u8> {
    let engine = f.native();
    let (decision, call) = engine.check_recorded(&f.call());
    assert!(decision.allowed, "{decision:?}");
    let call = call.expect("an allowed call reached the policies");
    let mut out = Vec::with_capacity(LINES * 1200);
    for i in 0..LINES {
        let mut line = call.clone();
        let user = format!("user-{i}");
        // Every fifth call asks for someone else's mailbox: denied, as it was when logged.
        let owner = if i % 5 == 4 { format!("user-{}", i + 1) } else { user.clone() };
        line.facts.user = user;
        line.facts.token_id = format!("token-{i}");
        line.resource.id = owner.clone();
        line.entities = Some(format!(
            r#"[{{"uid":{{"type":"Mailbox","id":"{owner}"}},"attrs":{{"owner":{{"__entity":{{"type":"User","id":"{owner}"}}}}}},"parents":[]}}]"#
        ));
        let decided = line.decide_again(engine.authorizer());
        let entry = LogEntry::new(&format!("decision-{i}"), "check", "digest", &decided, &line).unwrap();
        serde_json::to_writer(&mut out, &entry).unwrap();
        out.push(b'\n');
    }
    out
}

fn replay(c: &mut Criterion) {
    let f = Fixture::mail();
    let bytes = log(&f);
    let replayer = Replayer::new(&f.config.engine.policies, &f.config.engine.schema).unwrap();
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(LINES as u64));
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    for workers in [1, cores] {
        group.bench_function(format!("mail_100k_lines/{workers}_threads"), |b| {
            b.iter(|| {
                let mut report = Report::default();
                replayer.replay("bench", black_box(bytes.as_slice()), &mut report, workers).unwrap();
                assert_eq!(report.replayed, LINES as u64);
                assert_eq!(report.transitions.allow_to_allow + report.transitions.deny_to_deny, LINES as u64, "the same policies change nothing");
                report
            })
        });
    }
    group.finish();
}

fn recording(c: &mut Criterion) {
    let f = Fixture::mail();
    let mut group = c.benchmark_group("recording");
    let deciders: [(&str, Box<dyn Decide>); 2] = [("native", Box::new(f.native())), ("component_host_crypto", Box::new(f.component(CryptoPlacement::Host)))];
    for (name, mut decider) in deciders {
        group.bench_function(format!("{name}/check"), |b| {
            b.iter_batched(|| f.call(), |req| assert!(decider.decide(black_box(&req)).allowed), BatchSize::SmallInput)
        });
        group.bench_function(format!("{name}/check_recorded"), |b| {
            b.iter_batched(
                || f.call(),
                |req| {
                    let (decision, call) = decider.decide_recorded(black_box(&req));
                    assert!(decision.allowed && call.is_some());
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, replay, recording);
criterion_main!(benches);
