#!/usr/bin/env node
// Prepares everything the JavaScript host's tests need, from the Rust build:
//
//   build/components/gate.wasm, gate-accelerated.wasm   `agentgate component --crypto guest|host`
//   build/gate/, build/gate-accelerated/                 `jco transpile --instantiation async`
//   build/configs/index.json + *.json                    `agentgate resolve` for every config the
//                                                        vectors name (and the demo configs)
//   build/bundles/<name>/<world>/                        `agentgate bundle` of a demo config
//                                                        (configuration baked in), transpiled
//   build/manifest.json                                  versions, sizes, hashes, timings
//
// Usage:  node prepare.mjs            (from tests/js, after `npm ci`)
// Env:    AGENTGATE_BIN            the agentgate binary (default ../../target/release/agentgate)
//         AGENTGATE_COMPONENT_DIR  take agentgate_gate.wasm / agentgate_gate_accelerated.wasm from
//                                  this directory instead of `agentgate component`
//         AGENTGATE_JS_BUILD       output directory (default ./build)
//         AGENTGATE_VECTORS        vector directory (default ../vectors)
//
// Configs are resolved from absolute paths, as the Rust vector test loads them
// (`root().join(config)`), so source names in reasons and policy ids agree byte for byte.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const bin = resolve(process.env.AGENTGATE_BIN ?? join(root, 'target', 'release', 'agentgate'));
const target = resolve(process.env.AGENTGATE_JS_BUILD ?? join(here, 'build'));
// Built beside the target and moved into place at the end: a failed run leaves the last good build.
const out = `${target}.partial`;
const vectors = resolve(process.env.AGENTGATE_VECTORS ?? join(here, '..', 'vectors'));
const jcoBin = join(here, 'node_modules', '@bytecodealliance', 'jco', 'dist', 'jco.js');

/** Configs every run prepares besides those the vectors name (the edge worker and bench use the demo). */
const EXTRA_CONFIGS = ['policies/mail/agentgate.toml', 'policies/home/agentgate.toml'];

/** Bundles (`agentgate bundle`): one per world, each with a demo configuration baked in. */
const BUNDLES = [
  { name: 'mail', config: 'policies/mail/agentgate.toml', world: 'gate', crypto: 'guest' },
  { name: 'home', config: 'policies/home/agentgate.toml', world: 'gate-accelerated', crypto: 'host' },
];

const WORLDS = [
  { world: 'gate', crypto: 'guest', built: 'agentgate_gate.wasm' },
  { world: 'gate-accelerated', crypto: 'host', built: 'agentgate_gate_accelerated.wasm' },
];

