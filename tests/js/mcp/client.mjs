// The official MCP SDK's client against the official SDK's server (server.mjs), once directly and
// once through `agentgate serve` in reverse-proxy mode for each configured dialect. Run by
// tests/mcp_sdk.rs, which starts the processes and sets:
//
//   MCP_DIRECT_URL   the SDK server's /mcp (baseline: no agentgate)
//   MCP_DPOP_URL     agentgate's /mcp with `[dpop] mode = "required"`
//   MCP_BEARER_URL   agentgate's /mcp with `[dpop] mode = "off"`
//   MCP_GATEWAY_URL  the wasi:http gateway's /mcp (`agentgate gateway run`, DPoP required)
//   MCP_CONTROL_URL  the SDK server's control port (release of search_files, request log)
//   MCP_WORKSPACE    the directory the server serves as /workspace/
//   AGENTGATE_BIN    `agentgate`, to mint tokens
//
// A suite whose URL is not set is skipped.  node --test --test-reporter=tap mcp/client.mjs

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { generateProof } from 'dpop';
import {
  discoverOAuthProtectedResourceMetadata,
  extractResourceMetadataUrl,
  extractWWWAuthenticateParams,
} from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AGENT, REPO, connect, control, dpopKey, guardedFetch, mintToken, refusal, text } from './helpers.mjs';

const WORKSPACE = process.env.MCP_WORKSPACE;
const ISSUER = 'https://auth.demo.agentgate.dev';
const ALL_TOOLS = JSON.parse(readFileSync(path.join(REPO, 'policies/mcp/tools.json'), 'utf8')).result.tools.map((t) => t.name);
const PROGRESS_TIMEOUT_MS = 15_000;

/** Seeds `/workspace/<name>/` on disk: notes.md, docs/guide.md (holds "needle"). */
function seed(name) {
  assert.ok(WORKSPACE && path.isAbsolute(WORKSPACE), 'MCP_WORKSPACE must name the directory the server serves');
  const dir = path.join(WORKSPACE, name);
  mkdirSync(path.join(dir, 'docs'), { recursive: true });
  writeFileSync(path.join(dir, 'notes.md'), `# ${name} notes\n`);
  writeFileSync(path.join(dir, 'docs/guide.md'), 'find the needle here\n');
  return `/workspace/${name}`;
}

const names = (listed) => listed.tools.map((t) => t.name).sort();

/** `search_files` with progress: the first progress must reach us while the tool still waits. */
async function streamingSearch(client, dir) {
  const progress = [];
  let result;
  let firstProgress;
  const gotProgress = new Promise((resolve) => (firstProgress = resolve));
  const call = client
    .callTool({ name: 'search_files', arguments: { path: dir, pattern: 'needle' } }, undefined, {
      onprogress: (p) => {
        progress.push({ ...p, afterResult: result !== undefined });
        firstProgress(p);
      },
    })
    .then((r) => (result = r));
  let timer;
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, PROGRESS_TIMEOUT_MS, 'timeout')));
  const first = await Promise.race([gotProgress, timeout, call.then(() => 'result', () => 'error')]);
  clearTimeout(timer);
  // The tool is still waiting now: only this releases it (also after a failure, to free the server).
  const waiting = await control('/waiting');
  await control('/release', 'POST');
  const r = await call;
  assert.notEqual(first, 'timeout', `no progress reached the client within ${PROGRESS_TIMEOUT_MS} ms while the tool waited (buffered?)`);
  assert.ok(typeof first === 'object', `the call ended (${first}) before any progress arrived`);
  assert.equal(waiting.waiting, 1, 'the tool had not returned when its first progress reached the client');
  assert.match(first.message, /^searching /);
  assert.equal(result, r);
  assert.ok(progress.every((p) => !p.afterResult));
  assert.equal(text(r), `${dir}/docs/guide.md`);
}

