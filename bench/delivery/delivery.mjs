// The driver of bench/delivery.sh: the whole pipeline of one `nudge serve`, from a tracked
// event to a message accepted by an SMTP relay, beside nodemailer's pool into the same relay.
//
//   1. starts sink.mjs (an SMTP server that notes arrival times) and `nudge serve` with a
//      nudge.yaml whose only email relay is the sink (pool of --pool connections);
//   2. PUTs the template `hello` (subject and HTML with {{ contact.traits.first_name }}) and the
//      journey `hello` (trigger "Bench Signal", entry every_time, one send step), then
//      identifies --count contacts with an email address (/v1/batch, 250 per request);
//   3. throughput: --count track events "Bench Signal" (/v1/batch, --batch per request,
//      --concurrency requests at a time), one per contact; timed from the first request to the
//      sink's last arrival, then until /metrics counts them sent and every message of the
//      journey is `sent` (GET /api/v1/messages?journey=hello, page by page). nudge's resident
//      memory is sampled every 100 ms and its peak (VmHWM, reset before the phase through
//      /proc/PID/clear_refs) read afterwards; CPU per thread name from /proc/PID/task;
//   4. latency: --latency-count events on /v1/track, one request each, paced at --latency-rate
//      (open loop); per event, the HTTP 200 → the sink reading the end of that contact's message;
//   5. stops nudge (SIGTERM, exit status checked), then the references into the same sink:
//      nodemailer's pooled transport (bench/email/nodemailer_bench.mjs) and nudge's own
//      EmailSender alone (email_bench), each sending --count personalized messages.
// Prints one JSON object on stdout (progress on stderr); exit status 1 when a check failed
// ("problems" says which: messages not sent, lost, duplicated, a server that crashed).
//
// Usage: node delivery.mjs --nudge BIN --tmpdir DIR [--email-bench BIN] [--count 20000]
//          [--latency-count 2000] [--latency-rate 200] [--batch 100] [--concurrency 4]
//          [--pool 8] [--timeout 600] [--stall-seconds 60]
// Every wait ends at --timeout for the whole run, or when what it waits for made no progress for
// --stall-seconds (a stuck pipeline: reported as a problem with the messages' statuses).
import { fork, spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');

const args = {
  nudge: '',
  tmpdir: '',
  'email-bench': '',
  count: 20000,
  'latency-count': 2000,
  'latency-rate': 200,
  batch: 100,
  concurrency: 4,
  pool: 8,
  timeout: 600,
  'stall-seconds': 60,
};
for (let i = 2; i < process.argv.length; i++) {
  const key = process.argv[i].replace(/^--/, '');
  if (!(key in args)) fail(`unknown argument ${process.argv[i]}`);
  if (typeof args[key] === 'number') args[key] = Number(process.argv[++i]);
  else args[key] = process.argv[++i] ?? '';
}
for (const k of ['count', 'latency-count', 'latency-rate', 'batch', 'concurrency', 'pool', 'timeout', 'stall-seconds']) {
  if (!Number.isInteger(args[k]) || args[k] <= 0) fail(`--${k} must be a positive whole number`);
}
if (!args.nudge || !fs.existsSync(args.nudge)) fail(`--nudge: no nudge binary at '${args.nudge}'`);
if (!args.tmpdir || !fs.existsSync(args.tmpdir)) fail(`--tmpdir: no directory '${args.tmpdir}'`);
// One contact per latency event, among the contacts of the throughput phase.
args['latency-count'] = Math.min(args['latency-count'], args.count);

const N = args.count;
const L = args['latency-count'];
const startedAt = process.hrtime.bigint();
const deadline = Date.now() + args.timeout * 1000;
const problems = [];
const out = { benchmark: 'delivery: tracked event to message at an SMTP relay, through nudge serve' };

function log(msg) {
  process.stderr.write(`delivery: ${msg}\n`);
}
function fail(msg) {
  process.stderr.write(`delivery: ${msg}\n`);
  console.log(JSON.stringify({ benchmark: 'delivery', ok: false, error: msg }));
  process.exit(1);
}
function left() {
  return deadline - Date.now();
}
const nsNow = () => process.hrtime.bigint();
const msBetween = (a, b) => Number(b - a) / 1e6;
const round = (v, d = 3) => (Number.isFinite(v) ? Number(v.toPrecision(d + 1)) : v);
const loadavg = () => fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

function percentiles(values) {
  if (values.length === 0) return { count: 0 };
  const s = Float64Array.from(values).sort();
  const at = (q) => s[Math.min(s.length, Math.max(1, Math.ceil(q * s.length))) - 1];
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    count: s.length,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    min: round(s[0]),
    max: round(s[s.length - 1]),
    mean: round(mean),
  };
}

