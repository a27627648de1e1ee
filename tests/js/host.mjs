// agentgate's decision component in JavaScript: a host for the jco-transpiled component.
//
// The same component the wasmtime host embeds (`agentgate component --out FILE`), transpiled by
// `jco transpile --instantiation async` (see prepare.mjs), runs here unchanged. This file maps the
// request and decision JSON of `agentgate check` (host/src/wire.rs) to and from the WIT records,
// and provides the two host imports: `state` (proof uses, revocation lookups, status lists;
// MemoryState keeps them in memory as the Rust `ProofMemory` does) and, for the `gate-accelerated`
// world, `crypto` (ES256 with node:crypto). A store that answers with Promises (a Durable Object,
// KV, Redis over fetch) works through `checkAsync`.
//
//   import { createVerifier } from './host.mjs';
//   const verifier = await createVerifier(JSON.parse(resolvedConfigJson), { world: 'gate' });
//   const decision = verifier.check(requestJson);   // { decision: 'allow', outcome: 'allowed', ... }
//
// Only `createVerifier` loads node:fs (to read the transpiled files from disk); a bundled edge
// worker passes `component` (see loadComponent) and `wasi` instead and needs no Node built-in except
// node:crypto for the accelerated world.

/** The two worlds of wit/verifier.wit. */
export const WORLDS = Object.freeze(['gate', 'gate-accelerated']);

/** Directory of prepare.mjs's output (`build/gate/gate.js`, `build/gate-accelerated/...`). */
export const DEFAULT_BUILD_DIR = new URL('./build/', import.meta.url);

// ---------------------------------------------------------------------------------------------
// Request and decision JSON (host/src/wire.rs)
// ---------------------------------------------------------------------------------------------

const REQUEST_MEMBERS = new Set(['authorization', 'dpop', 'agent_identity', 'http', 'action', 'resource', 'context', 'entities', 'now']);

