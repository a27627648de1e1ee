// agentgate at the edge: a fetch handler in the shape Cloudflare Workers, Deno and Bun use
// (`export default { async fetch(request, env) }`) that decides every incoming call with the
// decision component and forwards allowed calls to the origin.
//
//   client ──► edge worker ──(check: token, DPoP proof, identity, Cedar)──► upstream (env.UPSTREAM)
//                         ◄── 401 / 403 / 400 with RFC 6750 / 9449 headers; 429 / 503 with Retry-After
//
// env:
//   UPSTREAM           origin base URL, e.g. https://mail-backend.internal
//   AGENTGATE_CONFIG   the resolved configuration (`agentgate resolve --config FILE`), object or JSON
//   AGENTGATE_WORLD    'gate' (default) or 'gate-accelerated' (ES256 via the runtime's crypto)
//   AGENTGATE_COMPONENT  a loaded component (`loadComponent`; a bundler's imports) or a build dir
//   AGENTGATE_STATE    the `state` import (default: a MemoryState in this isolate). Its methods
//                      may answer with Promises (a Durable Object): the gate calls checkAsync
//   AGENTGATE_VERIFIER a ready verifier (createVerifier), instead of the four above
//   UPSTREAM_FETCH     the fetch used for the origin (default: global fetch); tests pass a stub
//   AGENTGATE_LOG      a function receiving one structured log record per call (default
//                      console.log); never given a credential
//
// Bundled for a Worker, the component comes from the bundler's module imports rather than disk
// (runtimes such as Cloudflare's refuse to compile wasm bytes at run time):
//
//   import { instantiate } from './build/gate/gate.js';
//   import core from './build/gate/gate.core.wasm';      // a WebAssembly.Module
//   import core2 from './build/gate/gate.core2.wasm';
//   import core3 from './build/gate/gate.core3.wasm';
//   const modules = { 'gate.core.wasm': core, 'gate.core2.wasm': core2, 'gate.core3.wasm': core3 };
//   const component = await loadComponent('gate', { instantiate, getCoreModule: (n) => modules[n] });
//   // then env.AGENTGATE_COMPONENT = component, or createVerifier(config, { component }) yourself
//
// By default the state store is this isolate's memory: a proof is accepted once per isolate. A
// deployment with many isolates passes a shared store as AGENTGATE_STATE; its answers may be
// Promises, since the gate decides with `checkAsync` (see tests/js/README.md).

import { createVerifier, MemoryState, RequestError } from './host.mjs';

/**
 * Routes: `METHOD /path/:param/...` → what to ask the verifier. The handler gets the path
 * parameters and returns the action, the resource and the Cedar entities the policies need (here
 * the mailbox and its owner: in a real service, looked up from the service's own data).
 */
export const ROUTES = {
  'GET /mailboxes/:id/messages': ({ id }) => ({
    action: 'mail:read',
    resource: { type: 'Mailbox', id },
    entities: [mailbox(id)],
  }),
  'POST /mailboxes/:id/messages': ({ id }) => ({
    action: 'mail:send',
    resource: { type: 'Mailbox', id },
    entities: [mailbox(id)],
  }),
};

function mailbox(id) {
  return { uid: { type: 'Mailbox', id }, attrs: { owner: { __entity: { type: 'User', id } } }, parents: [] };
}

/** Compiles a route table into matchers. */
export function compileRoutes(routes) {
  return Object.entries(routes).map(([pattern, handler]) => {
    const [method, path] = pattern.split(' ');
    const parts = path.split('/');
    return { method, parts, handler };
  });
}

/** The route for `method` and `pathname`, with its parameters, or null. */
export function matchRoute(compiled, method, pathname) {
  const segments = pathname.split('/');
  for (const route of compiled) {
    if (route.method !== method || route.parts.length !== segments.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < segments.length && ok; i++) {
      const want = route.parts[i];
      if (want.startsWith(':')) {
        let value;
        try {
          value = decodeURIComponent(segments[i]);
        } catch {
          ok = false;
          break;
        }
        if (value === '') ok = false;
        params[want.slice(1)] = value;
      } else if (want !== segments[i]) {
        ok = false;
      }
    }
    if (ok) return { route, params };
  }
  return null;
}

/** The RFC 9449 `error` code of a denied outcome that is answered 401. */
const CHALLENGE = {
  invalid_token: 'invalid_token',
  revoked: 'invalid_token',
  invalid_dpop_proof: 'invalid_dpop_proof',
  replayed: 'invalid_dpop_proof',
  use_dpop_nonce: 'use_dpop_nonce',
};

/**
 * The HTTP status for a decision's outcome: guest/src/http_answer.rs `status` for the Standard
 * dialect (a Worker answers the client itself; no proxy turns its 5xx into an allow).
 */
export function statusFor(outcome) {
  if (outcome === 'allowed') return 200;
  if (outcome in CHALLENGE) return 401;
  if (outcome === 'invalid_request') return 400;
  if (outcome === 'rate_limited') return 429; // the proof key is at the store's per-key bound
  if (outcome === 'unavailable') return 503; // the state store could not be consulted
  return 403; // policy_denied, engine_error (fail closed), anything unknown
}

/** `Retry-After` seconds for the statuses that invite a retry (http_answer.rs `retry_after`). */
export const retryAfter = (status) => (status === 429 || status === 503 ? 1 : null);