// --- processes ---------------------------------------------------------------------------------

const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

// The sink, and a request/answer helper over its IPC channel.
const sink = fork(path.join(here, 'sink.mjs'), ['--port', '0'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
children.push(sink);
const sinkReplies = [];
sink.on('message', (m) => {
  if (m.error) problems.push(`sink: ${m.error}`);
  const waiter = sinkReplies.shift();
  if (waiter) waiter(m);
});
// Replies come back in the order of the questions; a question left unanswered for 10 s fails
// the run (the sink is then gone or stuck, and later replies could not be matched).
function askSink(cmd) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`the SMTP sink did not answer '${cmd}' within 10 s`), 10000);
    sinkReplies.push((m) => {
      clearTimeout(timer);
      resolve(m);
    });
    sink.send({ cmd });
  });
}
const sinkPort = await new Promise((resolve) => {
  const timer = setTimeout(() => fail('the SMTP sink did not start within 10 s'), 10000);
  sinkReplies.push((m) => {
    clearTimeout(timer);
    resolve(m.port);
  });
});

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const writeKey = `wk_${randomBytes(12).toString('hex')}`;
const adminKey = `ak_${randomBytes(12).toString('hex')}`;
const dataDir = path.join(args.tmpdir, 'data');
const logPath = path.join(args.tmpdir, 'nudge.log');
let nudge = null;
let nudgeExit = null;
let port = 0;