/** A malformed request document: the CLI exits 2 for these; the component never sees them. */
export class RequestError extends Error {
  constructor(message) {
    super(`malformed request: ${message}`);
    this.name = 'RequestError';
  }
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const optString = (doc, key) => {
  const v = doc[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new RequestError(`\`${key}\` must be a string`);
  return v;
};

/**
 * The WIT `check-request` for a request document (an object or its JSON text), as
 * `RequestJson::to_check_request`: `context` and `entities` travel as JSON text, `now` as a u64.
 * Unknown members are an error, as in the Rust host (a misspelt `dpop` must not silently vanish).
 */
export function toCheckRequest(request, now) {
  const doc = typeof request === 'string' ? parseJson(request) : request;
  if (!isObject(doc)) throw new RequestError('a request must be a JSON object');
  for (const key of Object.keys(doc)) {
    if (!REQUEST_MEMBERS.has(key)) throw new RequestError(`unknown field \`${key}\``);
  }
  if (typeof doc.action !== 'string') throw new RequestError('missing field `action`');
  const resource = doc.resource;
  if (!isObject(resource) || typeof resource.type !== 'string' || typeof resource.id !== 'string') {
    throw new RequestError('`resource` must be {"type": "...", "id": "..."}');
  }
  let http;
  if (doc.http !== undefined && doc.http !== null) {
    if (!isObject(doc.http) || typeof doc.http.method !== 'string' || typeof doc.http.uri !== 'string') {
      throw new RequestError('`http` must be {"method": "...", "uri": "..."}');
    }
    http = { method: doc.http.method, uri: doc.http.uri };
  }
  if (doc.context !== undefined && doc.context !== null && !isObject(doc.context)) {
    throw new RequestError('`context` must be a JSON object');
  }
  if (doc.entities !== undefined && doc.entities !== null && !Array.isArray(doc.entities)) {
    throw new RequestError('`entities` must be a JSON array of Cedar entities');
  }
  const time = now ?? doc.now;
  if (time !== undefined && time !== null && !(Number.isSafeInteger(time) && time >= 0) && typeof time !== 'bigint') {
    throw new RequestError('`now` must be unix seconds');
  }
  return {
    credentials: {
      authorization: optString(doc, 'authorization'),
      dpop: optString(doc, 'dpop'),
      agentIdentity: optString(doc, 'agent_identity'),
    },
    http,
    action: doc.action,
    resource: { typeName: resource.type, id: resource.id },
    contextJson: doc.context == null ? undefined : JSON.stringify(doc.context),
    entitiesJson: doc.entities == null ? undefined : JSON.stringify(doc.entities),
    now: time == null ? undefined : BigInt(time),
  };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new RequestError(e.message);
  }
}

/** `policy-denied` → `policy_denied`: jco gives WIT enum cases in kebab-case. */
export const outcomeName = (kebab) => kebab.replaceAll('-', '_');

/**
 * The decision JSON of `agentgate check` (`DecisionJson` in host/src/wire.rs): same members, same
 * order, `null` for absent options except `key_thumbprint`, `dpop_nonce` and `required_scope`,
 * which are omitted.
 */
export function toDecisionJson(d) {
  const json = {
    decision: d.allowed ? 'allow' : 'deny',
    outcome: outcomeName(d.outcome),
    reason: d.reason,
    policies: [...d.determiningPolicies],
    errors: [...d.policyErrors],
    principal: d.principal ?? null,
    user: d.onBehalfOf ?? null,
    chain: [...d.chain],
    token_id: d.tokenId ?? null,
  };
  if (d.keyThumbprint != null) json.key_thumbprint = d.keyThumbprint;
  if (d.dpopNonce != null) json.dpop_nonce = d.dpopNonce;
  if (d.requiredScope != null) json.required_scope = d.requiredScope;
  return json;
}

/** A denial produced by this host when the component fails (trap): `Decision::engine_error`. */
export function engineErrorDecision(reason) {
  return {
    decision: 'deny',
    outcome: 'engine_error',
    reason,
    policies: [],
    errors: [],
    principal: null,
    user: null,
    chain: [],
    token_id: null,
  };
}

/**
 * The WIT `config` record for the JSON `agentgate resolve` prints (snake_case members, as the
 * `preload` export also takes); camelCase input is accepted as is.
 */
export function toWitConfig(config) {
  const doc = typeof config === 'string' ? JSON.parse(config) : config;
  const pick = (snake, camel) => doc[snake] ?? doc[camel] ?? '';
  const file = (f) => ({ name: String(f.name), text: String(f.text) });
  return {
    policies: (doc.policies ?? []).map(file),
    schema: file(doc.schema ?? { name: '', text: '' }),
    settingsJson: pick('settings_json', 'settingsJson'),
    trustJson: pick('trust_json', 'trustJson'),
    revocationsJson: pick('revocations_json', 'revocationsJson'),
  };
}

// ---------------------------------------------------------------------------------------------
// Host imports
// ---------------------------------------------------------------------------------------------

/**
 * The canonical revocation id for its parts, as `RevocationId::canonical`: their compact JSON,
 * e.g. `canonicalId(['agent', 'spiffe://agents.example/mail-assistant'])`.
 */
export const canonicalId = (parts) => JSON.stringify(parts.map(String));

/**
 * The `state` import in memory: the semantics of the Rust `ProofMemory`
 * (guest/src/state/proof_memory.rs), for one process or one isolate.
 *
 * - `rememberProof`: a proof use is `fresh` once, then `replayed` while its window lasts. The
 *   window is relative (`ttlSecs` from now, on a monotonic clock): a pinned `now`, as in the
 *   vectors, or a wall-clock jump cannot expire an entry early.
 * - One proof key holds at most `perKey` live proofs (`key-limit`): one caller cannot fill the
 *   store for everyone. A store holding `capacity` live proofs answers `unavailable`, never
 *   `replayed`: a full store fails closed and says so.
 * - `checkRevoked`: `revoked(i)` for the first of the call's canonical ids in `revoked` (a Set of
 *   canonical id strings; arrays of parts are accepted), else `clear`. The component applies its
 *   own list (`create`, `setRevocations`) as well.
 * - `statusList`: `current(token)` for a `uri` in `statusLists`, else `unavailable`.
 *
 * One map, no shards: JavaScript runs one call at a time.
 */
export class MemoryState {
  constructor({ capacity = 1_000_000, perKey = 10_000, revoked = [], statusLists = {}, clock = () => performance.now() } = {}) {
    this.capacity = capacity;
    this.perKey = perKey;
    this.revoked = new Set([...revoked].map((id) => (Array.isArray(id) ? canonicalId(id) : id)));
    this.statusLists = new Map(statusLists instanceof Map ? statusLists : Object.entries(statusLists));
    this.clock = clock; // milliseconds, monotonic
    this.keys = new Map(); // key thumbprint → (jti hash → end of its window, ms)
    this.entries = 0; // held in `keys`, expired ones included until swept
  }

