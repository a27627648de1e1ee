// A development issuer in JavaScript (node:crypto): ES256 access tokens and DPoP proofs, for the
// tests and the latency script. The same shapes as `agentgate mint token|proof`, made by an
// independent JOSE implementation (OpenSSL), so the component is also checked against tokens the
// Rust minter did not make. TEST ONLY: it signs with whatever private JWK it is given.

import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const json64 = (value) => b64url(Buffer.from(JSON.stringify(value), 'utf8'));

/** Reads a private JWK file (`policies/keys/*.TEST-ONLY.private.jwk.json`). */
export function readJwk(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The public members of a P-256 JWK, in RFC 7638 order. */
export const publicJwk = (jwk) => ({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });

/** RFC 7638 thumbprint (the token's `cnf.jkt`). */
export const thumbprint = (jwk) => b64url(createHash('sha256').update(JSON.stringify(publicJwk(jwk))).digest());

/** A compact JWS signed with ES256 (r‖s, as JWS requires). */
export function signJws(header, claims, jwk) {
  const key = createPrivateKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d }, format: 'jwk' });
  const input = `${json64(header)}.${json64(claims)}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${b64url(signature)}`;
}

const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * An access token (`at+jwt`) from `key` (the issuer's private JWK) for user `sub`, delegated to
 * `agents` (current actor first, nested `act` outermost first), bound to `bind` (a JWK) if given.
 */
export function mintToken({ key, iss, sub, aud, agents = [], scope = '', lifetime = 300, iat = nowSecs(), clientId = 'agentgate-dev-client', jti = b64url(randomBytes(16)), bind }) {
  const claims = { iss, sub, aud, client_id: clientId, iat, exp: iat + lifetime, jti, scope };
  let act;
  for (const agent of [...agents].reverse()) act = act ? { sub: agent, act } : { sub: agent };
  if (act) claims.act = act;
  if (bind) claims.cnf = { jkt: thumbprint(bind) };
  return signJws({ typ: 'at+jwt', alg: 'ES256', kid: key.kid }, claims, key);
}

/** A DPoP proof (`dpop+jwt`) by `key` (the agent's private JWK) for one request and `token`. */
export function mintProof({ key, method = 'GET', uri, token, nonce, iat = nowSecs(), jti = b64url(randomBytes(16)) }) {
  const claims = { jti, htm: method, htu: uri, iat };
  if (token) claims.ath = b64url(createHash('sha256').update(token, 'ascii').digest());
  if (nonce) claims.nonce = nonce;
  return signJws({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk(key) }, claims, key);
}
