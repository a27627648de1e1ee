// Helpers for the SDK client test: credentials from `agentgate mint`, DPoP proofs from the
// independent `dpop` package, a recording `fetch` hook for the SDK transport, the test server's
// control port.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateKeyPair, generateProof } from 'dpop';
import { calculateJwkThumbprint, decodeJwt, exportJWK } from 'jose';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const ISSUER_KEY = path.join(REPO, 'policies/keys/issuer.TEST-ONLY.private.jwk.json');
export const AGENT = 'spiffe://agents.example/files-assistant';
export const USER = 'alice';

/** A fresh ES256 DPoP key pair (WebCrypto, through `dpop`) with its public JWK and thumbprint. */
export async function dpopKey() {
  const keypair = await generateKeyPair('ES256');
  const jwk = await exportJWK(keypair.publicKey);
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'agentgate-mcp-dpop-')), 'dpop.public.jwk.json');
  writeFileSync(file, JSON.stringify(jwk));
  return { keypair, jwk, file, thumbprint: await calculateJwkThumbprint(jwk) };
}

/**
 * An access token from `agentgate mint token` for the resource and authorization server that the
 * protected resource metadata advertises; bound to `key` (`cnf.jkt`) when given.
 */
export function mintToken({ metadata, scope, key, agent = AGENT, user = USER }) {
  const bin = process.env.AGENTGATE_BIN;
  if (!bin) throw new Error('AGENTGATE_BIN is not set');
  const args = ['mint', 'token', '--key', ISSUER_KEY, '--iss', metadata.authorization_servers[0], '--sub', user, '--aud', metadata.resource, '--scope', scope];
  if (agent) args.push('--agent', agent);
  if (key) args.push('--bind', key.file);
  const token = execFileSync(bin, args, { encoding: 'utf8' }).trim();
  const claims = decodeJwt(token);
  if (key && claims.cnf?.jkt !== key.thumbprint) throw new Error(`minted token is bound to ${claims.cnf?.jkt}, not ${key.thumbprint}`);
  return token;
}

/**
 * A `fetch` for the SDK transport: every request gets `Authorization: <scheme> <token>` and, with a
 * DPoP key, a fresh proof for its method and URL (`ath` included). `creds()` is read on each
 * request, so a test can swap the token (step-up). A 401 `use_dpop_nonce` is retried once with
 * the server's nonce. Every exchange lands in `log` (with the body text of a refusal).
 */
export function guardedFetch(creds, log = []) {
  let nonce;
  const hook = async (url, init = {}) => {
    const { token, key } = creds() ?? {};
    const method = (init.method ?? 'GET').toUpperCase();
    const send = async () => {
      const headers = new Headers(init.headers);
      if (token) {
        headers.set('authorization', `${key ? 'DPoP' : 'Bearer'} ${token}`);
        if (key) headers.set('dpop', await generateProof(key.keypair, String(url), method, nonce, token));
      }
      return fetch(url, { ...init, headers });
    };
    let res = await send();
    if (key && res.status === 401 && res.headers.get('dpop-nonce') && (res.headers.get('www-authenticate') ?? '').includes('use_dpop_nonce')) {
      nonce = res.headers.get('dpop-nonce');
      await res.body?.cancel();
      res = await send();
    }
    if (res.headers.get('dpop-nonce')) nonce = res.headers.get('dpop-nonce');
    const entry = { method, url: String(url), request: typeof init.body === 'string' ? JSON.parse(init.body) : undefined, status: res.status, response: res };
    if (!res.ok) entry.body = await res.clone().text();
    log.push(entry);
    return res;
  };
  hook.log = log;
  return hook;
}

/** An SDK client over Streamable HTTP to `url`, connected (initialize + initialized). */
export async function connect(url, fetchHook) {
  const client = new Client({ name: 'agentgate-sdk-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: fetchHook });
  const errors = [];
  client.onerror = (e) => errors.push(e);
  await client.connect(transport);
  return { client, transport, errors };
}

/** The JSON-RPC error body of a refused POST that the SDK turned into a `StreamableHTTPError`. */
export function refusal(log, error) {
  const entry = [...log].reverse().find((e) => e.method === 'POST' && e.status >= 400);
  if (!entry) throw new Error(`no refused POST in the log (the call failed with ${error})`);
  return { ...entry, json: JSON.parse(entry.body) };
}

export async function control(pathname, method = 'GET') {
  const base = process.env.MCP_CONTROL_URL;
  const res = await fetch(new URL(pathname, base), { method });
  if (!res.ok) throw new Error(`control ${pathname}: ${res.status}`);
  return res.json();
}

export const text = (result) => result.content.map((c) => c.text).join('');
