// A real MCP server from the official SDK (`@modelcontextprotocol/sdk`): Streamable HTTP, stateful
// (`Mcp-Session-Id`), the tools of policies/mcp/tools.json over a directory standing for
// `/workspace/`. agentgate sits in front of it in tests/mcp_sdk.rs; it knows nothing of agentgate.
//
//   node mcp/server.mjs <workspace dir>
//
// Listens on two loopback ports (MCP_PORT / MCP_CONTROL_PORT, default: any free one) and prints one
// line `{"mcp":<port>,"control":<port>}` once both listen. The control port (for the test only):
//   GET  /requests  every request the MCP endpoint received: method, JSON-RPC method, tool,
//                   arguments and the headers that tell what agentgate forwarded
//   POST /release   lets every `search_files` call waiting for it return (answers how many)
//   GET  /waiting   how many `search_files` calls wait for a release
//
// `search_files` streams: it sends `notifications/progress` for the request's progressToken, then
// waits for POST /release before it searches and returns. A client that sees the progress before
// it releases proves that every hop between them streams.

import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TOOLS = JSON.parse(readFileSync(path.join(here, '../../../policies/mcp/tools.json'), 'utf8')).result.tools;
const ROOT = path.resolve(process.argv[2] ?? process.env.MCP_WORKSPACE ?? '');
if (!process.argv[2] && !process.env.MCP_WORKSPACE) {
  console.error('usage: node mcp/server.mjs <workspace dir>');
  process.exit(2);
}

/** `/workspace/...` → a path under ROOT; anything else (or a climb out) is refused. */
function local(p) {
  if (typeof p !== 'string' || !(p === '/workspace' || p.startsWith('/workspace/'))) {
    throw new Error(`\`${p}\` is not under /workspace/`);
  }
  const full = path.resolve(ROOT, '.' + p.slice('/workspace'.length));
  if (full !== ROOT && !full.startsWith(ROOT + path.sep)) throw new Error(`\`${p}\` climbs out of /workspace/`);
  return full;
}

const text = (t) => ({ content: [{ type: 'text', text: t }] });

// Calls of `search_files` waiting for a release.
let waiting = [];
const owners = new Map();

async function walk(dir, out) {
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) await walk(full, out);
    else out.push(full);
  }
  return out;
}

const tools = {
  async list_directory({ path: p }) {
    const entries = await fs.readdir(local(p), { withFileTypes: true });
    return text(entries.map((e) => (e.isDirectory() ? `${e.name}/` : e.name)).sort().join('\n'));
  },
  async read_file({ path: p }) {
    return text(await fs.readFile(local(p), 'utf8'));
  },
  async write_file({ path: p, content }) {
    const full = local(p);
    await fs.mkdir(path.dirname(full), { recursive: true });
    await fs.writeFile(full, content);
    return text(`wrote ${Buffer.byteLength(content)} bytes to ${p}`);
  },
  async delete_file({ path: p, recursive }) {
    await fs.rm(local(p), { recursive: !!recursive });
    return text(`deleted ${p}`);
  },
  async search_files({ path: p, pattern, max_results }, request, extra) {
    const dir = local(p);
    const token = request.params._meta?.progressToken;
    const released = new Promise((resolve) => waiting.push(resolve));
    if (token !== undefined) {
      await extra.sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress: 0, total: 1, message: `searching ${p} for "${pattern}"` },
      });
    }
    await released;
    const limit = max_results ?? 100;
    const hits = [];
    for (const file of await walk(dir, [])) {
      if (hits.length >= limit) break;
      const name = '/workspace/' + path.relative(ROOT, file).split(path.sep).join('/');
      if (path.basename(file).includes(pattern) || (await fs.readFile(file, 'utf8')).includes(pattern)) hits.push(name);
    }
    if (token !== undefined) {
      await extra.sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress: 1, total: 1, message: `${hits.length} match(es)` },
      });
    }
    return text(hits.sort().join('\n'));
  },
  async change_owner({ path: p, owner }) {
    await fs.stat(local(p));
    owners.set(p, owner);
    return text(`${p} now belongs to ${owner}`);
  },
  async execute_command({ command, args }) {
    // A stand-in: this test server runs nothing; it only says what it was asked.
    return text(`would run ${JSON.stringify([command, ...(args ?? [])])}`);
  },
};

function mcpServer() {
  const server = new Server({ name: 'agentgate-files-test', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const tool = tools[request.params.name];
    if (!tool) return { ...text(`unknown tool ${request.params.name}`), isError: true };
    try {
      return await tool(request.params.arguments ?? {}, request, extra);
    } catch (e) {
      return { ...text(String(e?.message ?? e)), isError: true };
    }
  });
  return server;
}

const sessions = new Map();
const requests = [];
const SEEN_HEADERS = [
  'authorization',
  'dpop',
  'mcp-session-id',
  'mcp-protocol-version',
  'x-agentgate-agent',
  'x-agentgate-user',
  'x-agentgate-chain',
  'x-agentgate-decision-id',
];

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function rpcError(res, status, code, message) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } }));
}

const mcp = createServer(async (req, res) => {
  try {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') return rpcError(res, 404, -32000, 'not found');
    let body;
    if (req.method === 'POST') {
      const raw = await readBody(req);
      try {
        body = JSON.parse(raw);
      } catch {
        return rpcError(res, 400, -32700, 'parse error');
      }
    }
    const headers = Object.fromEntries(SEEN_HEADERS.filter((h) => req.headers[h] !== undefined).map((h) => [h, req.headers[h]]));
    requests.push({ method: req.method, rpc: body?.method, tool: body?.params?.name, arguments: body?.params?.arguments, headers });

    const sid = req.headers['mcp-session-id'];
    let transport = sid ? sessions.get(sid) : undefined;
    if (!transport) {
      if (sid) return rpcError(res, 404, -32001, 'session not found');
      if (req.method !== 'POST' || !isInitializeRequest(body)) return rpcError(res, 400, -32000, 'no session: initialize first');
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => sessions.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
      await mcpServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  } catch (e) {
    console.error('mcp server:', e);
    if (!res.headersSent) rpcError(res, 500, -32603, String(e?.message ?? e));
  }
});

const control = createServer(async (req, res) => {
  const json = (v) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(v));
  if (req.method === 'GET' && req.url === '/requests') return json(requests);
  if (req.method === 'GET' && req.url === '/waiting') return json({ waiting: waiting.length });
  if (req.method === 'POST' && req.url === '/release') {
    const released = waiting;
    waiting = [];
    released.forEach((resolve) => resolve());
    return json({ released: released.length });
  }
  res.writeHead(404).end();
});

const listen = (s, port) => new Promise((resolve) => s.listen(port, '127.0.0.1', () => resolve(s.address().port)));
const ports = { mcp: await listen(mcp, Number(process.env.MCP_PORT ?? 0)), control: await listen(control, Number(process.env.MCP_CONTROL_PORT ?? 0)) };
console.log(JSON.stringify(ports));

const stop = () => {
  waiting.forEach((resolve) => resolve());
  mcp.closeAllConnections?.();
  control.closeAllConnections?.();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
