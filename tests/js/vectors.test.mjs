// The shared conformance vectors (tests/vectors/*.json) on the JavaScript host: the portable
// component and the accelerated one (ES256 through node:crypto), both transpiled by jco. Each step
// must match its expectation as in tests/support/mod.rs `mismatch`, and both worlds must decide
// identically. Each vector's `host_state` sets up its `state` store (vectors.mjs `vectorState`).
// The portable world runs every vector a second time through `checkAsync` with the same store
// behind a simulated network (answers are Promises), and must decide identically. Run
// `node prepare.mjs` first.
//
// Env: AGENTGATE_VECTORS       vector directory (default ../vectors)
//      AGENTGATE_CONFIGS       resolved configs: a directory with index.json (default $AGENTGATE_JS_BUILD/configs)
//      AGENTGATE_JS_BUILD      transpiled components (default build)
//      AGENTGATE_JS_DECISIONS  write every decision here as { "<vector file>": [decision, ...] }
//                              (the portable world's; the accelerated world must equal it), for a
//                              Rust test to compare with the wasmtime host field by field.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { createVerifier, loadComponent, WORLDS } from './host.mjs';
import { behindNetwork, buildDir, failingSteps, readVector, resolvedConfig, runVector, vectorDir, vectorFiles } from './vectors.mjs';

const files = vectorFiles();

const decisions = Object.fromEntries(WORLDS.map((w) => [w, {}]));

test('the full vector suite is present', () => {
  assert.ok(files.length >= 100, `expected the full vector suite in ${vectorDir}, found ${files.length}`);
});

for (const world of WORLDS) {
  describe(`vectors on ${world}`, async () => {
    const component = await loadComponent(world, buildDir);
    for (const file of files) {
      const vector = readVector(file);
      test(file, async () => {
        const got = await runVector(vector, (host) => createVerifier(resolvedConfig(vector.config), { world, component, ...host }));
        decisions[world][file] = got;
        assert.deepEqual(failingSteps(vector, got), [], `${file} (${vector.intent}) on ${world}`);
      });
    }
  });
}

describe('vectors on gate through checkAsync, the store answering with Promises', async () => {
  const component = await loadComponent('gate', buildDir);
  for (const file of files) {
    const vector = readVector(file);
    test(file, async () => {
      const makeVerifier = (host) => createVerifier(resolvedConfig(vector.config), { world: 'gate', component, state: behindNetwork(host.state) });
      const got = await runVector(vector, makeVerifier, (verifier, request) => verifier.checkAsync(request));
      assert.deepEqual(got, decisions.gate[file], `${file}: checkAsync decided differently from check`);
    });
  }
});

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