  /** Proofs held (expired ones included until swept). */
  get size() {
    return this.entries;
  }

  rememberProof({ keyThumbprint, jtiHash, ttlSecs }) {
    const now = this.clock();
    const proofs = this.keys.get(keyThumbprint);
    if (proofs !== undefined) {
      if (proofs.get(jtiHash) > now) return { tag: 'replayed' };
      if (proofs.size >= this.perKey) this.entries -= dropExpired(proofs, now);
      if (proofs.size >= this.perKey) return { tag: 'key-limit', val: this.perKey };
    }
    if (this.entries >= this.capacity) {
      this.sweep(now);
      if (this.entries >= this.capacity) return { tag: 'unavailable', val: `the in-memory replay store is full (${this.capacity} live proofs)` };
    }
    let held = this.keys.get(keyThumbprint); // the sweep may have dropped it
    if (held === undefined) this.keys.set(keyThumbprint, (held = new Map()));
    if (!held.has(jtiHash)) this.entries += 1;
    held.set(jtiHash, now + Math.max(1, ttlSecs) * 1000);
    return { tag: 'fresh' };
  }

  checkRevoked(ids, _now) {
    const index = ids.findIndex((id) => this.revoked.has(id));
    return index < 0 ? { tag: 'clear' } : { tag: 'revoked', val: index };
  }

  statusList(uri, _knownDigest) {
    // Always the token itself: the component compares it with the one it holds.
    const token = this.statusLists.get(uri);
    return token === undefined ? { tag: 'unavailable', val: `no status list for \`${uri}\`` } : { tag: 'current', val: token };
  }

  /** Drops every expired entry. */
  sweep(now = this.clock()) {
    for (const [key, proofs] of this.keys) {
      this.entries -= dropExpired(proofs, now);
      if (proofs.size === 0) this.keys.delete(key);
    }
  }
}

/** Deletes the expired entries of one key; returns how many. */
function dropExpired(proofs, now) {
  let dropped = 0;
  for (const [jti, until] of proofs) {
    if (until <= now) {
      proofs.delete(jti);
      dropped += 1;
    }
  }
  return dropped;
}

// SubjectPublicKeyInfo DER prefix for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
  0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
]);

/**
 * The `crypto` import of `gate-accelerated` with node:crypto (OpenSSL): ECDSA P-256 SHA-256 over
 * `message`, `signature` 64 bytes r‖s, `publicKey` a 65-byte SEC1 uncompressed point. False on any
 * error (wrong lengths, a point off the curve, r or s out of range). Keys are parsed once and
 * cached: the component asks for the same few issuer and agent keys on every call.
 */
export async function nodeCrypto({ cacheSize = 256 } = {}) {
  const crypto = await import('node:crypto');
  const keys = new Map();
  const keyFor = (point) => {
    const id = Buffer.from(point.buffer, point.byteOffset, point.byteLength).toString('base64');
    let key = keys.get(id);
    if (key === undefined) {
      const der = new Uint8Array(P256_SPKI_PREFIX.length + 65);
      der.set(P256_SPKI_PREFIX, 0);
      der.set(point, P256_SPKI_PREFIX.length);
      key = crypto.createPublicKey({ key: Buffer.from(der), format: 'der', type: 'spki' });
      if (keys.size >= cacheSize) keys.delete(keys.keys().next().value);
      keys.set(id, key);
    }
    return key;
  };
  return {
    verifyEs256(publicKey, message, signature) {
      try {
        if (publicKey.length !== 65 || publicKey[0] !== 0x04 || signature.length !== 64) return false;
        return crypto.verify('sha256', message, { key: keyFor(publicKey), dsaEncoding: 'ieee-p1363' }, signature);
      } catch {
        return false;
      }
    },
  };
}

