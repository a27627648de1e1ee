// The edge worker driven with real `Request` objects, and tokens and proofs minted now with the
// `agentgate mint` CLI (AGENTGATE_BIN, default ../../target/release/agentgate), plus one proof
// minted with node:crypto. The upstream is a stub fetch passed through env. Run prepare.mjs first.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import worker, { createGate, quoted, retryAfter, statusFor } from './edge-worker.mjs';
import { createVerifier, MemoryState } from './host.mjs';
import { mintProof, readJwk } from './mint.mjs';
import { buildDir, resolvedConfig as config } from './vectors.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const bin = resolve(process.env.AGENTGATE_BIN ?? join(root, 'target', 'release', 'agentgate'));
const keys = join(root, 'policies', 'keys');
const ISSUER_KEY = join(keys, 'issuer.TEST-ONLY.private.jwk.json');
const AGENT_KEY = join(keys, 'agent.TEST-ONLY.private.jwk.json');
const ORIGIN = 'https://mail.example.com';
const AGENT = 'spiffe://agents.example/mail-assistant';


const mint = (...args) => execFileSync(bin, ['mint', ...args], { encoding: 'utf8' }).trim();
function mintToken({ sub = 'alice', agent = AGENT, scope = 'mail.read' } = {}) {
  return mint('token', '--key', ISSUER_KEY, '--iss', 'https://auth.demo.agentgate.dev', '--sub', sub, '--aud', ORIGIN, '--agent', agent, '--scope', scope, '--bind', AGENT_KEY);
}
function mintProofCli({ token, uri, method = 'GET', nonce }) {
  const args = ['proof', '--key', AGENT_KEY, '--method', method, '--uri', uri, '--token', token];
  if (nonce) args.push('--nonce', nonce);
  return mint(...args);
}

/** A stub origin: records what reached it and answers 200. */
function stubUpstream() {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: String(url), method: init.method, headers: Object.fromEntries(new Headers(init.headers)) });
    return new Response(JSON.stringify({ messages: [] }), { status: 200, headers: { 'content-type': 'application/json' } });
  };
  return { calls, fetch };
}

function call(path, { token, proof, method = 'GET', headers = {} } = {}) {
  const h = new Headers(headers);
  if (token) h.set('authorization', `DPoP ${token}`);
  if (proof) h.set('dpop', proof);
  return new Request(`${ORIGIN}${path}`, { method, headers: h });
}