/** A value safe inside an HTTP quoted-string: printable ASCII, `"` and `\` escaped. */
export function quoted(text) {
  const printable = String(text).replace(/[^\x20-\x7e]/g, '?').slice(0, 512);
  return `"${printable.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Headers that only the gate may set upstream, and credentials that stop at the gate. */
const GATE_HEADERS = ['x-agentgate-agent', 'x-agentgate-user', 'x-agentgate-chain', 'x-agentgate-decision-id'];
const CREDENTIAL_HEADERS = ['authorization', 'dpop', 'workload-identity-token'];

function denial(decision, decisionId) {
  const status = decision.outcome === 'allowed' ? 403 : statusFor(decision.outcome);
  const headers = new Headers({ 'content-type': 'application/json', 'cache-control': 'no-store', 'x-agentgate-decision-id': decisionId });
  const error = CHALLENGE[decision.outcome] ?? (status === 400 ? 'invalid_request' : status === 403 ? 'insufficient_scope' : decision.outcome);
  if (retryAfter(status) !== null) headers.set('retry-after', String(retryAfter(status)));
  if (status === 401) {
    headers.set('www-authenticate', `DPoP error=${quoted(error)}, error_description=${quoted(decision.reason)}, algs="ES256"`);
    if (decision.dpop_nonce) headers.set('dpop-nonce', decision.dpop_nonce);
  }
  const body = { error: status === 403 ? 'forbidden' : error, outcome: decision.outcome, error_description: decision.reason, decision_id: decisionId };
  return new Response(JSON.stringify(body), { status, headers });
}

function plain(status, error, description, decisionId) {
  return new Response(JSON.stringify({ error, error_description: description, decision_id: decisionId }), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-agentgate-decision-id': decisionId },
  });
}

/**
 * A gate: `fetch(request)` decides and forwards. `verifier` is a createVerifier result; `upstream`
 * the origin base URL; `upstreamFetch` the fetch to reach it.
 */
export function createGate({ verifier, routes = ROUTES, upstream, upstreamFetch = (...a) => fetch(...a), log = (r) => console.log(JSON.stringify(r)) }) {
  const compiled = compileRoutes(routes);
  const upstreamBase = new URL(upstream);
  return {
    async fetch(request) {
      const decisionId = crypto.randomUUID();
      const url = new URL(request.url);
      const record = { decision_id: decisionId, method: request.method, path: url.pathname };
      const matched = matchRoute(compiled, request.method, url.pathname);
      if (!matched) {
        log({ ...record, status: 404 });
        return plain(404, 'not_found', 'no route', decisionId);
      }
      const target = matched.route.handler(matched.params, request);
      const headers = request.headers;
      const checkRequest = {
        authorization: headers.get('authorization') ?? undefined,
        dpop: headers.get('dpop') ?? undefined,
        agent_identity: headers.get('workload-identity-token') ?? undefined,
        // The URL the client addressed (the proof's `htu`). Behind a proxy that rewrites the host,
        // rebuild it from the public origin instead.
        http: { method: request.method, uri: request.url },
        ...target,
      };
      let decision;
      try {
        decision = await verifier.checkAsync(checkRequest);
      } catch (e) {
        if (!(e instanceof RequestError)) throw e;
        log({ ...record, status: 400, outcome: 'invalid_request' });
        return plain(400, 'invalid_request', 'malformed request', decisionId);
      }
      // Forward only an explicit allow; anything else (including an unknown shape) is a denial.
      const allowed = decision.decision === 'allow' && decision.outcome === 'allowed';
      const status = statusFor(decision.outcome);
      // Credentials never reach the log: only the decision's own fields (its reason quotes no
      // token, proof or signature, by the component's contract).
      log({
        ...record,
        status: allowed ? 'forwarded' : status,
        outcome: decision.outcome,
        reason: decision.reason,
        principal: decision.principal,
        user: decision.user,
        chain: decision.chain,
        token_id: decision.token_id,
        policies: decision.policies,
      });
      if (!allowed) return denial(decision, decisionId);

      const forward = new Headers(request.headers);
      for (const h of [...CREDENTIAL_HEADERS, ...GATE_HEADERS]) forward.delete(h);
      if (decision.chain.length > 0) forward.set('x-agentgate-agent', decision.chain[0]);
      if (decision.user != null) forward.set('x-agentgate-user', decision.user);
      forward.set('x-agentgate-chain', decision.chain.join(','));
      forward.set('x-agentgate-decision-id', decisionId);
      const init = { method: request.method, headers: forward, redirect: 'manual' };
      if (request.method !== 'GET' && request.method !== 'HEAD' && request.body) {
        init.body = request.body;
        init.duplex = 'half';
      }
      return upstreamFetch(new URL(`${url.pathname}${url.search}`, upstreamBase), init);
    },
  };
}

// One gate per env object (an isolate keeps it for every request); its default state store lives
// as long.
const gates = new WeakMap();

async function gateFor(env) {
  let gate = gates.get(env);
  if (!gate) {
    gate = (async () => {
      const verifier =
        env.AGENTGATE_VERIFIER ??
        (await createVerifier(env.AGENTGATE_CONFIG, {
          world: env.AGENTGATE_WORLD ?? 'gate',
          component: env.AGENTGATE_COMPONENT,
          state: env.AGENTGATE_STATE ?? new MemoryState(),
          warmUp: true,
        }));
      return createGate({ verifier, upstream: env.UPSTREAM, upstreamFetch: env.UPSTREAM_FETCH, log: env.AGENTGATE_LOG });
    })();
    gate.catch(() => gates.delete(env)); // a failed start is retried on the next request
    gates.set(env, gate);
  }
  return gate;
}

export default {
  async fetch(request, env) {
    let gate;
    try {
      gate = await gateFor(env);
    } catch (e) {
      // Unusable configuration: fail closed, and say why only in the log.
      (env.AGENTGATE_LOG ?? console.error)({ error: 'agentgate could not start', detail: String(e?.message ?? e) });
      return plain(503, 'unavailable', 'authorization is unavailable', crypto.randomUUID());
    }
    return gate.fetch(request);
  },
};
