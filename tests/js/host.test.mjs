// The JavaScript host itself: request/decision mapping, the state store, the node:crypto ES256
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
  canonicalId,
  MemoryState,
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

describe('state store (guest/src/state/proof_memory.rs)', () => {
  const use = (key, jti, ttl = 60) => ({ keyThumbprint: key, jtiHash: jti, ttlSecs: ttl });
  const fakeClock = () => {
    const clock = () => clock.ms;
    clock.ms = 1_000;
    return clock;
  };

  test('a second use is a replay until its window ends', () => {
    const clock = fakeClock();
    const store = new MemoryState({ clock });
    assert.deepEqual(store.rememberProof(use('k', 'a', 10)), { tag: 'fresh' });
    clock.ms += 5_000;
    assert.deepEqual(store.rememberProof(use('k', 'a', 10)), { tag: 'replayed' });
    assert.deepEqual(store.rememberProof(use('other-key', 'a', 10)), { tag: 'fresh' }, 'ids are per key');
    clock.ms += 6_000;
    assert.deepEqual(store.rememberProof(use('k', 'a', 10)), { tag: 'fresh' }, 'an expired id may be used again');
    assert.equal(store.size, 2);
  });

  test('lifetimes are relative: a ttl of 0 still holds the proof for a second', () => {
    const clock = fakeClock();
    const store = new MemoryState({ clock });
    assert.deepEqual(store.rememberProof(use('k', 'a', 0)), { tag: 'fresh' });
    clock.ms += 999;
    assert.deepEqual(store.rememberProof(use('k', 'a', 0)), { tag: 'replayed' });
    clock.ms += 1;
    assert.deepEqual(store.rememberProof(use('k', 'a', 0)), { tag: 'fresh' });
  });

  test('one key cannot fill the store for everyone: key-limit', () => {
    const clock = fakeClock();
    const store = new MemoryState({ capacity: 1000, perKey: 50, clock });
    const flood = Array.from({ length: 100 }, (_, i) => store.rememberProof(use('mallory', `j${i}`)));
    assert.equal(flood.filter((a) => a.tag === 'fresh').length, 50);
    assert.deepEqual(flood.at(-1), { tag: 'key-limit', val: 50 });
    assert.deepEqual(store.rememberProof(use('alice', 'j0')), { tag: 'fresh' }, 'other keys are untouched');
    clock.ms += 61_000;
    assert.deepEqual(store.rememberProof(use('mallory', 'late')), { tag: 'fresh' }, 'once its proofs expire, the key may go on');
    assert.equal(store.size, 2, 'the expired proofs were dropped');
  });

  test('a full store is unavailable, never replayed', () => {
    const clock = fakeClock();
    const store = new MemoryState({ capacity: 16, perKey: 1, clock });
    const answers = Array.from({ length: 200 }, (_, i) => store.rememberProof(use(`key${i}`, 'j')));
    assert.equal(answers.filter((a) => a.tag === 'fresh').length, 16);
    assert.deepEqual(answers.at(-1), { tag: 'unavailable', val: 'the in-memory replay store is full (16 live proofs)' });
    assert.ok(!answers.some((a) => a.tag === 'replayed'));
    assert.equal(store.size, 16);
    clock.ms += 61_000;
    assert.deepEqual(store.rememberProof(use('newcomer', 'j')), { tag: 'fresh' }, 'room again once entries expire');
    assert.equal(store.size, 1, 'the expired proofs were swept');
  });

  test('revocations: clear by default; else the index of the first listed id', () => {
    const ids = [canonicalId(['jti', 't1']), canonicalId(['agent', AGENT]), canonicalId(['issuer-kid', 'https://as', 'k1'])];
    assert.equal(ids[1], '["agent","spiffe://agents.example/mail-assistant"]');
    assert.deepEqual(new MemoryState().checkRevoked(ids, 0n), { tag: 'clear' });
    const store = new MemoryState({ revoked: [['issuer-kid', 'https://as', 'k1'], '["agent","spiffe://agents.example/mail-assistant"]'] });
    assert.deepEqual(store.checkRevoked(ids, 0n), { tag: 'revoked', val: 1 });
    store.revoked.delete(ids[1]);
    assert.deepEqual(store.checkRevoked(ids, 0n), { tag: 'revoked', val: 2 });
  });

  test('status lists: unavailable unless configured', () => {
    const store = new MemoryState({ statusLists: { 'https://as/status/1': 'a.b.c' } });
    assert.equal(store.statusList('https://as/status/2', undefined).tag, 'unavailable');
    assert.deepEqual(store.statusList('https://as/status/1', 'digest'), { tag: 'current', val: 'a.b.c' });
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

  test('a state store shared by two verifiers sees a proof once', async () => {
    const state = new MemoryState();
    const a = await createVerifier(mailConfig, { component: buildDir, state });
    const b = await createVerifier(mailConfig, { component: buildDir, world: 'gate-accelerated', state });
    const call = boundCall();
    assert.equal(a.check(call).outcome, 'allowed');
    const again = b.check(call);
    assert.equal(again.outcome, 'replayed');
    assert.equal(again.reason, 'DPoP proof `jti` was already used');
    assert.equal(state.size, 1);
  });

  test('a per-key bound of one: the key\'s second proof is rate_limited, other keys go on', async () => {
    const state = new MemoryState({ perKey: 1 });
    const verifier = await createVerifier(mailConfig, { component: buildDir, state });
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
    const second = verifier.check(boundCall());
    assert.equal(second.decision, 'deny');
    assert.equal(second.outcome, 'rate_limited');
    assert.match(second.reason, /already has 1 live proofs, the most one key may have/);
  });

  test('a store that cannot answer fails the call closed: unavailable', async () => {
    const down = { tag: 'unavailable', val: 'the store did not answer within 50 ms' };
    const state = { rememberProof: () => down, checkRevoked: () => down, statusList: () => down };
    const verifier = await createVerifier(mailConfig, { component: buildDir, state });
    const d = verifier.check(boundCall());
    assert.equal(d.decision, 'deny');
    assert.equal(d.outcome, 'unavailable');
    assert.match(d.reason, /could not be consulted: the store did not answer within 50 ms/);
  });

  test('the host\'s revocation list: a canonical id revokes; the component\'s own list still applies', async () => {
    const state = new MemoryState({ revoked: [['agent', AGENT]] });
    const verifier = await createVerifier(mailConfig, { component: buildDir, state });
    assert.equal(verifier.check(boundCall()).outcome, 'revoked');
    state.revoked.clear();
    assert.equal(verifier.check(boundCall()).outcome, 'allowed');
    verifier.setRevocations({ agents: [AGENT] });
    assert.equal(verifier.check(boundCall()).outcome, 'revoked');
  });

  test('the 0.1.0 `replay` option is refused, not ignored', async () => {
    await assert.rejects(createVerifier(mailConfig, { component: buildDir, replay: {} }), TypeError);
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