function challenge(response) {
  const value = response.headers.get('www-authenticate') ?? '';
  return Object.fromEntries([...value.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
}

for (const world of ['gate', 'gate-accelerated']) {
  describe(`edge worker on ${world}`, () => {
    let upstream;
    let logs;
    let env;
    const secrets = [];

    before(async () => {
      upstream = stubUpstream();
      logs = [];
      // The default export, configured entirely through env, as a Worker would be.
      env = {
        UPSTREAM: 'https://mail-backend.internal',
        UPSTREAM_FETCH: upstream.fetch,
        AGENTGATE_CONFIG: config('policies/mail/agentgate.toml'),
        AGENTGATE_WORLD: world,
        AGENTGATE_COMPONENT: buildDir,
        AGENTGATE_LOG: (record) => logs.push(JSON.stringify(record)),
      };
    });

    const remember = (...values) => {
      secrets.push(...values);
      return values;
    };

    test('an allowed call reaches the upstream with the agent and user, without the credentials', async () => {
      const uri = '/mailboxes/alice/messages?limit=10';
      const token = mintToken();
      const proof = mintProofCli({ token, uri: `${ORIGIN}${uri}` });
      remember(token, proof);
      const response = await worker.fetch(call(uri, { token, proof, headers: { 'x-agentgate-user': 'mallory', 'accept': 'application/json' } }), env);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { messages: [] });
      assert.equal(upstream.calls.length, 1);
      const forwarded = upstream.calls[0];
      assert.equal(forwarded.url, 'https://mail-backend.internal/mailboxes/alice/messages?limit=10');
      assert.equal(forwarded.method, 'GET');
      assert.equal(forwarded.headers['x-agentgate-agent'], AGENT);
      assert.equal(forwarded.headers['x-agentgate-user'], 'alice', 'a client-sent X-Agentgate-User must not survive');
      assert.equal(forwarded.headers['x-agentgate-chain'], AGENT);
      assert.match(forwarded.headers['x-agentgate-decision-id'], /^[0-9a-f-]{36}$/);
      assert.equal(forwarded.headers.accept, 'application/json');
      for (const h of ['authorization', 'dpop', 'workload-identity-token']) assert.equal(forwarded.headers[h], undefined, `${h} forwarded`);
    });

    test('the same proof again is a replay: 401 invalid_dpop_proof', async () => {
      const uri = `${ORIGIN}/mailboxes/alice/messages`;
      const token = mintToken();
      const proof = mintProofCli({ token, uri });
      remember(token, proof);
      const before = upstream.calls.length;
      assert.equal((await worker.fetch(new Request(uri, { headers: { authorization: `DPoP ${token}`, dpop: proof } }), env)).status, 200);
      const again = await worker.fetch(new Request(uri, { headers: { authorization: `DPoP ${token}`, dpop: proof } }), env);
      assert.equal(again.status, 401);
      assert.equal(challenge(again).error, 'invalid_dpop_proof');
      assert.equal(challenge(again).algs, 'ES256');
      assert.equal((await again.json()).outcome, 'replayed');
      assert.equal(upstream.calls.length, before + 1);
    });

    test("bob's mailbox: valid credentials, denied by policy: 403", async () => {
      const path = '/mailboxes/bob/messages';
      const token = mintToken();
      const proof = mintProofCli({ token, uri: `${ORIGIN}${path}` });
      remember(token, proof);
      const response = await worker.fetch(call(path, { token, proof }), env);
      assert.equal(response.status, 403);
      assert.equal(response.headers.get('www-authenticate'), null);
      assert.equal((await response.json()).outcome, 'policy_denied');
    });

    test('a proof for another URL: 401 invalid_dpop_proof', async () => {
      const token = mintToken();
      const proof = mintProofCli({ token, uri: `${ORIGIN}/mailboxes/alice/drafts` });
      remember(token, proof);
      const response = await worker.fetch(call('/mailboxes/alice/messages', { token, proof }), env);
      assert.equal(response.status, 401);
      const c = challenge(response);
      assert.equal(c.error, 'invalid_dpop_proof');
      assert.match(c.error_description, /htu|URI|uri/);
    });

    test('a proof for another method: 401 invalid_dpop_proof', async () => {
      const token = mintToken({ scope: 'mail.read mail.send' });
      const path = '/mailboxes/alice/messages';
      const proof = mintProofCli({ token, uri: `${ORIGIN}${path}`, method: 'GET' });
      remember(token, proof);
      const response = await worker.fetch(call(path, { token, proof, method: 'POST' }), env);
      assert.equal(response.status, 401);
      assert.equal(challenge(response).error, 'invalid_dpop_proof');
    });

    test('a missing proof: 401', async () => {
      const token = mintToken();
      remember(token);
      const response = await worker.fetch(call('/mailboxes/alice/messages', { token }), env);
      assert.equal(response.status, 401);
      assert.equal(challenge(response).error, 'invalid_dpop_proof');
    });

    test('no credentials at all: 401 invalid_token', async () => {
      const response = await worker.fetch(call('/mailboxes/alice/messages'), env);
      assert.equal(response.status, 401);
      assert.equal(challenge(response).error, 'invalid_token');
    });

    test('a revoked agent: 401 invalid_token', async () => {
      const path = '/mailboxes/alice/messages';
      const token = mintToken({ agent: 'spiffe://agents.example/compromised-assistant' });
      const proof = mintProofCli({ token, uri: `${ORIGIN}${path}` });
      remember(token, proof);
      const response = await worker.fetch(call(path, { token, proof }), env);
      assert.equal(response.status, 401);
      assert.equal(challenge(response).error, 'invalid_token');
      assert.equal((await response.json()).outcome, 'revoked');
    });

    test('sending with a send-scoped token is forwarded as POST with its body', async () => {
      const path = '/mailboxes/alice/messages';
      const token = mintToken({ scope: 'mail.read mail.send' });
      const proof = mintProofCli({ token, uri: `${ORIGIN}${path}`, method: 'POST' });
      remember(token, proof);
      const request = new Request(`${ORIGIN}${path}`, { method: 'POST', body: '{"to":"bob"}', headers: { authorization: `DPoP ${token}`, dpop: proof, 'content-type': 'application/json' } });
      const response = await worker.fetch(request, env);
      assert.equal(response.status, 200);
      assert.equal(upstream.calls.at(-1).method, 'POST');
    });

    test('a proof minted with node:crypto (an independent JOSE implementation) is accepted', async () => {
      const path = '/mailboxes/alice/messages';
      const token = mintToken();
      const proof = mintProof({ key: readJwk(AGENT_KEY), method: 'GET', uri: `${ORIGIN}${path}`, token });
      remember(token, proof);
      assert.equal((await worker.fetch(call(path, { token, proof }), env)).status, 200);
    });

    test('an unknown route is 404 and never reaches the upstream', async () => {
      const before = upstream.calls.length;
      const response = await worker.fetch(call('/admin'), env);
      assert.equal(response.status, 404);
      assert.equal(upstream.calls.length, before);
    });

    test('two Authorization credentials: 400 invalid_request', async () => {
      const token = mintToken();
      remember(token);
      const headers = new Headers();
      headers.append('authorization', `DPoP ${token}`);
      headers.append('authorization', `Bearer ${token}`);
      const response = await worker.fetch(new Request(`${ORIGIN}/mailboxes/alice/messages`, { headers }), env);
      assert.equal(response.status, 400);
      assert.equal((await response.json()).outcome, 'invalid_request');
    });

    test('no credential appears in the log', () => {
      assert.ok(logs.length >= 10, `expected a log record per call, got ${logs.length}`);
      for (const line of logs) {
        for (const secret of secrets) {
          for (const part of secret.split('.')) assert.ok(!line.includes(part), `a credential part leaked into the log: ${line.slice(0, 200)}`);
        }
      }
    });
  });
}

describe('edge worker with DPoP server nonces', () => {
  test('use_dpop_nonce carries DPoP-Nonce; the retry with it is allowed', async () => {
    const upstream = stubUpstream();
    const verifier = await createVerifier(config('tests/configs/mail-nonce.toml'), { world: 'gate', component: buildDir });
    const gate = createGate({ verifier, upstream: 'https://mail-backend.internal', upstreamFetch: upstream.fetch, log: () => {} });
    const path = '/mailboxes/alice/messages';
    const token = mintToken();
    const first = await gate.fetch(call(path, { token, proof: mintProofCli({ token, uri: `${ORIGIN}${path}` }) }));
    assert.equal(first.status, 401);
    assert.equal(challenge(first).error, 'use_dpop_nonce');
    const nonce = first.headers.get('dpop-nonce');
    assert.ok(nonce, 'DPoP-Nonce header');
    const retry = await gate.fetch(call(path, { token, proof: mintProofCli({ token, uri: `${ORIGIN}${path}`, nonce }) }));
    assert.equal(retry.status, 200);
    assert.equal(upstream.calls.length, 1);
  });
});

describe('edge worker and the state store', () => {
  const path = '/mailboxes/alice/messages';
  const freshCall = (token = mintToken()) => call(path, { token, proof: mintProofCli({ token, uri: `${ORIGIN}${path}` }) });
  async function gateWith(state) {
    const upstream = stubUpstream();
    const verifier = await createVerifier(config('policies/mail/agentgate.toml'), { world: 'gate', component: buildDir, state });
    return { upstream, gate: createGate({ verifier, upstream: 'https://mail-backend.internal', upstreamFetch: upstream.fetch, log: () => {} }) };
  }

  test('a store that cannot answer: 503 with Retry-After: 1, and the upstream is never called', async () => {
    const down = () => ({ tag: 'unavailable', val: 'the store did not answer within 50 ms' });
    const { upstream, gate } = await gateWith({ rememberProof: down, checkRevoked: down, statusList: down });
    const response = await gate.fetch(freshCall());
    assert.equal(response.status, 503);
    assert.equal(response.headers.get('retry-after'), '1');
    assert.equal(response.headers.get('www-authenticate'), null);
    const body = await response.json();
    assert.equal(body.outcome, 'unavailable');
    assert.equal(body.error, 'unavailable');
    assert.match(body.error_description, /could not be consulted: the store did not answer within 50 ms/);
    assert.equal(upstream.calls.length, 0);
  });

  test('a per-key bound of one: the second proof of the key is 429 with Retry-After: 1', async () => {
    const { upstream, gate } = await gateWith(new MemoryState({ perKey: 1 }));
    assert.equal((await gate.fetch(freshCall())).status, 200);
    const second = await gate.fetch(freshCall());
    assert.equal(second.status, 429);
    assert.equal(second.headers.get('retry-after'), '1');
    assert.equal((await second.json()).outcome, 'rate_limited');
    assert.equal(upstream.calls.length, 1);
  });

  test('a store that answers with Promises (as a Durable Object): one proof sent twice at once is forwarded once', async () => {
    const memory = new MemoryState();
    const later = (answer) => new Promise((resolve) => setTimeout(() => resolve(answer()), 2));
    const durable = {
      rememberProof: (proof) => later(() => memory.rememberProof(proof)),
      checkRevoked: (ids, now) => later(() => memory.checkRevoked(ids, now)),
      statusList: (uri, digest) => later(() => memory.statusList(uri, digest)),
    };
    const { upstream, gate } = await gateWith(durable);
    const token = mintToken();
    const proof = mintProofCli({ token, uri: `${ORIGIN}${path}` });
    const answers = await Promise.all([gate.fetch(call(path, { token, proof })), gate.fetch(call(path, { token, proof }))]);
    assert.deepEqual(answers.map((r) => r.status).sort(), [200, 401]);
    assert.equal(upstream.calls.length, 1);
    assert.equal(memory.size, 1);
    memory.revoked.add('["agent","spiffe://agents.example/mail-assistant"]');
    const revoked = await gate.fetch(freshCall(token));
    assert.equal(revoked.status, 401);
    assert.equal((await revoked.json()).outcome, 'revoked');
    assert.equal(memory.size, 1, 'a revoked call never reaches the proof store');
  });

  test('AGENTGATE_STATE reaches the default export', async () => {
    const upstream = stubUpstream();
    const env = {
      UPSTREAM: 'https://mail-backend.internal',
      UPSTREAM_FETCH: upstream.fetch,
      AGENTGATE_CONFIG: config('policies/mail/agentgate.toml'),
      AGENTGATE_COMPONENT: buildDir,
      AGENTGATE_STATE: new MemoryState({ perKey: 1 }),
      AGENTGATE_LOG: () => {},
    };
    assert.equal((await worker.fetch(freshCall(), env)).status, 200);
    assert.equal((await worker.fetch(freshCall(), env)).status, 429);
  });
});

describe('edge worker with a required workload identity', () => {
  test('the Workload-Identity-Token header is checked', async () => {
    const upstream = stubUpstream();
    const verifier = await createVerifier(config('tests/configs/mail-identity.toml'), { world: 'gate', component: buildDir });
    const gate = createGate({ verifier, upstream: 'https://mail-backend.internal', upstreamFetch: upstream.fetch, log: () => {} });
    const path = '/mailboxes/alice/messages';
    const token = mintToken();
    const without = await gate.fetch(call(path, { token, proof: mintProofCli({ token, uri: `${ORIGIN}${path}` }) }));
    assert.equal(without.status, 401);
    assert.equal(challenge(without).error, 'invalid_token');
    const identity = mint('identity', '--domain-key', join(keys, 'trust-domain.TEST-ONLY.private.jwk.json'), '--spiffe-id', AGENT, '--agent-key', AGENT_KEY);
    const proof = mintProofCli({ token, uri: `${ORIGIN}${path}` });
    const ok = await gate.fetch(call(path, { token, proof, headers: { 'workload-identity-token': identity } }));
    assert.equal(ok.status, 200);
    assert.equal(upstream.calls[0].headers['workload-identity-token'], undefined);
  });
});

test('error descriptions are safe quoted-strings', () => {
  assert.equal(quoted('a "b" \\ c'), '"a \\"b\\" \\\\ c"');
  assert.equal(quoted('naïve\r\nx'), '"na?ve??x"');
});

test('statuses and Retry-After mirror guest/src/http_answer.rs (standard dialect)', () => {
  const expected = {
    allowed: 200,
    invalid_token: 401,
    invalid_dpop_proof: 401,
    use_dpop_nonce: 401,
    revoked: 401,
    replayed: 401,
    invalid_request: 400,
    rate_limited: 429,
    unavailable: 503,
    policy_denied: 403,
    engine_error: 403,
    something_new: 403,
  };
  for (const [outcome, status] of Object.entries(expected)) assert.equal(statusFor(outcome), status, outcome);
  assert.equal(retryAfter(429), 1);
  assert.equal(retryAfter(503), 1);
  for (const status of [200, 400, 401, 403]) assert.equal(retryAfter(status), null);
});
