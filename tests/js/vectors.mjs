// The shared conformance vectors (tests/vectors/*.json) for the JavaScript tests: where they are,
// the configurations prepare.mjs resolved for them, how a decision is compared with an
// expectation (tests/support/mod.rs `mismatch`), and how a vector runs on one verifier.
//
// Env: AGENTGATE_VECTORS   vector directory (default ../vectors)
//      AGENTGATE_JS_BUILD  prepare.mjs's output (default build)
//      AGENTGATE_CONFIGS   resolved configs: a directory with index.json (default $AGENTGATE_JS_BUILD/configs)

import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
 * Runs one vector on a fresh verifier from `makeVerifier()` (own instance, own replay store),
 * applying the vector's revocation list first; returns its decisions.
 */
export async function runVector(vector, makeVerifier) {
  const verifier = await makeVerifier();
  if (vector.revocations != null) verifier.setRevocations(vector.revocations);
  return vector.steps.map((step) => verifier.check(step.request));
}
