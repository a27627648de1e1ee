// A bundled component (`agentgate bundle`: policies, schema, keys and settings baked into a
// pre-initialized snapshot) runs in Node with no configuration beside it, and decides every vector
// of its configuration exactly as the same world given the configuration files. Run prepare.mjs
// first (it builds and transpiles the bundles listed in its BUNDLES).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, createVerifier, loadComponent } from './host.mjs';
import { buildDir, failingSteps, readManifest, readVector, resolvedConfig, runVector, vectorFiles } from './vectors.mjs';

const bundles = Object.entries(readManifest().bundles ?? {});

test('prepare.mjs built a bundle for each world', () => {
  assert.deepEqual(bundles.map(([, b]) => b.world).sort(), ['gate', 'gate-accelerated']);
});

for (const [name, bundle] of bundles) {
  describe(`bundle ${name} (${bundle.config}) on ${bundle.world}`, async () => {
    const bundled = await loadComponent(bundle.world, new URL(`bundles/${name}/`, buildDir));
    const plain = await loadComponent(bundle.world, buildDir);
    const vectors = vectorFiles().map((file) => [file, readVector(file)]).filter(([, v]) => v.config === bundle.config);

    test('its configuration has vectors to compare', () => {
      assert.ok(vectors.length > 10, `${vectors.length} vectors use ${bundle.config}`);
    });

    for (const [file, vector] of vectors) {
      test(file, async () => {
        const fromBundle = await runVector(vector, (host) => createVerifier(null, { world: bundle.world, component: bundled, bundled: true, ...host }));
        const fromFiles = await runVector(vector, (host) => createVerifier(resolvedConfig(vector.config), { world: bundle.world, component: plain, ...host }));
        assert.deepEqual(failingSteps(vector, fromBundle), [], `${file} (${vector.intent}) from the bundle`);
        assert.deepEqual(fromBundle, fromFiles, `${file}: the bundle decided differently from the configuration files`);
      });
    }
  });
}

test('a component without a baked-in configuration refuses to hand out a preloaded verifier', async () => {
  const plain = await loadComponent('gate', buildDir);
  await assert.rejects(createVerifier(null, { world: 'gate', component: plain, bundled: true }), (e) => {
    assert.ok(e instanceof ConfigError, `${e}`);
    return true;
  });
});
