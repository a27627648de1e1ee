#!/usr/bin/env node
// Per-call check latency of the component in Node (jco), portable vs accelerated (node:crypto), for
// a bound agent call (access token + DPoP proof + Cedar) on the mail demo config — the same two
// cases as benches/check.rs: a repeated token with a fresh proof, and a first-seen token with a
// fresh proof. Tokens and proofs are minted beforehand with node:crypto; each call is timed alone
// and the median is printed in µs.
//
// Usage: node bench.mjs [--iterations N] [--warmup N]      (after node prepare.mjs)

import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createVerifier, loadComponent } from './host.mjs';
import { mintProof, mintToken, readJwk } from './mint.mjs';
import { buildDir, resolvedConfig } from './vectors.mjs';

const { values: args } = parseArgs({ options: { iterations: { type: 'string', default: '500' }, warmup: { type: 'string', default: '100' } } });
const N = Number(args.iterations);
const WARMUP = Number(args.warmup);

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const config = resolvedConfig('policies/mail/agentgate.toml');
const issuerKey = readJwk(join(root, 'policies/keys/issuer.TEST-ONLY.private.jwk.json'));
const agentKey = readJwk(join(root, 'policies/keys/agent.TEST-ONLY.private.jwk.json'));
const ORIGIN = 'https://mail.example.com';
const URI = `${ORIGIN}/mailboxes/alice/messages`;

const token = () => mintToken({ key: issuerKey, iss: 'https://auth.demo.agentgate.dev', sub: 'alice', aud: ORIGIN, agents: ['spiffe://agents.example/mail-assistant'], scope: 'mail.read', bind: agentKey, lifetime: 3600 });
const request = (t) => ({
  authorization: `DPoP ${t}`,
  dpop: mintProof({ key: agentKey, method: 'GET', uri: URI, token: t }),
  http: { method: 'GET', uri: URI },
  action: 'mail:read',
  resource: { type: 'Mailbox', id: 'alice' },
  entities: [{ uid: { type: 'Mailbox', id: 'alice' }, attrs: { owner: { __entity: { type: 'User', id: 'alice' } } }, parents: [] }],
});

const us = (t0) => Number(process.hrtime.bigint() - t0) / 1e3;
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const fmt = (x) => (x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${Math.round(x)} µs`);

function timeCalls(verifier, requests) {
  const times = [];
  for (const r of requests) {
    const t0 = process.hrtime.bigint();
    const d = verifier.check(r);
    times.push(us(t0));
    if (d.outcome !== 'allowed') throw new Error(`expected allowed, got ${d.outcome}: ${d.reason}`);
  }
  return times;
}

const rows = [];
const row = (what, times) => rows.push([what, fmt(median(times)), fmt(pct(times, 90)), times.length]);

// Reference line: one ES256 verify with node:crypto (OpenSSL).
{
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const msg = Buffer.from('header.payload');
  const sig = sign('sha256', msg, { key: privateKey, dsaEncoding: 'ieee-p1363' });
  const times = [];
  for (let i = 0; i < N + WARMUP; i++) {
    const t0 = process.hrtime.bigint();
    verify('sha256', msg, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig);
    if (i >= WARMUP) times.push(us(t0));
  }
  row('one ES256 verify, node:crypto (reference)', times);
}

const startup = [];
for (const world of ['gate', 'gate-accelerated']) {
  let t0 = process.hrtime.bigint();
  const component = await loadComponent(world, buildDir);
  await component.getCoreModule(`${world}.core.wasm`);
  const compile = us(t0);
  t0 = process.hrtime.bigint();
  const verifier = await createVerifier(config, { world, component });
  const create = us(t0);
  t0 = process.hrtime.bigint();
  verifier.warmUp();
  const warm = us(t0);
  const repeated = token();
  const first = timeCalls(verifier, [request(repeated)])[0];
  startup.push([world, fmt(compile), fmt(create), fmt(warm), fmt(first)]);

  const warmupCalls = Array.from({ length: WARMUP }, () => request(token()));
  timeCalls(verifier, warmupCalls);
  row(`bound call, repeated token, ${world}`, timeCalls(verifier, Array.from({ length: N }, () => request(repeated))));
  row(`bound call, first-seen token, ${world}`, timeCalls(verifier, Array.from({ length: N }, () => request(token()))));
}

console.log(`Node ${process.version}, ${N} calls per line after ${WARMUP} warm-up calls`);
console.log('\n| what | median | p90 | calls |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
console.log('\n| world | compile core module | instantiate + create | warm-up | first call |\n|---|---|---|---|---|');
for (const r of startup) console.log(`| ${r.join(' | ')} |`);