/**
 * The WASI imports the component links against (wasi:cli, clocks, io, random as used by Rust's
 * std), from @bytecodealliance/preview2-shim. The component gets no environment variables,
 * arguments or working directory (the shim would otherwise hand it `process.env`), as under
 * wasmtime, where the host builds an empty WASI context.
 */
export async function defaultWasi() {
  const { cli, clocks, io, random } = await import('@bytecodealliance/preview2-shim');
  return {
    'wasi:cli/environment': { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/exit': cli.exit,
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/stdin': cli.stdin,
    'wasi:cli/stdout': cli.stdout,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    'wasi:clocks/wall-clock': clocks.wallClock,
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
    'wasi:random/insecure-seed': random.insecureSeed,
    'wasi:random/random': random.random,
    'wasi:random/insecure': random.insecure,
  };
}

// ---------------------------------------------------------------------------------------------
// Loading and instantiating the component
// ---------------------------------------------------------------------------------------------

/**
 * A transpiled component: jco's `instantiate` plus its compiled core modules. Compiling the
 * ~5 MB core module is the expensive step; it happens once per component, and every verifier gets
 * its own instance (its own memory and state store) from the compiled modules.
 *
 * `source` is either a directory URL/path holding `<world>/<world>.js` and its `.wasm` files
 * (prepare.mjs's layout; read with node:fs), or `{ instantiate, getCoreModule }` from a bundler
 * (edge workers import the .js and the .wasm modules directly).
 */
export async function loadComponent(world = 'gate', source = DEFAULT_BUILD_DIR) {
  if (!WORLDS.includes(world)) throw new TypeError(`unknown world \`${world}\` (expected ${WORLDS.join(' or ')})`);
  if (source && typeof source.instantiate === 'function') {
    return { world, instantiate: source.instantiate, getCoreModule: source.getCoreModule };
  }
  const { pathToFileURL } = await import('node:url');
  const { readFile } = await import('node:fs/promises');
  const base = source instanceof URL ? source : pathToFileURL(String(source).endsWith('/') ? String(source) : `${source}/`);
  const dir = new URL(`${world}/`, base);
  const { instantiate } = await import(new URL(`${world}.js`, dir).href);
  const modules = new Map();
  const getCoreModule = (name) => {
    let module = modules.get(name);
    if (module === undefined) {
      module = readFile(new URL(name, dir)).then((bytes) => WebAssembly.compile(bytes));
      modules.set(name, module);
    }
    return module;
  };
  return { world, instantiate, getCoreModule };
}

const componentCache = new Map();
function cachedComponent(world, build) {
  const key = `${world}\n${build instanceof URL ? build.href : String(build)}`;
  let component = componentCache.get(key);
  if (component === undefined) {
    component = loadComponent(world, build);
    componentCache.set(key, component);
  }
  return component;
}

const isThenable = (v) => v !== null && typeof v === 'object' && typeof v.then === 'function';

/** What `checkAsync` assumes while a store's answer is pending: the common answers. */
const PROVISIONAL = Object.freeze({
  rememberProof: Object.freeze({ tag: 'fresh' }),
  checkRevoked: Object.freeze({ tag: 'clear' }),
  statusList: Object.freeze({ tag: 'unavailable', val: 'the status list is being fetched' }),
});

/** True for the error jco throws for a WIT `result` error: a ComponentError carrying `payload`. */
const isWitError = (e) => e !== null && typeof e === 'object' && 'payload' in e;

/** A configuration the component refused (`verifier.create` / `set-revocations` error). */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

async function instantiate(component, imports) {
  const getCoreModule = component.getCoreModule;
  return component.instantiate(getCoreModule, imports);
}

/**
 * A verifier: one component instance with its own engine.
 *
 * config    the JSON of `agentgate resolve` (object or text): policies, schema, settings, trust,
 *           revocations.
 * options   world      'gate' (portable, default) or 'gate-accelerated' (default when `crypto`
 *                      is given): where ES256 runs.
 *           state      the `state` import ({ rememberProof, checkRevoked, statusList }, answers as
 *                      jco variants: `{ tag: 'fresh' }`, `{ tag: 'key-limit', val: 10 }`, ...);
 *                      default a fresh MemoryState. Share one store between the verifiers of a
 *                      deployment. Its methods may return Promises: then call `checkAsync`.
 *           crypto     the `crypto` import ({ verifyEs256 }); default node:crypto for the
 *                      accelerated world.
 *           component  a loaded component (loadComponent) or a build directory.
 *           wasi       the WASI imports (default: defaultWasi()).
 *           warmUp     build the trusted keys' tables now (long-lived verifiers).
 *           preloaded  use the `preload` export + `verifier.preloaded` instead of `create`.
 *           bundled    the component is an `agentgate bundle` (configuration baked in): take
 *                      `verifier.preloaded()` as is; `config` is ignored and may be null.
 *
 * check(request) takes a request document (object or JSON text) and returns the decision JSON.
 * checkAsync(request) returns a Promise of the same decision and accepts a store that answers
 * with Promises (see `checkAsync` below).
 * A trap inside the component is an `engine_error` denial, and the instance is replaced (with
 * the last revocation list re-applied) before the next call, as in the wasmtime host.
 */
export async function createVerifier(config, options = {}) {
  const world = options.world ?? (options.crypto ? 'gate-accelerated' : 'gate');
  const component = options.component && typeof options.component.instantiate === 'function'
    ? options.component
    : await cachedComponent(world, options.component ?? DEFAULT_BUILD_DIR);
  if (component.world !== world) throw new TypeError(`component is \`${component.world}\`, not \`${world}\``);
  if (options.replay !== undefined) throw new TypeError('the `replay` import is gone in agentgate:verifier@0.2.0: pass `state` (see MemoryState)');
  const state = options.state ?? new MemoryState();
  const crypto = world === 'gate-accelerated' ? (options.crypto && options.crypto.verifyEs256 ? options.crypto : await nodeCrypto()) : undefined;
  const wasi = options.wasi ?? (await defaultWasi());
  const bundled = options.bundled === true;
  const witConfig = bundled ? null : toWitConfig(config);
  const configJson = bundled ? null : typeof config === 'string' ? config : JSON.stringify(config);

  const imports = {
    ...wasi,
    'agentgate:verifier/state': {
      rememberProof: (proof) => ask('rememberProof', [proof]),
      checkRevoked: (ids, now) => ask('checkRevoked', [ids, now]),
      statusList: (uri, knownDigest) => ask('statusList', [uri, knownDigest]),
    },
    'agentgate:verifier/types': {},
  };
  if (crypto) imports['agentgate:verifier/crypto'] = { verifyEs256: (k, m, s) => crypto.verifyEs256(k, m, s) };

  let live = null; // { root, verifier }
  let revocations = null;
  let session = null; // during checkAsync: { known, pending } (see there)

  // The `state` import. A plain `check` needs answers now: a store that returns a Promise there
  // gets `unavailable` (fail closed). Under `checkAsync`, a pending answer is replaced by a
  // provisional one and settled after the call.
  function ask(method, args) {
    if (session === null) {
      const answer = state[method](...args);
      if (!isThenable(answer)) return answer;
      answer.then(undefined, () => {});
      return { tag: 'unavailable', val: 'the state store answers asynchronously: call checkAsync' };
    }
    const key = `${method} ${JSON.stringify(args, (_, v) => (typeof v === 'bigint' ? String(v) : v))}`;
    if (session.known.has(key)) return session.known.get(key);
    const provisional = PROVISIONAL[method];
    // After a pending question, later ones wait: the engine asked them on a provisional answer.
    if (session.pending.length > 0) {
      session.pending.push({ key, method, args, provisional });
      return provisional;
    }
    const answer = state[method](...args);
    if (!isThenable(answer)) {
      session.known.set(key, answer);
      return answer;
    }
    answer.then(undefined, () => {});
    session.pending.push({ key, answer, provisional });
    return provisional;
  }

  const start = async () => {
    const root = await instantiate(component, imports);
    const Verifier = root.engine.Verifier;
    let verifier;
    try {
      if (bundled) {
        verifier = Verifier.preloaded();
      } else if (options.preloaded) {
        root.preload(configJson);
        verifier = Verifier.preloaded();
      } else {
        verifier = Verifier.create(witConfig);
      }
    } catch (e) {
      throw isWitError(e) ? new ConfigError(String(e.payload)) : e;
    }
    if (revocations !== null) {
      try {
        verifier.setRevocations(revocations);
      } catch (e) {
        throw isWitError(e) ? new ConfigError(String(e.payload)) : e;
      }
    }
    if (options.warmUp) verifier.warmUp();
    return { root, verifier };
  };

  live = await start();
  let restarting = null;

  // One decision on the live instance.
  function decide(witRequest) {
    if (live === null) {
      if (restarting === null) discard(); // the last restart failed: try again
      return engineErrorDecision('the decision component is being restarted after a failure');
    }
    try {
      return toDecisionJson(live.verifier.check(witRequest));
    } catch (e) {
      // The instance may be in any state after a trap: never reuse it.
      discard();
      return engineErrorDecision(`the decision component trapped: ${e?.message ?? e}`);
    }
  }

  const api = {
    world,
    state,
    /** Decides one call; returns the decision JSON. Throws RequestError for a malformed document. */
    check(request, { now } = {}) {
      return decide(toCheckRequest(request, now));
    },
    /**
     * Decides one call with a state store whose answers may be Promises (a Worker's Durable
     * Object or KV, Redis over fetch); returns a Promise of the decision JSON.
     *
     * The component calls `state` synchronously, so the call runs with provisional answers for
     * the questions still pending (`fresh`, `clear`, `unavailable`). The real answers are then
     * awaited in the order the component asked. If each equals its provisional answer, that
     * decision stands; at the first that differs, later questions are dropped unasked and the
     * call runs again with the answers known so far. `now` is pinned, so every run asks the same
     * questions. A fresh proof with no revocation costs one run plus the store's round trips.
     * A rejected Promise is `unavailable`.
     */
    async checkAsync(request, { now } = {}) {
      const witRequest = toCheckRequest(request, now);
      witRequest.now ??= BigInt(Math.floor(Date.now() / 1000));
      const known = new Map();
      for (let run = 0; run < 8; run++) {
        const pending = [];
        session = { known, pending };
        let decision;
        try {
          decision = decide(witRequest);
        } finally {
          session = null;
        }
        if (pending.length === 0 || decision.outcome === 'engine_error') return decision;
        let settled = true;
        for (const q of pending) {
          let answer;
          try {
            answer = await (q.answer ?? state[q.method](...q.args));
          } catch (e) {
            answer = { tag: 'unavailable', val: `the state store failed: ${e?.message ?? e}` };
          }
          known.set(q.key, answer);
          if (answer?.tag !== q.provisional.tag || answer.val !== q.provisional.val) {
            settled = false;
            break;
          }
        }
        if (settled) return decision;
      }
      // Each run settles one more answer and a call asks at most three questions.
      return engineErrorDecision('the state store answers did not settle');
    },
    /** Replaces the component's own revocation list (object or JSON text); returns the entries in force. */
    setRevocations(list) {
      const json = typeof list === 'string' ? list : JSON.stringify(list);
      if (live === null) throw new Error('the decision component is being restarted after a failure');
      let count;
      try {
        count = live.verifier.setRevocations(json);
      } catch (e) {
        if (isWitError(e)) throw new ConfigError(String(e.payload));
        discard();
        throw e;
      }
      revocations = json;
      return count;
    },
    warmUp() {
      try {
        live?.verifier.warmUp();
      } catch (e) {
        discard();
        throw e;
      }
    },
    /** Resolves once a replacement instance is ready after a trap (no-op otherwise). */
    async ready() {
      if (restarting) await restarting;
    },
  };

  // A fresh instance is built asynchronously (compiled modules are cached, so this is quick);
  // calls made meanwhile are denied `engine_error`, failing closed.
  function discard() {
    live = null;
    restarting = start().then(
      (l) => {
        live = l;
        restarting = null;
      },
      () => {
        restarting = null;
      },
    );
  }

  return api;
}
