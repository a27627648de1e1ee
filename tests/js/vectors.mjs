// The shared conformance vectors (tests/vectors/*.json) for the JavaScript tests: where they are,
// the configurations prepare.mjs resolved for them, how a decision is compared with an
// expectation (tests/support/mod.rs `mismatch`), how a vector runs on one verifier with its
// `host_state`, and a state store behind a (simulated) network, for `checkAsync`.
//
// Env: AGENTGATE_VECTORS   vector directory (default ../vectors)
//      AGENTGATE_JS_BUILD  prepare.mjs's output (default build)
//      AGENTGATE_CONFIGS   resolved configs: a directory with index.json (default $AGENTGATE_JS_BUILD/configs)

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MemoryState } from './host.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const vectorDir = resolve(process.env.AGENTGATE_VECTORS ?? join(here, '..', 'vectors'));
export const buildPath = resolve(process.env.AGENTGATE_JS_BUILD ?? join(here, 'build'));
export const buildDir = pathToFileURL(`${buildPath}/`);
const configDir = resolve(process.env.AGENTGATE_CONFIGS ?? join(buildPath, 'configs'));

/** The vector file names, sorted. */
export const vectorFiles = () => readdirSync(vectorDir).filter((f) => f.endsWith('.json')).sort();

/** One vector document. */
export const readVector = (file) => JSON.parse(readFileSync(join(vectorDir, file), 'utf8'));

/** prepare.mjs's manifest (components, bundles, configs). */
export const readManifest = () => JSON.parse(readFileSync(join(buildPath, 'manifest.json'), 'utf8'));

let index = null;
const configs = new Map();
/** The JSON of `agentgate resolve` for a config a vector names (e.g. `policies/mail/agentgate.toml`). */
export function resolvedConfig(name) {
  index ??= JSON.parse(readFileSync(join(configDir, 'index.json'), 'utf8'));
  if (!configs.has(name)) {
    const file = index[name];
    if (!file) throw new Error(`config \`${name}\` was not resolved: run prepare.mjs again`);
    configs.set(name, readFileSync(join(configDir, file), 'utf8'));
  }
  return configs.get(name);
}

/** tests/support/mod.rs `mismatch`: the problems of a decision against an expectation, or null. */
export function mismatch(expect, d) {
  const problems = [];
  if (expect.decision !== d.decision) problems.push(`decision \`${d.decision}\`, expected \`${expect.decision}\``);
  if (expect.outcome !== d.outcome) problems.push(`outcome \`${d.outcome}\`, expected \`${expect.outcome}\``);
  if (expect.reason_contains != null && !d.reason.includes(expect.reason_contains)) {
    problems.push(`reason \`${d.reason}\` lacks \`${expect.reason_contains}\``);
  }
  if (expect.policies != null) {
    const got = [...d.policies].sort();
    if (JSON.stringify(got) !== JSON.stringify(expect.policies)) {
      problems.push(`policies ${JSON.stringify(got)}, expected ${JSON.stringify(expect.policies)}`);
    }
  }
  if (expect.dpop_nonce != null && (d.dpop_nonce != null) !== expect.dpop_nonce) {
    problems.push(`dpop_nonce ${JSON.stringify(d.dpop_nonce ?? null)}, expected present=${expect.dpop_nonce}`);
  }
  return problems.length ? `${problems.join('; ')} (reason: ${d.reason})` : null;
}

/** The failing steps of a vector's decisions, as `step N: problem` lines (empty when all match). */
export const failingSteps = (vector, decisions) =>
  vector.steps
    .map((step, i) => [i, mismatch(step.expect, decisions[i])])
    .filter(([, problem]) => problem !== null)
    .map(([i, problem]) => `step ${i}: ${problem}`);

/**
 * The `state` import a vector's host provides (tests/support/mod.rs `VectorState`): a fresh
 * MemoryState bounded to `host_state.max_proofs_per_key` live proofs per key (default 10,000),
 * answering `revoked(i)` for the first of a call's ids in `host_state.revoked` (canonical ids as
 * arrays of parts), serving `host_state.status_lists` (uri → Status List Token; `unchanged` when
 * the component already holds it), or answering every question `unavailable` with
 * `host_state.unavailable`'s text.
 */
export function vectorState(spec = {}) {
  const { max_proofs_per_key: perKey, revoked = [], unavailable, status_lists: lists = {}, ...unknown } = spec ?? {};
  if (Object.keys(unknown).length) throw new Error(`unknown \`host_state\` member(s): ${Object.keys(unknown).join(', ')}`);
  const memory = new MemoryState({ ...(perKey == null ? {} : { perKey }), revoked });
  const down = unavailable == null ? null : { tag: 'unavailable', val: unavailable };
  const digest = (token) => createHash('sha256').update(token).digest('base64url');
  return {
    memory,
    rememberProof: (proof) => down ?? memory.rememberProof(proof),
    checkRevoked: (ids, now) => down ?? memory.checkRevoked(ids, now),
    statusList(uri, knownDigest) {
      if (down) return down;
      const token = Object.hasOwn(lists, uri) ? lists[uri] : undefined;
      if (token === undefined) return { tag: 'unavailable', val: `this host has no status list at \`${uri}\`` };
      return knownDigest === digest(token) ? { tag: 'unchanged' } : { tag: 'current', val: token };
    },
  };
}

/**
 * Runs one vector on a fresh verifier from `makeVerifier({ state })` (own instance, own state
 * store from the vector's `host_state`), applying the vector's revocation list first; returns its
 * decisions. `check` is `(verifier, request) => decision` (or a Promise of one).
 */
export async function runVector(vector, makeVerifier, check = (verifier, request) => verifier.check(request)) {
  const verifier = await makeVerifier({ state: vectorState(vector.host_state) });
  if (vector.revocations != null) verifier.setRevocations(vector.revocations);
  const decisions = [];
  for (const step of vector.steps) decisions.push(await check(verifier, step.request));
  return decisions;
}

/**
 * `store` behind a network: each answer is a Promise that settles a timer tick later, computed
 * when it settles (as a Durable Object or Redis would). `asked` lists the questions sent; with
 * `fail`, every answer is a rejection with that message.
 */
export function behindNetwork(store, { fail } = {}) {
  const asked = [];
  const later = (method, args) => {
    asked.push(method);
    return new Promise((resolve, reject) => setTimeout(() => (fail ? reject(new Error(fail)) : resolve(store[method](...args))), 1));
  };
  return {
    asked,
    rememberProof: (proof) => later('rememberProof', [proof]),
    checkRevoked: (ids, now) => later('checkRevoked', [ids, now]),
    statusList: (uri, digest) => later('statusList', [uri, digest]),
  };
}