async function startNudge() {
  port = await freePort();
  const config = [
    `listen: 127.0.0.1:${port}`,
    `public_url: http://127.0.0.1:${port}`,
    'log_level: warn',
    'channels:',
    '  email:',
    '    from: "Acme <hello@acme.test>"',
    '    postal_address: "Acme Inc, 1 Main St, Springfield"',
    `    relays: [ { name: sink, host: 127.0.0.1, port: ${sinkPort}, tls: none, pool: ${args.pool} } ]`,
    '',
  ].join('\n');
  const configPath = path.join(args.tmpdir, 'nudge.yaml');
  fs.writeFileSync(configPath, config);
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NUDGE_')) env[k] = v;
  const logFd = fs.openSync(logPath, 'a');
  nudge = spawn(args.nudge, ['serve', '--config', configPath, '--data', dataDir], {
    env: { ...env, NUDGE_WRITE_KEY: writeKey, NUDGE_ADMIN_KEY: adminKey },
    stdio: ['ignore', logFd, logFd],
    cwd: args.tmpdir,
  });
  fs.closeSync(logFd);
  children.push(nudge);
  nudgeExit = new Promise((resolve) => nudge.once('exit', (code, signal) => resolve({ code, signal })));
  let exited = null;
  nudgeExit.then((e) => (exited = e));
  const until = Date.now() + 30000;
  while (Date.now() < until) {
    if (exited) return false;
    try {
      const r = await request('GET', '/healthz');
      if (r.status === 200) return true;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  return false;
}

function logTail(bytes = 4000) {
  try {
    const text = fs.readFileSync(logPath, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}

// --- HTTP --------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const basic = `Basic ${Buffer.from(`${writeKey}:`).toString('base64')}`;
const bearer = `Bearer ${adminKey}`;

function request(method, urlPath, { body, headers = {}, timeout = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent,
        timeout,
        headers: { ...(data ? { 'content-length': data.length } : {}), ...headers },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString(), at: nsNow() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer within ${timeout} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}
const admin = (method, p, body) =>
  request(method, p, { body, headers: { authorization: bearer, 'content-type': 'application/yaml' } });
const ingest = (p, body) =>
  request('POST', p, { body, headers: { authorization: basic, 'content-type': 'application/json' } });

// Polls probe() (a count that grows as the work is done) every everyMs until done(count), the
// run's deadline, nudge exiting, or no change for --stall-seconds. Returns {value, finished}.
async function waitUntil(probe, done, everyMs = 50) {
  let value = await probe();
  let changedAt = Date.now();
  while (!done(value)) {
    if (left() <= 0 || Date.now() - changedAt > args['stall-seconds'] * 1000) break;
    if (nudge.exitCode !== null || nudge.signalCode !== null) break;
    await sleep(everyMs);
    const v = await probe();
    if (v !== value) changedAt = Date.now();
    value = v;
  }
  return { value, finished: done(value) };
}

// Runs fn(i) for i in [0, n) with at most `width` at a time.
async function pool(n, width, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) await fn(next++);
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
}

// --- /proc -------------------------------------------------------------------------------------

const clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
function statusKb(pid, key) {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
// CPU seconds per thread name (digits folded: "deliver-1", "deliver-2" -> "deliver-N").
function threadCpu(pid) {
  const byName = {};
  let dir = [];
  try {
    dir = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of dir) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+/g, 'N');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cpu = (Number(fields[11]) + Number(fields[12])) / clkTck;
      byName[name] = (byName[name] ?? 0) + cpu;
    } catch {
      // the thread ended meanwhile
    }
  }
  return byName;
}
function cpuDelta(before, after, seconds) {
  const cores = {};
  let total = 0;
  for (const [name, cpu] of Object.entries(after)) {
    const d = cpu - (before[name] ?? 0);
    total += d;
    if (d > 0.005 * seconds) cores[name] = round(d / seconds);
  }
  return { total: round(total / seconds), by_thread: cores };
}
function fsType(dir) {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '-T', dir]).toString().trim();
  } catch {
    return 'unknown';
  }
}
async function metric(name) {
  const r = await request('GET', '/metrics');
  let sum = 0;
  for (const line of r.text.split('\n')) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

// Every message of the journey, counted by status (page by page).
async function messageStatuses() {
  const counts = {};
  const details = {};
  let cursor = null;
  for (let pages = 0; pages < 10000; pages++) {
    const q = `/api/v1/messages?journey=hello&limit=1000${cursor ? `&cursor=${cursor}` : ''}`;
    const r = await request('GET', q, { headers: { authorization: bearer } });
    if (r.status !== 200) throw new Error(`GET ${q}: ${r.status} ${r.text.slice(0, 300)}`);
    const page = JSON.parse(r.text);
    for (const m of page.messages) {
      counts[m.status] = (counts[m.status] ?? 0) + 1;
      if (m.status !== 'sent' && Object.keys(details).length < 5) details[m.id] = `${m.status}: ${m.detail}`;
    }
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return { counts, examples_not_sent: details };
}

// --- the contacts, the template and the journey ------------------------------------------------

const FIRST = ['Anna', 'Jürgen', 'Sofia', 'Liam', 'Mei', 'Olivia', 'Noah', 'Zoë', 'Mateo', 'Aiko',
  'Chloé', 'Ivan', 'Priya', 'Lucas', 'Emma', 'Björn', 'Fatma', 'Hiroshi', 'Elena', 'Tomás'];
const LAST = ['Schmidt', 'García', 'Rossi', 'Nguyen', 'Müller', 'Smith', 'Kowalski', 'Dubois'];
const emailOf = (i) => `b${i}@example${i % 50}.test`;
const runId = randomBytes(4).toString('hex');

const TEMPLATE = `id: hello
channel: email
subject: "{{ contact.traits.first_name }}, three stories picked for you"
preheader: "What teams like yours read this week"
html: |
  <html><body>
  <h1 style="font-family:Arial,sans-serif">Hi {{ contact.traits.first_name }},</h1>
  {% for n in (1..3) %}<p style="font-family:Arial,sans-serif;font-size:15px;line-height:22px">Story {{ n }}: teams like yours at {{ contact.traits.company }} cut their onboarding time in half last quarter. <a href="https://acme.test/stories/{{ n }}?plan={{ contact.traits.plan }}">Read more</a></p>
  {% endfor %}<p>See you soon, {{ contact.traits.first_name }}!</p>
  </body></html>
`;
const JOURNEY = `id: hello
name: Bench hello
goal: benchmark
trigger: { event: Bench Signal }
entry: every_time
steps:
  - id: hello-email
    send: { channel: email, template: hello }
`;

function trackEvent(i, phase) {
  return {
    type: 'track',
    userId: `b${i}`,
    event: 'Bench Signal',
    messageId: `${runId}-${phase}-${i}`,
    properties: { n: i, phase },
    context: { ip: '203.0.113.7', library: { name: 'bench/delivery', version: '1' } },
  };
}

// --- run ---------------------------------------------------------------------------------------

out.settings = {
  count: N,
  latency_count: L,
  latency_rate: args['latency-rate'],
  batch: args.batch,
  concurrency: args.concurrency,
  pool: args.pool,
};
out.cores = os.cpus().length;
out.data_fs = fsType(args.tmpdir);
out.load_average_start = loadavg();

log(`SMTP sink on 127.0.0.1:${sinkPort}; starting nudge serve`);
if (!(await startNudge())) {
  fail(`nudge serve did not become healthy: ${logTail(2000).replace(/\s+/g, ' ')}`);
}
const pid = nudge.pid;

try {
  // Setup.
  const policies = await request('GET', '/api/v1/policies', { headers: { authorization: bearer } });
  out.policies = JSON.parse(policies.text);
  let r = await admin('PUT', '/api/v1/templates/hello', TEMPLATE);
  if (r.status !== 200) throw new Error(`PUT /api/v1/templates/hello: ${r.status} ${r.text}`);
  r = await admin('PUT', '/api/v1/journeys/hello', JOURNEY);
  if (r.status !== 200) throw new Error(`PUT /api/v1/journeys/hello: ${r.status} ${r.text}`);

  log(`identifying ${N} contacts`);
  const idStart = nsNow();
  const perIdentify = 250;
  await pool(Math.ceil(N / perIdentify), 4, async (b) => {
    const batch = [];
    for (let i = b * perIdentify; i < Math.min(N, (b + 1) * perIdentify); i++) {
      batch.push({
        type: 'identify',
        userId: `b${i}`,
        messageId: `${runId}-id-${i}`,
        traits: {
          email: emailOf(i),
          first_name: FIRST[i % FIRST.length],
          last_name: LAST[Math.floor(i / 20) % LAST.length],
          company: `Company ${i % 997}`,
          plan: ['trial', 'growth', 'pro'][i % 3],
        },
      });
    }
    const res = await ingest('/v1/batch', { batch });
    if (res.status !== 200) throw new Error(`identify batch ${b}: ${res.status} ${res.text.slice(0, 200)}`);
  });
  const idSeconds = msBetween(idStart, nsNow()) / 1000;
  out.identify = { contacts: N, seconds: round(idSeconds), contacts_per_s: Math.round(N / idSeconds) };

  // Throughput.
  log(`throughput: ${N} events, ${args.batch} per /v1/batch request, ${args.concurrency} at a time`);
  await sleep(500);
  let hwmReset = true;
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    hwmReset = false;
  }
  const rssBefore = statusKb(pid, 'VmRSS');
  const sentBefore = await metric('nudge_messages_sent_total');
  await askSink('record');
  const sink0 = await askSink('stats');
  const cpu0 = threadCpu(pid);
  const driverCpu0 = process.cpuUsage();
  const load0 = loadavg();
  let rssPeakSampled = rssBefore;
  const sampler = setInterval(() => {
    const v = statusKb(pid, 'VmRSS');
    if (v !== null) rssPeakSampled = Math.max(rssPeakSampled, v);
  }, 100);

  const t0 = nsNow();
  const progress = [];
  const progressTimer = setInterval(() => {
    askSink('stats').then(
      (st) => progress.push([round(msBetween(t0, nsNow()) / 1000), st.distinct_recipients]),
      () => {},
    );
  }, 1000);
  const batches = Math.ceil(N / args.batch);
  let ingestFailures = 0;
  let firstIngestError = null;
  await pool(batches, args.concurrency, async (b) => {
    const batch = [];
    for (let i = b * args.batch; i < Math.min(N, (b + 1) * args.batch); i++) batch.push(trackEvent(i, 't'));
    try {
      const res = await ingest('/v1/batch', { batch });
      if (res.status !== 200) throw new Error(`${res.status} ${res.text.slice(0, 200)}`);
    } catch (e) {
      ingestFailures++;
      firstIngestError ??= String(e.message || e);
    }
  });
  const tIngested = nsNow();
  if (ingestFailures) problems.push(`throughput: ${ingestFailures} /v1/batch requests failed: ${firstIngestError}`);

  // Every contact's message at the sink (a message sent twice counts once), then counted sent.
  let sinkNow = sink0;
  const reached = await waitUntil(
    async () => (sinkNow = await askSink('stats')).distinct_recipients,
    (v) => v >= N,
  );
  clearInterval(progressTimer);
  const distinctArrived = sinkNow.distinct_recipients;
  const tLastArrival = BigInt(sinkNow.last_new_recipient_ns);
  const counted = await waitUntil(
    async () => (await metric('nudge_messages_sent_total')) - sentBefore,
    (v) => v >= N,
  );
  if (!reached.finished || !counted.finished) {
    problems.push(`throughput: stopped waiting with ${distinctArrived} of ${N} contacts reached and ` +
      `${counted.value} messages counted sent (no progress for ${args['stall-seconds']} s, or the time was up)`);
  }
  const tCounted = nsNow();
  clearInterval(sampler);
  const cpu1 = threadCpu(pid);
  const driverCpu = process.cpuUsage(driverCpu0);
  const sink1 = await askSink('stats');
  const phaseSeconds = msBetween(t0, tCounted) / 1000;
  // The counter goes up when the relay answers; the status is written just after, in batches.
  let statuses = null;
  await waitUntil(
    async () => {
      statuses = await messageStatuses();
      return statuses.counts.sent ?? 0;
    },
    (v) => v >= N || (statuses.counts.sending ?? 0) === 0,
    200,
  );
  const tAllSent = nsNow();
  const recT = await askSink('arrivals');
  const arrived = sink1.messages - sink0.messages;
  const deliverSeconds = msBetween(t0, tLastArrival) / 1000;
  out.throughput = {
    messages: N,
    arrived_at_sink: arrived,
    recipients_reached: distinctArrived,
    ingest_seconds: round(msBetween(t0, tIngested) / 1000),
    ingest_events_per_s: Math.round(N / (msBetween(t0, tIngested) / 1000)),
    seconds_to_last_arrival: round(deliverSeconds),
    messages_per_s: Math.round(distinctArrived / deliverSeconds),
    seconds_to_all_sent_in_metrics: round(phaseSeconds),
    seconds_to_all_sent_in_api: round(msBetween(t0, tAllSent) / 1000),
    duplicates_at_sink: recT.duplicates,
    ...(recT.duplicates ? { duplicate_examples: recT.duplicate_examples } : {}),
    statuses: statuses.counts,
    ...(Object.keys(statuses.examples_not_sent).length ? { examples_not_sent: statuses.examples_not_sent } : {}),
    progress_seconds_recipients_reached: progress,
    rss_mb: {
      before: round(rssBefore / 1024),
      peak_sampled: round(rssPeakSampled / 1024),
      peak_vm_hwm: round(statusKb(pid, 'VmHWM') / 1024),
      vm_hwm_reset_before_phase: hwmReset,
      after: round(statusKb(pid, 'VmRSS') / 1024),
    },
    cpu_cores: {
      nudge: cpuDelta(cpu0, cpu1, phaseSeconds),
      sink: round((sink1.cpu_ms - sink0.cpu_ms) / 1000 / phaseSeconds),
      driver: round((driverCpu.user + driverCpu.system) / 1e6 / phaseSeconds),
      note: 'cores used from the first request until every message was counted sent; nudge per thread name',
    },
    sink_bytes_per_message: Math.round((sink1.bytes - sink0.bytes) / Math.max(1, arrived)),
    load_average_before_after: [load0, loadavg()],
  };
  if (distinctArrived !== N) problems.push(`throughput: ${distinctArrived} of ${N} contacts got their message`);
  if (recT.duplicates) problems.push(`throughput: ${recT.duplicates} recipients got their message twice`);
  if ((statuses.counts.sent ?? 0) !== N) {
    problems.push(`throughput: ${statuses.counts.sent ?? 0} of ${N} messages are sent: ${JSON.stringify(statuses.counts)}`);
  }

  // Latency.
  const rate = args['latency-rate'];
  log(`latency: ${L} events on /v1/track at ${rate}/s`);
  await askSink('record');
  const load2 = loadavg();
  const sent2 = await metric('nudge_messages_sent_total');
  const ack = new Array(L).fill(null);
  const sentAt = new Array(L).fill(null);
  const ackMs = [];
  let trackFailures = 0;
  let firstTrackError = null;
  const inflight = [];
  const lStart = nsNow();
  const lStartMs = performance.now();
  for (let i = 0; i < L && left() > 0; i++) {
    const wait = lStartMs + (i * 1000) / rate - performance.now();
    if (wait > 1) await sleep(wait);
    const sent = nsNow();
    sentAt[i] = sent;
    inflight.push(
      ingest('/v1/track', trackEvent(i, 'l'))
        .then((res) => {
          if (res.status !== 200) throw new Error(`${res.status} ${res.text.slice(0, 200)}`);
          ack[i] = res.at;
          ackMs.push(msBetween(sent, res.at));
        })
        .catch((e) => {
          trackFailures++;
          firstTrackError ??= String(e.message || e);
        }),
    );
  }
  await Promise.all(inflight);
  const lSubmitted = nsNow();
  const reachedL = await waitUntil(async () => (await askSink('stats')).distinct_recipients, (v) => v >= L);
  const countedL = await waitUntil(async () => (await metric('nudge_messages_sent_total')) - sent2, (v) => v >= L);
  if (!reachedL.finished || !countedL.finished) {
    problems.push(`latency: stopped waiting with ${reachedL.value} of ${L} contacts reached and ` +
      `${countedL.value} messages counted sent`);
  }
  const rec = await askSink('arrivals');
  const arrivalOf = new Map(rec.arrivals.map(([rcpt, ns]) => [rcpt, BigInt(ns)]));
  const lat = [];
  const total = [];
  let missing = 0;
  for (let i = 0; i < L; i++) {
    const at = arrivalOf.get(emailOf(i));
    if (ack[i] === null) continue;
    if (at === undefined) {
      missing++;
    } else {
      lat.push(msBetween(ack[i], at));
      total.push(msBetween(sentAt[i], at));
    }
  }
  out.latency = {
    events: L,
    target_events_per_s: rate,
    offered_events_per_s: Math.round(L / (msBetween(lStart, lSubmitted) / 1000)),
    track_http_ms: percentiles(ackMs),
    ack_to_sink_ms: percentiles(lat),
    request_to_sink_ms: percentiles(total),
    arrived_at_sink: rec.arrivals.length,
    duplicates_at_sink: rec.duplicates,
    ...(rec.duplicates ? { duplicate_examples: rec.duplicate_examples } : {}),
    load_average_before_after: [load2, loadavg()],
    note:
      'per event: ack_to_sink = the HTTP 200 of its /v1/track request read by the client → the sink ' +
      'reading the end of its message; request_to_sink = the request sent → the same; one clock ' +
      '(CLOCK_MONOTONIC). The 200 is sent after the commit that queues the message, and delivery ' +
      'starts on that commit too, so the message may reach the sink before the client reads the ' +
      '200: min may be below 0',
  };
  if (trackFailures) problems.push(`latency: ${trackFailures} /v1/track requests failed: ${firstTrackError}`);
  if (missing) problems.push(`latency: ${missing} of ${L} messages did not reach the sink`);
  if (rec.duplicates) problems.push(`latency: ${rec.duplicates} messages reached the sink twice`);
  const allStatuses = await messageStatuses();
  out.messages_after_both = allStatuses.counts;
  if ((allStatuses.counts.sent ?? 0) !== N + L) {
    problems.push(`after both phases ${allStatuses.counts.sent ?? 0} of ${N + L} messages are sent: ${JSON.stringify(allStatuses.counts)}`);
    out.examples_not_sent = allStatuses.examples_not_sent;
  }
} catch (e) {
  problems.push(`error: ${e.message || e}`);
}

// Stop nudge; a clean exit is part of the result.
if (nudge.exitCode === null && nudge.signalCode === null) nudge.kill('SIGTERM');
const exit = await Promise.race([nudgeExit, sleep(30000, null)]);
if (exit === null) {
  nudge.kill('SIGKILL');
  problems.push('nudge did not exit within 30 s of SIGTERM');
} else if (exit.code !== 0) {
  problems.push(`nudge exited with ${JSON.stringify(exit)}`);
}
out.server_exit = exit;

// References into the same sink, nudge stopped.
async function runJson(cmd, argv, label) {
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(p);
    let text = '';
    p.stdout.on('data', (c) => (text += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), Math.max(120000, left()));
    p.on('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text));
      } catch {
        problems.push(`${label}: exit ${code}, no JSON`);
        resolve({ ok: false, exit: code });
      }
    });
  });
}
out.reference = {};
{
  log(`reference: nodemailer pool, ${N} messages`);
  const s0 = await askSink('stats');
  const nm = await runJson(process.execPath, [
    path.join(root, 'bench/email/nodemailer_bench.mjs'), '--port', String(sinkPort), '--count', String(N),
    '--pool', String(args.pool), '--window', '64', '--modules', path.join(here, 'package.json'),
  ], 'nodemailer');
  const s1 = await askSink('stats');
  nm.arrived_at_sink = s1.messages - s0.messages;
  nm.load_average_after = loadavg();
  if (nm.arrived_at_sink !== N) problems.push(`nodemailer: the sink received ${nm.arrived_at_sink} of ${N}`);
  out.reference.nodemailer = nm;
}
if (args['email-bench'] && fs.existsSync(args['email-bench'])) {
  log(`reference: nudge's EmailSender alone (email_bench), ${N} messages`);
  const s0 = await askSink('stats');
  const eb = await runJson(args['email-bench'], [
    '--port', String(sinkPort), '--count', String(N), '--pool', String(args.pool), '--window', '64',
    '--label', 'email_bench',
  ], 'email_bench');
  const s1 = await askSink('stats');
  eb.arrived_at_sink = s1.messages - s0.messages;
  eb.load_average_after = loadavg();
  out.reference.nudge_email_sender_alone = eb;
}

