// The JavaScript host itself: request/decision mapping, the replay store, the node:crypto ES256
// import, configuration errors, revocation updates, `preload`, and fail-closed behaviour when the
// host's own import fails. Run prepare.mjs first.

import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  createVerifier,
  loadComponent,
  MemoryReplayStore,
  nodeCrypto,
  RequestError,
  toCheckRequest,
  toDecisionJson,
  toWitConfig,
} from './host.mjs';
import { mintProof, mintToken, readJwk } from './mint.mjs';
import { buildDir, resolvedConfig } from './vectors.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const mailConfig = JSON.parse(resolvedConfig('policies/mail/agentgate.toml'));
const issuerKey = readJwk(join(root, 'policies/keys/issuer.TEST-ONLY.private.jwk.json'));
const agentKey = readJwk(join(root, 'policies/keys/agent.TEST-ONLY.private.jwk.json'));
const ORIGIN = 'https://mail.example.com';
const AGENT = 'spiffe://agents.example/mail-assistant';

/** A bound mail:read call for `user`'s mailbox, minted now with node:crypto. */
function boundCall({ user = 'alice', agents = [AGENT], scope = 'mail.read' } = {}) {
  const uri = `${ORIGIN}/mailboxes/${user}/messages`;
  const token = mintToken({ key: issuerKey, iss: 'https://auth.demo.agentgate.dev', sub: 'alice', aud: ORIGIN, agents, scope, bind: agentKey });
  const proof = mintProof({ key: agentKey, method: 'GET', uri, token });
  return {
    authorization: `DPoP ${token}`,
    dpop: proof,
    http: { method: 'GET', uri },
    action: 'mail:read',
    resource: { type: 'Mailbox', id: user },
    entities: [{ uid: { type: 'Mailbox', id: user }, attrs: { owner: { __entity: { type: 'User', id: user } } }, parents: [] }],
  };
}

describe('request and decision mapping (host/src/wire.rs)', () => {
  test('request JSON becomes the WIT check-request', () => {
    const r = toCheckRequest(
      JSON.stringify({
        authorization: 'DPoP a.b.c',
        dpop: 'd.e.f',
        agent_identity: 'g.h.i',
        http: { method: 'GET', uri: 'https://x/y' },
        action: 'mail:read',
        resource: { type: 'Mailbox', id: 'alice' },
        context: { n: 1 },
        entities: [],
        now: 1767225600,
      }),
    );
    assert.deepEqual(r, {
      credentials: { authorization: 'DPoP a.b.c', dpop: 'd.e.f', agentIdentity: 'g.h.i' },
      http: { method: 'GET', uri: 'https://x/y' },
      action: 'mail:read',
      resource: { typeName: 'Mailbox', id: 'alice' },
      contextJson: '{"n":1}',
      entitiesJson: '[]',
      now: 1767225600n,
    });
    const minimal = toCheckRequest({ action: 'a', resource: { type: 'T', id: 'i' } });
    assert.equal(minimal.now, undefined);
    assert.equal(minimal.http, undefined);
    assert.equal(toCheckRequest({ action: 'a', resource: { type: 'T', id: 'i' }, now: 5 }, 9).now, 9n);
  });

  test('malformed requests are refused as the Rust host refuses them', () => {
    const base = { action: 'a', resource: { type: 'T', id: 'i' } };
    assert.throws(() => toCheckRequest({ ...base, dpopp: 'x' }), RequestError);
    assert.throws(() => toCheckRequest({ ...base, context: [] }), RequestError);
    assert.throws(() => toCheckRequest({ ...base, entities: {} }), RequestError);
    assert.throws(() => toCheckRequest({ resource: base.resource }), RequestError);
    assert.throws(() => toCheckRequest('{'), RequestError);
  });

  test('WIT decisions become the decision JSON, outcome in snake_case', () => {
    const d = toDecisionJson({
      allowed: false,
      outcome: 'use-dpop-nonce',
      reason: 'r',
      determiningPolicies: [],
      policyErrors: ['e'],
      principal: undefined,
      onBehalfOf: 'alice',
      chain: ['a'],
      tokenId: 't',
      keyThumbprint: undefined,
      dpopNonce: 'n',
    });
    assert.deepEqual(d, { decision: 'deny', outcome: 'use_dpop_nonce', reason: 'r', policies: [], errors: ['e'], principal: null, user: 'alice', chain: ['a'], token_id: 't', dpop_nonce: 'n' });
    assert.deepEqual(Object.keys(d), ['decision', 'outcome', 'reason', 'policies', 'errors', 'principal', 'user', 'chain', 'token_id', 'dpop_nonce']);
  });

  test('the resolved config becomes the WIT config record', () => {
    const c = toWitConfig(mailConfig);
    assert.deepEqual(Object.keys(c), ['policies', 'schema', 'settingsJson', 'trustJson', 'revocationsJson']);
    assert.ok(c.policies.length >= 2 && c.settingsJson.includes('audiences'));
  });
});

