// Starts and stops a real `nudge serve` for the end-to-end tests, and speaks to it over HTTP.
//
// NudgeServer runs the binary named by $NUDGE_BIN on 127.0.0.1 with a fresh temporary data
// directory and its own random keys, waits until /healthz answers, and can be stopped
// (SIGTERM, awaiting the exit code), killed (SIGKILL) and restarted on the same data directory.
// Every wait here is bounded in time; no request goes anywhere but 127.0.0.1.
import { spawn, execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import zlib from 'node:zlib';

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_DATA = process.env.NUDGE_E2E_KEEP === '1';

// Servers still running when the test process exits (a test timed out, say) are killed, so
// that no nudge outlives its test.
const live = new Set();
process.on('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

export function nudgeBin() {
  const bin = process.env.NUDGE_BIN;
  if (!bin) throw new Error('set NUDGE_BIN to the nudge binary (tests/e2e.sh does)');
  const abs = path.resolve(bin);
  if (!fs.existsSync(abs)) throw new Error(`NUDGE_BIN=${bin}: no such file`);
  return abs;
}

export function randomKey(prefix) {
  return `${prefix}_${randomBytes(12).toString('hex')}`;
}

export function uid(prefix = 'id') {
  return `${prefix}-${randomUUID()}`;
}

// The environment nudge runs with: ours, minus any NUDGE_* setting of the caller's (a config
// file or a listen address there would change what is under test), plus the given overrides.
function childEnv(overrides) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NUDGE_')) env[k] = v;
  return { ...env, NUDGE_LOG_LEVEL: 'warn', ...overrides };
}

export class NudgeServer {
  constructor({ writeKey, adminKey, dataDir, env } = {}) {
    this.bin = nudgeBin();
    this.writeKey = writeKey ?? randomKey('wk');
    this.adminKey = adminKey ?? randomKey('ak');
    this.dataDir = dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-e2e-'));
    this.ownsDataDir = !dataDir;
    this.extraEnv = env ?? {};
    this.port = 0;
    this.proc = null;
    this.exited = null; // Promise<{code, signal}> of the running process
    this.log = '';
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get dbPath() {
    return path.join(this.dataDir, 'nudge.db');
  }

  // Starts nudge and resolves once /healthz answers 200. Reuses the last port when there is
  // one (a restart keeps the URL clients were given), else lets the kernel choose.
  async start() {
    if (this.proc) throw new Error('nudge is already running');
    try {
      await this.#spawn(this.port);
    } catch (err) {
      if (this.port === 0 || !/cannot listen/.test(this.log)) throw err;
      await this.#spawn(0); // the old port was taken meanwhile
    }
    return this;
  }

  async #spawn(port) {
    const proc = spawn(this.bin, ['serve', '--listen', `127.0.0.1:${port}`, '--data', this.dataDir], {
      env: childEnv({
        NUDGE_WRITE_KEY: this.writeKey,
        NUDGE_ADMIN_KEY: this.adminKey,
        ...this.extraEnv,
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.dataDir, // a core dump, if any, goes away with the data
    });
    this.proc = proc;
    live.add(proc);
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        live.delete(proc);
        if (this.proc === proc) this.proc = null;
        resolve({ code, signal });
      });
    });
    let stdout = '';
    const append = (chunk) => {
      this.log += chunk.toString();
      if (this.log.length > 64 * 1024) this.log = this.log.slice(-32 * 1024);
    };
    proc.stdout.on('data', (c) => {
      if (stdout.length < 4096) stdout += c.toString(); // enough to find the port
      append(c);
    });
    proc.stderr.on('data', append);

    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let exitedEarly = null;
    this.exited.then((e) => (exitedEarly = e));
    while (Date.now() < deadline) {
      if (exitedEarly) {
        throw new Error(`nudge exited during startup (${JSON.stringify(exitedEarly)}):\n${this.log}`);
      }
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (m) {
        this.port = Number(m[1]);
        try {
          const r = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2000) });
          await r.arrayBuffer();
          if (r.status === 200) return;
        } catch {
          // not answering yet
        }
      }
      await sleep(25);
    }
    proc.kill('SIGKILL');
    await this.exited;
    throw new Error(`nudge did not become healthy within ${STARTUP_TIMEOUT_MS} ms:\n${this.log}`);
  }

  // SIGTERM, then waits for the exit. Resolves to {code, signal}.
  async stop(signal = 'SIGTERM') {
    if (!this.proc) return { code: null, signal: null, notRunning: true };
    const exited = this.exited;
    this.proc.kill(signal);
    const cancel = new AbortController();
    const timer = sleep(STOP_TIMEOUT_MS, 'timeout', { signal: cancel.signal }).catch(() => null);
    const result = await Promise.race([exited, timer]);
    cancel.abort();
    if (result === 'timeout') {
      this.proc?.kill('SIGKILL');
      await exited;
      throw new Error(`nudge did not exit within ${STOP_TIMEOUT_MS} ms of ${signal}:\n${this.log}`);
    }
    return result;
  }

  // SIGKILL: the process gets no chance to clean up. Resolves once it is gone.
  async kill() {
    if (!this.proc) return null;
    const exited = this.exited;
    this.proc.kill('SIGKILL');
    return exited;
  }

  async restart() {
    if (this.proc) await this.stop();
    return this.start();
  }

  // Stops the server if it still runs and removes its data directory (unless
  // NUDGE_E2E_KEEP=1). Safe to call more than once; for after()/finally hooks.
  async dispose() {
    if (this.proc) {
      try {
        await this.stop();
      } catch {
        await this.kill();
      }
    }
    if (this.ownsDataDir && !KEEP_DATA) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  // --- HTTP helpers ---------------------------------------------------------------------------

  // Creates a workspace through the admin API (with the default workspace's admin key) and
  // returns a view of this server whose helpers use the new workspace's keys.
  async createWorkspace(name = uid('ws')) {
    const r = await this.admin('POST', '/api/v1/workspaces', { body: { name } });
    if (r.status !== 201) throw new Error(`POST /api/v1/workspaces: ${r.status} ${r.text}`);
    return this.withKeys({ writeKey: r.json.write_key, adminKey: r.json.admin_key, id: r.json.id, name });
  }

  // The same server seen with other keys (send/admin/get/contact/events use them).
  withKeys({ writeKey, adminKey, ...extra }) {
    return Object.create(this, {
      writeKey: { value: writeKey },
      adminKey: { value: adminKey },
      workspace: { value: extra },
    });
  }

  // POST to the tracking API. `auth`: 'basic' (the write key, or `key`, as the Basic user
  // name; the default) or 'none'. A string body is sent as is, a Buffer as bytes, anything
  // else as JSON; `gzip: true` compresses it.
  async send(pathname, body, { auth = 'basic', gzip = false, headers = {}, key } = {}) {
    let payload = Buffer.isBuffer(body)
      ? body
      : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    if (gzip) payload = zlib.gzipSync(payload);
    const h = { 'Content-Type': 'application/json', ...headers };
    if (auth === 'basic') {
      h.Authorization = `Basic ${Buffer.from(`${key ?? this.writeKey}:`).toString('base64')}`;
    }
    return request(`${this.url}${pathname}`, { method: 'POST', headers: h, body: payload });
  }

  // Calls the admin API with this server's admin key (or `key`).
  async admin(method, pathname, { body, key } = {}) {
    const headers = { Authorization: `Bearer ${key ?? this.adminKey}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return request(`${this.url}${pathname}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  // GET an admin resource and insist on a 200: returns the parsed JSON.
  async get(pathname, { key } = {}) {
    const r = await this.admin('GET', pathname, { key });
    if (r.status !== 200) throw new Error(`GET ${pathname}: ${r.status} ${r.text}`);
    return r.json;
  }

  contact(key, opts) {
    return this.get(`/api/v1/contacts/${encodeURIComponent(key)}`, opts);
  }

  async events(key, { limit = 1000, ...opts } = {}) {
    // Only what clients sent: nudge derives events of its own (Segment Entered, Stage Changed).
    const r = await this.get(
      `/api/v1/contacts/${encodeURIComponent(key)}/events?limit=${limit}&origin=client`,
      opts,
    );
    return r.events;
  }

  async metrics() {
    const r = await request(`${this.url}/metrics`, { method: 'GET' });
    if (r.status !== 200) throw new Error(`/metrics: ${r.status}`);
    return parseMetrics(r.text);
  }

  // Runs `sqlite3 <db> <sql>` (read-only) and returns its output lines.
  sql(query) {
    return sqlite(this.dbPath, query);
  }

  // Runs `nudge <args...>` (a CLI client command); resolves to {code, stdout, stderr}.
  cli(args) {
    return runCli(this.bin, args);
  }
}

// fetch with a timeout; never throws on an HTTP status. Resolves to {status, headers, text,
// json (null when the body is not JSON)}.
export async function request(url, init = {}) {
  const r = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, headers: r.headers, text, json };
}

// Prometheus text -> Map of 'name{labels}' -> number.
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{[^}]*\})?)\s+(\S+)/.exec(line);
    if (m) out.set(m[1], Number(m[2]));
  }
  return out;
}

export function sqlite(dbPath, query) {
  return new Promise((resolve, reject) => {
    execFile(
      'sqlite3',
      ['-readonly', '-batch', dbPath, query],
      { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`sqlite3 ${query}: ${err.message}\n${stderr}`));
        resolve(stdout.split('\n').filter((l) => l.length > 0));
      },
    );
  });
}

export function runCli(bin, args, env = {}) {
  return new Promise((resolve) => {
    execFile(bin, args, { env: childEnv(env), timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr });
    });
  });
}
