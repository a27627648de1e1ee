// `checkAsync` with a `state` store that answers with Promises, as a Worker's Durable Object, KV
// or Redis over fetch would: one proof sent twice at once is allowed once, a question the
// component would not have asked is never sent, a failing store is `unavailable`. (Every vector
// also runs through checkAsync in vectors.test.mjs.) Run prepare.mjs first.

import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createVerifier, MemoryState } from './host.mjs';
import { mintProof, mintToken, readJwk } from './mint.mjs';
import { behindNetwork as remote, buildDir, resolvedConfig } from './vectors.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('checkAsync', () => {
  const config = JSON.parse(resolvedConfig('policies/mail/agentgate.toml'));
  const issuerKey = readJwk(join(root, 'policies/keys/issuer.TEST-ONLY.private.jwk.json'));
  const agentKey = readJwk(join(root, 'policies/keys/agent.TEST-ONLY.private.jwk.json'));
  const AGENT = 'spiffe://agents.example/mail-assistant';
  const uri = 'https://mail.example.com/mailboxes/alice/messages';
  const boundCall = () => {
    const token = mintToken({ key: issuerKey, iss: 'https://auth.demo.agentgate.dev', sub: 'alice', aud: 'https://mail.example.com', agents: [AGENT], scope: 'mail.read', bind: agentKey });
    return {
      authorization: `DPoP ${token}`,
      dpop: mintProof({ key: agentKey, method: 'GET', uri, token }),
      http: { method: 'GET', uri },
      action: 'mail:read',
      resource: { type: 'Mailbox', id: 'alice' },
      entities: [{ uid: { type: 'Mailbox', id: 'alice' }, attrs: { owner: { __entity: { type: 'User', id: 'alice' } } }, parents: [] }],
    };
  };

  test('an allowed call asks each question once, in the engine\'s order', async () => {
    const state = remote(new MemoryState());
    const verifier = await createVerifier(config, { component: buildDir, state });
    assert.equal((await verifier.checkAsync(boundCall())).outcome, 'allowed');
    assert.deepEqual(state.asked, ['checkRevoked', 'rememberProof']);
  });

  test('one proof sent twice at once, to two verifiers sharing the store: allowed once', async () => {
    const memory = new MemoryState();
    const state = remote(memory);
    const a = await createVerifier(config, { component: buildDir, state });
    const b = await createVerifier(config, { component: buildDir, world: 'gate-accelerated', state });
    const call = boundCall();
    const outcomes = (await Promise.all([a.checkAsync(call), b.checkAsync(call)])).map((d) => d.outcome);
    assert.deepEqual(outcomes.sort(), ['allowed', 'replayed']);
    assert.equal(memory.size, 1);
  });

  test('revoked by the store: the call runs again, and the proof is never sent', async () => {
    const state = remote(new MemoryState({ revoked: [['agent', AGENT]] }));
    const verifier = await createVerifier(config, { component: buildDir, state });
    const d = await verifier.checkAsync(boundCall());
    assert.equal(d.outcome, 'revoked');
    assert.match(d.reason, /agent `spiffe:\/\/agents\.example\/mail-assistant` is revoked/);
    assert.deepEqual(state.asked, ['checkRevoked']);
  });

  test('a per-key bound of one: the second proof is rate_limited', async () => {
    const verifier = await createVerifier(config, { component: buildDir, state: remote(new MemoryState({ perKey: 1 })) });
    assert.equal((await verifier.checkAsync(boundCall())).outcome, 'allowed');
    assert.equal((await verifier.checkAsync(boundCall())).outcome, 'rate_limited');
  });

  test('a rejected answer is unavailable, never allowed', async () => {
    const verifier = await createVerifier(config, { component: buildDir, state: remote(new MemoryState(), { fail: 'connection reset' }) });
    const d = await verifier.checkAsync(boundCall());
    assert.equal(d.outcome, 'unavailable');
    assert.match(d.reason, /could not be consulted: the state store failed: connection reset/);
  });

  test('a plain check cannot wait: an asynchronous store is unavailable there', async () => {
    const verifier = await createVerifier(config, { component: buildDir, state: remote(new MemoryState()) });
    const d = verifier.check(boundCall());
    assert.equal(d.outcome, 'unavailable');
    assert.match(d.reason, /call checkAsync/);
  });

  test('a synchronous store through checkAsync: one run, the same decision as check', async () => {
    const memory = new MemoryState();
    const verifier = await createVerifier(config, { component: buildDir, state: memory });
    const call = boundCall();
    assert.equal((await verifier.checkAsync(call)).outcome, 'allowed');
    assert.equal(verifier.check(call).outcome, 'replayed');
    assert.equal(memory.size, 1);
  });
});
