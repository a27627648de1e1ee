// The shared conformance vectors (tests/vectors/*.json) on the JavaScript host: the portable
// component and the accelerated one (ES256 through node:crypto), both transpiled by jco. Each step
// must match its expectation as in tests/support/mod.rs `mismatch`, and both worlds must decide
// identically. Run `node prepare.mjs` first.
//
// Env: AGENTGATE_VECTORS       vector directory (default ../vectors)
//      AGENTGATE_CONFIGS       resolved configs: a directory with index.json (default $AGENTGATE_JS_BUILD/configs)
//      AGENTGATE_JS_BUILD      transpiled components (default build)
//      AGENTGATE_JS_DECISIONS  write every decision here as { "<vector file>": [decision, ...] }
//                              (the portable world's; the accelerated world must equal it), for a
//                              Rust test to compare with the wasmtime host field by field.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createVerifier, loadComponent, WORLDS } from './host.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const vectorDir = resolve(process.env.AGENTGATE_VECTORS ?? join(here, '..', 'vectors'));
const buildPath = resolve(process.env.AGENTGATE_JS_BUILD ?? join(here, 'build'));
const buildDir = pathToFileURL(`${buildPath}/`);
const configDir = resolve(process.env.AGENTGATE_CONFIGS ?? join(buildPath, 'configs'));

const files = readdirSync(vectorDir).filter((f) => f.endsWith('.json')).sort();
const index = JSON.parse(readFileSync(join(configDir, 'index.json'), 'utf8'));
const configs = new Map();
function resolvedConfig(name) {
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

/** Runs one vector on a fresh verifier (own instance, own replay store); returns its decisions. */
async function runVector(vector, component) {
  const verifier = await createVerifier(resolvedConfig(vector.config), { world: component.world, component });
  if (vector.revocations != null) verifier.setRevocations(vector.revocations);
  return vector.steps.map((step) => verifier.check(step.request));
}

const decisions = Object.fromEntries(WORLDS.map((w) => [w, {}]));

test('the full vector suite is present', () => {
  assert.ok(files.length >= 100, `expected the full vector suite in ${vectorDir}, found ${files.length}`);
});

for (const world of WORLDS) {
  describe(`vectors on ${world}`, async () => {
    const component = await loadComponent(world, buildDir);
    for (const file of files) {
      const vector = JSON.parse(readFileSync(join(vectorDir, file), 'utf8'));
      test(file, async () => {
        const got = await runVector(vector, component);
        decisions[world][file] = got;
        const failures = vector.steps
          .map((step, i) => [i, mismatch(step.expect, got[i])])
          .filter(([, problem]) => problem !== null)
          .map(([i, problem]) => `step ${i}: ${problem}`);
        assert.deepEqual(failures, [], `${file} (${vector.intent}) on ${world}`);
      });
    }
  });
}

describe('both worlds decide identically', () => {
  for (const file of files) {
    test(file, () => {
      assert.deepEqual(decisions['gate-accelerated'][file], decisions.gate[file], `${file}: gate-accelerated decided differently from gate`);
    });
  }
});

after(() => {
  if (process.env.AGENTGATE_JS_DECISIONS) {
    const ordered = Object.fromEntries(files.filter((f) => f in decisions.gate).map((f) => [f, decisions.gate[f]]));
    writeFileSync(process.env.AGENTGATE_JS_DECISIONS, `${JSON.stringify(ordered, null, 2)}\n`);
  }
});