const nudgeRate = out.throughput?.messages_per_s ?? 0;
const nmRate = out.reference.nodemailer?.messages_per_second ?? 0;
const ebRate = out.reference.nudge_email_sender_alone?.messages_per_second ?? 0;
out.ratios = {
  pipeline_vs_nodemailer: nmRate ? round(nudgeRate / nmRate) : null,
  ...(ebRate ? { pipeline_vs_email_sender_alone: round(nudgeRate / ebRate) } : {}),
};
out.goals = {
  note: "the email transport's aims (bench/email), applied here to the whole pipeline of nudge serve",
  throughput_vs_nodemailer: { value: out.ratios.pipeline_vs_nodemailer, target: 5, rule: 'at least', met: (out.ratios.pipeline_vs_nodemailer ?? 0) >= 5 },
  peak_rss_mb_while_sending: {
    value: out.throughput?.rss_mb.peak_vm_hwm ?? null,
    target: 64,
    rule: 'at most',
    met: (out.throughput?.rss_mb.peak_vm_hwm ?? 1e9) <= 64,
  },
};
out.problems = problems;
if (problems.length) out.nudge_log_tail = logTail();
out.ok = problems.length === 0;
out.load_average_end = loadavg();
out.seconds = round(msBetween(startedAt, nsNow()) / 1000);
console.log(JSON.stringify(out, null, 2));
sink.disconnect();
process.exit(out.ok ? 0 : 1);