describe('replay store (host/src/replay.rs)', () => {
  test('a second use is a replay until expiry', () => {
    const store = new MemoryReplayStore();
    assert.ok(store.rememberAt('a', 110, 100));
    assert.ok(!store.rememberAt('a', 110, 105));
    assert.ok(store.rememberAt('a', 200, 110), 'expired keys may be used again');
    assert.ok(store.rememberAt('b', 110, 100));
  });

  test('a full store fails closed', () => {
    const store = new MemoryReplayStore({ capacity: 16 });
    const accepted = Array.from({ length: 100 }, (_, i) => store.rememberAt(`k${i}`, 1000, 100)).filter(Boolean).length;
    assert.equal(accepted, 16);
    assert.ok(store.rememberAt('late', 2000, 1000), 'expired keys are swept to make room');
  });

  test('an injected past clock keeps a key as long as it says', () => {
    const store = new MemoryReplayStore({ clock: () => 2_000_000_000 });
    assert.ok(store.remember('k', 1767225660n), 'first use, although the wall clock is past its expiry');
    assert.ok(!store.remember('k', 1767225660n), 'second use is a replay');
  });
});

describe('node:crypto ES256 (the crypto import)', async () => {
  const crypto = await nodeCrypto();
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const point = new Uint8Array([4, ...Buffer.from(jwk.x, 'base64url'), ...Buffer.from(jwk.y, 'base64url')]);
  const message = new TextEncoder().encode('header.payload');
  const signature = new Uint8Array(sign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' }));

  test('verifies a valid signature and rejects a wrong one', () => {
    assert.equal(crypto.verifyEs256(point, message, signature), true);
    const bad = signature.slice();
    bad[10] ^= 1;
    assert.equal(crypto.verifyEs256(point, message, bad), false);
    assert.equal(crypto.verifyEs256(point, new TextEncoder().encode('other'), signature), false);
  });

  test('false, never a throw, on malformed input', () => {
    assert.equal(crypto.verifyEs256(point.slice(0, 64), message, signature), false);
    assert.equal(crypto.verifyEs256(point, message, signature.slice(0, 63)), false);
    const offCurve = point.slice();
    offCurve[64] ^= 1;
    assert.equal(crypto.verifyEs256(offCurve, message, signature), false);
    assert.equal(crypto.verifyEs256(new Uint8Array(65), message, signature), false);
    assert.equal(crypto.verifyEs256(point, message, new Uint8Array(64)), false, 'r = s = 0');
    assert.equal(crypto.verifyEs256(point, message, new Uint8Array(64).fill(0xff)), false, 'r, s >= n');
  });
});

describe('verifier lifecycle', () => {
  test('the accelerated world verifies every signature through the crypto import', async () => {
    const inner = await nodeCrypto();
    let calls = 0;
    const counting = { verifyEs256: (...a) => (calls++, inner.verifyEs256(...a)) };
    const verifier = await createVerifier(mailConfig, { component: buildDir, world: 'gate-accelerated', crypto: counting });
    const d = verifier.check(boundCall());
    assert.equal(d.outcome, 'allowed', d.reason);
    assert.equal(calls, 2, 'the token and the proof');
    const refusing = await createVerifier(mailConfig, { component: buildDir, world: 'gate-accelerated', crypto: { verifyEs256: () => false } });
    assert.equal(refusing.check(boundCall()).outcome, 'invalid_token');
  });

  test('an import that throws is an engine_error deny, and the next call gets a fresh instance', async () => {
    let fail = true;
    const inner = await nodeCrypto();
    const flaky = {
      verifyEs256: (...a) => {
        if (fail) throw new Error('boom');
        return inner.verifyEs256(...a);
      },
    };
    const verifier = await createVerifier(mailConfig, { component: buildDir, world: 'gate-accelerated', crypto: flaky });
    verifier.setRevocations({ users: ['mallory'] });
    const d = verifier.check(boundCall());
    assert.equal(d.decision, 'deny');
    assert.equal(d.outcome, 'engine_error');
    fail = false;
    await verifier.ready();
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
    // The revocation list set before the failure is in force in the new instance.
    const mallory = mintToken({ key: issuerKey, iss: 'https://auth.demo.agentgate.dev', sub: 'mallory', aud: ORIGIN, agents: [AGENT], scope: 'mail.read', bind: agentKey });
    const uri = `${ORIGIN}/mailboxes/mallory/messages`;
    const call = { ...boundCall({ user: 'mallory' }), authorization: `DPoP ${mallory}`, dpop: mintProof({ key: agentKey, uri, token: mallory }) };
    assert.equal(verifier.check(call).outcome, 'revoked');
  });

  test('a replay store shared by two verifiers sees a proof once', async () => {
    const replay = new MemoryReplayStore();
    const a = await createVerifier(mailConfig, { component: buildDir, replay });
    const b = await createVerifier(mailConfig, { component: buildDir, world: 'gate-accelerated', replay });
    const call = boundCall();
    assert.equal(a.check(call).outcome, 'allowed');
    assert.equal(b.check(call).outcome, 'replayed');
    assert.equal(replay.size, 1);
  });

  test('set-revocations applies at once; a broken list keeps the previous one', async () => {
    const verifier = await createVerifier(mailConfig, { component: buildDir });
    assert.equal(verifier.setRevocations({ agents: [AGENT] }), 1);
    assert.equal(verifier.check(boundCall()).outcome, 'revoked');
    assert.throws(() => verifier.setRevocations('{"agentz": []}'), ConfigError);
    assert.equal(verifier.check(boundCall()).outcome, 'revoked');
    assert.equal(verifier.setRevocations('{}'), 0);
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
  });

  test('an unusable configuration is a ConfigError naming the file and line', async () => {
    const broken = structuredClone(mailConfig);
    broken.policies[0].text += '\npermit (principal, action == Action::"mail:nosuch", resource);\n';
    await assert.rejects(createVerifier(broken, { component: buildDir }), (e) => e instanceof ConfigError && e.message.includes(broken.policies[0].name));
  });

  test('preload + verifier.preloaded decide like create', async () => {
    const verifier = await createVerifier(mailConfig, { component: buildDir, preloaded: true });
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
    assert.equal(verifier.check(boundCall({ user: 'bob' })).outcome, 'policy_denied');
  });

  test('warm-up, then a delegation chain of two', async () => {
    const verifier = await createVerifier(mailConfig, { component: buildDir, warmUp: true });
    const d = verifier.check(boundCall({ agents: ['spiffe://agents.example/summarizer', AGENT] }));
    assert.equal(d.outcome, 'allowed', d.reason);
    assert.deepEqual(d.chain, ['spiffe://agents.example/summarizer', AGENT]);
  });

  test('a bundler-style component (instantiate + ready WebAssembly.Modules) works', async () => {
    const dir = new URL('gate/', buildDir);
    const { instantiate } = await import(new URL('gate.js', dir).href);
    const modules = {};
    for (const name of readdirSync(dir).filter((f) => f.endsWith('.wasm'))) {
      modules[name] = new WebAssembly.Module(readFileSync(new URL(name, dir)));
    }
    const component = await loadComponent('gate', { instantiate, getCoreModule: (n) => modules[n] });
    const verifier = await createVerifier(mailConfig, { component });
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
  });

  test('a component is compiled once and instantiated per verifier', async () => {
    const component = await loadComponent('gate', buildDir);
    const t0 = performance.now();
    const verifiers = await Promise.all([1, 2, 3].map(() => createVerifier(mailConfig, { component })));
    assert.equal(verifiers.length, 3);
    assert.ok(performance.now() - t0 < 30_000);
  });
});