function run(cmd, args, options = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, ...options });
  } catch (e) {
    const detail = e.stderr?.toString().trim() || e.message;
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${detail}`);
  }
}

/** `gzip -9 -c FILE | wc -c` (node's zlib at level 9 when gzip(1) is missing: slightly larger). */
function gzip9(file, bytes) {
  try {
    return execFileSync('gzip', ['-9', '-c', file], { maxBuffer: 256 << 20 }).length;
  } catch {
    return gzipSync(bytes, { level: 9 }).length;
  }
}

const ms = (t0) => Math.round(Number(process.hrtime.bigint() - t0) / 1e6);
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

function main() {
  if (!existsSync(bin) && !process.env.AGENTGATE_COMPONENT_DIR) {
    throw new Error(`no agentgate binary at ${bin}: build it (cargo build --release -p agentgate) or set AGENTGATE_BIN`);
  }
  if (!existsSync(jcoBin)) throw new Error('jco is not installed: run `npm ci` in tests/js first');
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, 'components'), { recursive: true });
  mkdirSync(join(out, 'configs'), { recursive: true });

  const jcoVersion = JSON.parse(readFileSync(join(here, 'node_modules', '@bytecodealliance', 'jco', 'package.json'), 'utf8')).version;
  const shimVersion = JSON.parse(readFileSync(join(here, 'node_modules', '@bytecodealliance', 'preview2-shim', 'package.json'), 'utf8')).version;
  const manifest = { agentgate_bin: bin, jco: jcoVersion, preview2_shim: shimVersion, node: process.version, components: {}, bundles: {}, configs: {} };

  // 1. The components, exactly as the wasmtime host embeds them.
  for (const { world, crypto, built } of WORLDS) {
    const file = join(out, 'components', `${world}.wasm`);
    if (process.env.AGENTGATE_COMPONENT_DIR) {
      copyFileSync(join(process.env.AGENTGATE_COMPONENT_DIR, built), file);
    } else {
      run(bin, ['component', '--out', file, '--crypto', crypto]);
    }
    const bytes = readFileSync(file);

    // 2. Transpile: ES module + core wasm; `--instantiation async` so every verifier gets its own
    //    instance with its own imports (state store, crypto), from modules compiled once.
    const t0 = process.hrtime.bigint();
    run(process.execPath, [jcoBin, 'transpile', file, '--name', world, '--out-dir', join(out, world), '--instantiation', 'async', '--quiet']);
    const transpileMs = ms(t0);
    const core = readdirSync(join(out, world)).filter((f) => f.endsWith('.wasm'));
    const coreBytes = core.reduce((n, f) => n + readFileSync(join(out, world, f)).length, 0);
    const jsBytes = readFileSync(join(out, world, `${world}.js`)).length;
    manifest.components[world] = {
      bytes: bytes.length,
      gzip9_bytes: gzip9(file, bytes),
      sha256: sha256(bytes),
      transpile_ms: transpileMs,
      core_wasm_bytes: coreBytes,
      js_bytes: jsBytes,
    };
  }

  // 3. Every configuration the vectors name, resolved by the Rust loader.
  const names = new Set(EXTRA_CONFIGS);
  for (const f of readdirSync(vectors).filter((f) => f.endsWith('.json')).sort()) {
    names.add(JSON.parse(readFileSync(join(vectors, f), 'utf8')).config);
  }
  const index = {};
  for (const name of [...names].sort()) {
    const file = `${name.replace(/[^A-Za-z0-9_.-]+/g, '_')}.json`;
    const json = run(bin, ['resolve', '--config', join(root, name)]);
    JSON.parse(json); // must be JSON
    writeFileSync(join(out, 'configs', file), json);
    index[name] = file;
  }
  writeFileSync(join(out, 'configs', 'index.json'), `${JSON.stringify(index, null, 2)}\n`);
  manifest.configs = index;

  // 4. Bundles: the configuration baked into the component, which then needs no files beside it.
  //    Built from the same absolute paths as the resolved configs, so source names agree.
  //    Skipped with AGENTGATE_COMPONENT_DIR (no agentgate binary to bundle with).
  if (!process.env.AGENTGATE_COMPONENT_DIR) {
    mkdirSync(join(out, 'bundles'), { recursive: true });
    for (const { name, config, world, crypto } of BUNDLES) {
      const file = join(out, 'components', `bundle-${name}.wasm`);
      const t0 = process.hrtime.bigint();
      run(bin, ['bundle', '--config', join(root, config), '--out', file, '--crypto', crypto]);
      const bundleMs = ms(t0);
      const bytes = readFileSync(file);
      const t1 = process.hrtime.bigint();
      run(process.execPath, [jcoBin, 'transpile', file, '--name', world, '--out-dir', join(out, 'bundles', name, world), '--instantiation', 'async', '--quiet']);
      manifest.bundles[name] = {
        config,
        world,
        bytes: bytes.length,
        gzip9_bytes: gzip9(file, bytes),
        sha256: sha256(bytes),
        bundle_ms: bundleMs,
        transpile_ms: ms(t1),
      };
    }
  }
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  rmSync(target, { recursive: true, force: true });
  renameSync(out, target);

  for (const [world, c] of Object.entries(manifest.components)) {
    console.log(`${world}: ${c.bytes} bytes (gzip -9: ${c.gzip9_bytes}), transpiled in ${c.transpile_ms} ms by jco ${jcoVersion}`);
  }
  for (const [name, b] of Object.entries(manifest.bundles)) {
    console.log(`bundle ${name} (${b.config}, ${b.world}): ${b.bytes} bytes (gzip -9: ${b.gzip9_bytes}), bundled in ${b.bundle_ms} ms, transpiled in ${b.transpile_ms} ms`);
  }
  console.log(`${Object.keys(index).length} configs resolved into ${join(target, 'configs')}`);
}

try {
  main();
} catch (e) {
  rmSync(out, { recursive: true, force: true });
  console.error(`prepare: ${e.message}`);
  process.exit(1);
}