describe('the SDK server alone (baseline, no agentgate)', { skip: !process.env.MCP_DIRECT_URL && 'MCP_DIRECT_URL not set' }, () => {
  it('lists every tool of tools.json, runs them, and streams search progress', async () => {
    const dir = seed('direct');
    const { client } = await connect(process.env.MCP_DIRECT_URL, guardedFetch(() => null));
    try {
      assert.deepEqual(names(await client.listTools()), [...ALL_TOOLS].sort());
      assert.equal(text(await client.callTool({ name: 'read_file', arguments: { path: `${dir}/notes.md` } })), '# direct notes\n');
      await streamingSearch(client, dir);
    } finally {
      await client.close();
    }
  });
});

const MODES = {
  dpop: { env: 'MCP_DPOP_URL', dpop: true, title: 'agentgate serve (DPoP required)' },
  bearer: { env: 'MCP_BEARER_URL', dpop: false, title: 'agentgate serve (Bearer only)' },
  gateway: { env: 'MCP_GATEWAY_URL', dpop: true, title: 'the wasi:http gateway (DPoP required)' },
};

for (const [mode, { env, dpop, title }] of Object.entries(MODES)) {
  const url = process.env[env];
  describe(`${title} guarding the SDK server`, { skip: !url && `${env} not set` }, () => {
    const origin = url && new URL(url).origin;
    const metadataUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
    let dir;
    let metadata;
    let key;
    let creds;
    let session;
    const log = [];

    before(() => {
      dir = seed(mode);
    });
    after(async () => {
      await session?.client.close();
    });

    it('without credentials: 401, and the SDK finds the metadata from WWW-Authenticate', async (t) => {
      const bare = guardedFetch(() => null);
      await assert.rejects(connect(url, bare), (e) => e instanceof StreamableHTTPError && e.code === 401);
      const { response, body, request } = bare.log[0];
      assert.equal(response.status, 401);
      const challenge = response.headers.get('www-authenticate');
      t.diagnostic(`401 WWW-Authenticate (as fetch joins it): ${challenge}`);
      assert.ok(challenge.startsWith(`Bearer resource_metadata="${metadataUrl}"`), challenge);
      if (dpop) {
        assert.match(challenge, /, DPoP algs="ES256"/);
        assert.ok(challenge.indexOf('DPoP') > challenge.indexOf('Bearer'));
      } else {
        assert.doesNotMatch(challenge, /DPoP/);
      }
      const json = JSON.parse(body);
      assert.equal(json.jsonrpc, '2.0');
      assert.equal(json.id, request.id);
      assert.equal(json.error.code, -32001);
      assert.ok(json.error.data.decision_id);

      // The SDK's own helpers read the two challenges as fetch joins them.
      assert.equal(extractWWWAuthenticateParams(response).resourceMetadataUrl?.href, metadataUrl);
      assert.equal(extractResourceMetadataUrl(response)?.href, metadataUrl);
      metadata = await discoverOAuthProtectedResourceMetadata(url, { resourceMetadataUrl: extractResourceMetadataUrl(response) });
      assert.equal(metadata.resource, url);
      assert.deepEqual(metadata.authorization_servers, [ISSUER]);
      assert.deepEqual(metadata.scopes_supported, ['files.read', 'files.write', 'files.delete']);
      assert.deepEqual(metadata.bearer_methods_supported, ['header']);
      if (dpop) {
        assert.deepEqual(metadata.dpop_signing_alg_values_supported, ['ES256']);
        assert.equal(metadata.dpop_bound_access_tokens_required, true);
      } else {
        assert.notEqual(metadata.dpop_bound_access_tokens_required, true);
      }
      // Without the hint, the SDK builds the path-inserted well-known URL itself.
      assert.deepEqual(await discoverOAuthProtectedResourceMetadata(url), metadata);
    });

    it(`connects with a token minted for the advertised resource${dpop ? ', bound to a DPoP key' : ''}`, async () => {
      key = dpop ? await dpopKey() : undefined;
      creds = { token: mintToken({ metadata, scope: 'files.read files.write', key }), key };
      session = await connect(url, guardedFetch(() => creds, log));
      assert.equal(session.client.getServerVersion().name, 'agentgate-files-test');
      assert.ok(session.transport.sessionId, 'the server gave an Mcp-Session-Id');
      if (dpop) {
        assert.ok(log.every((e) => e.status < 400 || e.method === 'GET'), JSON.stringify(log.map((e) => [e.method, e.status])));
      }
    });

    it('tools/list shows only the tools this caller may call', async () => {
      assert.deepEqual(names(await session.client.listTools()), ['list_directory', 'read_file', 'search_files', 'write_file']);
    });

    it('allowed calls return the tools\' real results', async () => {
      const { client } = session;
      assert.equal(text(await client.callTool({ name: 'list_directory', arguments: { path: dir } })), 'docs/\nnotes.md');
      assert.equal(text(await client.callTool({ name: 'read_file', arguments: { path: `${dir}/notes.md` } })), `# ${mode} notes\n`);
      const wrote = await client.callTool({ name: 'write_file', arguments: { path: `${dir}/out/new.txt`, content: 'written through agentgate' } });
      assert.equal(wrote.isError, undefined, text(wrote));
      assert.equal(readFileSync(path.join(WORKSPACE, mode, 'out/new.txt'), 'utf8'), 'written through agentgate');
    });

    it('a call the policies refuse gets the JSON-RPC error, and never reaches the server', async () => {
      const { client } = session;
      for (const [name, args] of [
        ['write_file', { path: '/etc/passwd', content: 'x' }],
        ['write_file', { path: `${dir}/../../escape.txt`, content: 'x' }],
        ['execute_command', { command: 'id' }],
        ['search_files', { path: dir, pattern: 'needle', max_results: 500 }],
      ]) {
        await assert.rejects(client.callTool({ name, arguments: args }), (e) => e instanceof StreamableHTTPError && e.code === 403, name);
        const { json, request } = refusal(log);
        assert.equal(request.params.name, name);
        assert.deepEqual(Object.keys(json).sort(), ['error', 'id', 'jsonrpc']);
        assert.equal(json.jsonrpc, '2.0');
        assert.equal(json.id, request.id);
        assert.equal(json.error.code, -32001);
        assert.equal(typeof json.error.message, 'string');
        assert.equal(json.error.data.outcome, 'policy_denied', `${name}: ${JSON.stringify(json)}`);
        assert.equal(typeof json.error.data.decision_id, 'string');
      }
      assert.ok(!existsSync('/etc/passwd') || !readFileSync('/etc/passwd', 'utf8').startsWith('x'));
    });

    it('a missing scope: 403 insufficient_scope naming files.delete; a stepped-up token deletes', async (t) => {
      const { client } = session;
      await assert.rejects(
        client.callTool({ name: 'delete_file', arguments: { path: `${dir}/notes.md` } }),
        (e) => e instanceof StreamableHTTPError && e.code === 403,
      );
      const { response, json } = refusal(log);
      const challenge = response.headers.get('www-authenticate') ?? '';
      t.diagnostic(`403 WWW-Authenticate: ${challenge}`);
      assert.match(challenge, /error="insufficient_scope"/);
      assert.match(challenge, /scope="files\.delete"/);
      const params = extractWWWAuthenticateParams(response);
      assert.equal(params.error, 'insufficient_scope');
      assert.equal(params.scope, 'files.delete');
      assert.equal(json.error.data.outcome, 'insufficient_scope');
      assert.ok(existsSync(path.join(WORKSPACE, mode, 'notes.md')));

      // Step-up: the scope the challenge named, added to the token; same session, same key.
      creds = { token: mintToken({ metadata, scope: `files.read files.write ${params.scope}`, key }), key };
      assert.ok(names(await client.listTools()).includes('delete_file'));
      const deleted = await client.callTool({ name: 'delete_file', arguments: { path: `${dir}/notes.md` } });
      assert.equal(text(deleted), `deleted ${dir}/notes.md`);
      assert.ok(!existsSync(path.join(WORKSPACE, mode, 'notes.md')));
    });

    if (dpop) {
      it('a replayed DPoP proof is refused (401, replayed)', async () => {
        const proof = await generateProof(key.keypair, url, 'POST', undefined, creds.token);
        const send = () =>
          fetch(url, {
            method: 'POST',
            headers: {
              authorization: `DPoP ${creds.token}`,
              dpop: proof,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
              'mcp-session-id': session.transport.sessionId,
              'mcp-protocol-version': session.transport.protocolVersion,
            },
            body: JSON.stringify({ jsonrpc: '2.0', id: 'replay-1', method: 'ping' }),
          });
        const first = await send();
        const firstBody = await first.text();
        assert.equal(first.status, 200, firstBody);
        assert.match(firstBody, /"id":"replay-1"/);
        const again = await send();
        const json = await again.json();
        assert.equal(again.status, 401);
        assert.ok(again.headers.get('www-authenticate').startsWith(`Bearer resource_metadata="${metadataUrl}"`));
        assert.equal(json.id, 'replay-1');
        assert.equal(json.error.data.outcome, 'replayed');
      });
    }

    it('malformed JSON-RPC is refused with 400 and the JSON-RPC code', async () => {
      const post = async (body) => {
        const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': session.transport.sessionId };
        headers.authorization = `${dpop ? 'DPoP' : 'Bearer'} ${creds.token}`;
        if (dpop) headers.dpop = await generateProof(key.keypair, url, 'POST', undefined, creds.token);
        const res = await fetch(url, { method: 'POST', headers, body });
        return { status: res.status, json: await res.json() };
      };
      const parse = await post('{"jsonrpc":"2.0","id":1,');
      assert.equal(parse.status, 400);
      assert.equal(parse.json.error.code, -32700);
      const invalid = await post('{"jsonrpc":"2.0","id":2,"params":{}}');
      assert.equal(invalid.status, 400);
      assert.equal(invalid.json.error.code, -32600);
    });

    it('the first progress of a streaming tool reaches the client before the tool returns', async () => {
      await streamingSearch(session.client, dir);
    });

    it('the server saw agentgate\'s identity headers and never the credentials', async (t) => {
      // Not asserted: what became of the SDK's optional GET stream and any transport errors.
      t.diagnostic(`GET /mcp: ${JSON.stringify(log.filter((e) => e.method !== 'POST').map((e) => [e.method, e.status, e.body]))}`);
      t.diagnostic(`transport errors: ${JSON.stringify(session.errors.map((e) => String(e)))}`);
      const seen = (await control('/requests')).filter((r) => (r.arguments?.path ?? '').startsWith(dir) || r.headers['x-agentgate-decision-id']);
      assert.ok(seen.length > 0);
      for (const r of await control('/requests')) {
        assert.equal(r.headers.authorization, undefined, JSON.stringify(r));
        assert.equal(r.headers.dpop, undefined, JSON.stringify(r));
      }
      const calls = seen.filter((r) => r.rpc === 'tools/call' && r.arguments.path?.startsWith(dir));
      assert.deepEqual(
        calls.map((r) => r.tool),
        ['list_directory', 'read_file', 'write_file', 'delete_file', 'search_files'],
      );
      for (const r of calls) {
        assert.equal(r.headers['x-agentgate-agent'], AGENT);
        assert.match(r.headers['x-agentgate-user'], /alice/);
        assert.match(r.headers['x-agentgate-chain'], /files-assistant/);
        assert.ok(r.headers['x-agentgate-decision-id']);
      }
      const everything = await control('/requests');
      assert.ok(!everything.some((r) => r.tool === 'execute_command' || r.arguments?.path === '/etc/passwd' || r.arguments?.max_results === 500));
    });
  });
}
