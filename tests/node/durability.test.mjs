// Durability: a 200 from /v1/batch means the events are committed. Several clients stream
// batches; the server is SIGKILLed mid-stream (or asked to stop with SIGTERM/SIGINT), and
// after a restart every acknowledged messageId is stored exactly once, no batch is stored in
// part, and re-sending what was not acknowledged (as a real client retries) completes the
// data without duplicates.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

import { NudgeServer } from './lib/server.mjs';

const CLIENTS = 4;
const BATCH_SIZE = 20;
const CRASH_ROUNDS = 3;
const STREAM_LIMIT_MS = 20_000; // a stream never runs longer than this
const MAX_BATCHES_PER_CLIENT = 2000;

// One batch: 20 events with unique messageIds, mixing identify (tying anonymous ids to
// users, so merges happen under load), track and page, for a small pool of people.
function makeBatch(prefix, client, n) {
  const batch = [];
  for (let i = 0; i < BATCH_SIZE; i++) {
    const messageId = `${prefix}-c${client}-b${n}-e${i}`;
    const person = (n * 7 + i) % 25;
    const userId = `${prefix}-user-${client}-${person}`;
    const anonymousId = `${prefix}-anon-${client}-${person}-${n % 3}`;
    if (i % 10 === 0) {
      batch.push({
        type: 'identify',
        messageId,
        userId,
        anonymousId,
        traits: { n, plan: i % 20 ? 'pro' : 'trial', email: `p${person}@Crash.Example` },
      });
    } else if (i % 5 === 0) {
      batch.push({
        type: 'page',
        messageId,
        anonymousId,
        name: 'Home',
        context: { page: { path: `/p/${i}` } },
      });
    } else {
      batch.push({
        type: 'track',
        messageId,
        userId,
        event: 'Item Viewed',
        properties: { n, i, sku: `sku-${i}` },
      });
    }
  }
  const text = JSON.stringify({ batch, sentAt: new Date().toISOString() });
  return { client, n, ids: batch.map((m) => m.messageId), text, gzip: client % 2 === 1, status: 'pending' };
}

async function post(server, b, timeoutMs = 15_000) {
  const body = b.gzip ? zlib.gzipSync(b.text) : b.text;
  const r = await fetch(`${server.url}/v1/batch`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Authorization: `Basic ${Buffer.from(`${server.writeKey}:`).toString('base64')}`,
    },
    body,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  return { status: r.status, text };
}

// Starts CLIENTS concurrent senders, each posting one batch at a time until stopped, until
// MAX_BATCHES_PER_CLIENT, or until STREAM_LIMIT_MS. Every batch records whether it got a 200.
function startStream(server, prefix) {
  const batches = [];
  const state = { stopped: false, inFlight: 0 };
  const deadline = Date.now() + STREAM_LIMIT_MS;
  const worker = async (client) => {
    for (let n = 0; n < MAX_BATCHES_PER_CLIENT && !state.stopped && Date.now() < deadline; n++) {
      const b = makeBatch(prefix, client, n);
      batches.push(b);
      state.inFlight++;
      try {
        const r = await post(server, b);
        b.status = r.status === 200 ? 'acked' : 'refused';
        b.http = `${r.status} ${r.text}`;
      } catch (err) {
        b.status = 'failed';
        b.http = err.cause?.code ?? err.name;
      } finally {
        state.inFlight--;
      }
    }
  };
  const done = Promise.all(Array.from({ length: CLIENTS }, (_, c) => worker(c)));
  return {
    batches,
    state,
    done,
    acked: () => batches.reduce((k, b) => k + (b.status === 'acked'), 0),
    stop() {
      state.stopped = true;
      return done;
    },
  };
}

// Waits (bounded) until the stream has at least `count` acknowledged batches.
async function waitForAcks(stream, count, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (stream.acked() < count && Date.now() < deadline) await sleep(10);
  assert.ok(stream.acked() >= count, `only ${stream.acked()} batches acknowledged within ${timeoutMs} ms`);
}

async function storedCounts(server) {
  // Requests acknowledged before a crash may still be in the inbox, applied after the start;
  // an admin read answers once every acknowledged request is applied. (A server stopped with
  // SIGTERM or SIGINT applied everything before it exited.)
  if (server.proc) await server.get('/api/v1/workspace');
  const rows = await server.sql(
    "select message_id, count(*) from events where message_id not like 'nudge:%' group by message_id",
  );
  const counts = new Map();
  for (const row of rows) {
    const [id, n] = row.split('|');
    counts.set(id, Number(n));
  }
  return counts;
}

// The invariants after an interruption: acknowledged batches stored entirely, once; any
// other batch stored entirely or not at all; nothing stored that nobody sent.
function checkStored(batches, counts, label) {
  const sentIds = new Set();
  let partial = 0;
  for (const b of batches) {
    for (const id of b.ids) sentIds.add(id);
    const present = b.ids.filter((id) => counts.has(id)).length;
    if (b.status === 'acked') {
      assert.equal(
        present,
        b.ids.length,
        `${label}: acknowledged batch c${b.client}/b${b.n} is missing ${b.ids.length - present} events`,
      );
    } else if (present !== 0 && present !== b.ids.length) {
      partial++;
    }
    b.stored = present === b.ids.length;
  }
  assert.equal(partial, 0, `${label}: ${partial} unacknowledged batches were stored in part`);
  for (const [id, n] of counts) {
    assert.equal(n, 1, `${label}: messageId ${id} stored ${n} times`);
    assert.ok(sentIds.has(id), `${label}: stored messageId ${id} that was never sent`);
  }
}

async function resendUnacknowledged(server, batches) {
  let resent = 0;
  for (const b of batches) {
    if (b.status === 'acked') continue;
    const r = await post(server, b);
    assert.equal(r.status, 200, `re-sending c${b.client}/b${b.n}: ${r.status} ${r.text}`);
    resent++;
  }
  return resent;
}

async function assertAllOnce(server, batches, label) {
  const counts = await storedCounts(server);
  const total = batches.length * BATCH_SIZE;
  assert.equal(counts.size, total, `${label}: ${counts.size} distinct messageIds stored, ${total} sent`);
  for (const b of batches) for (const id of b.ids) assert.equal(counts.get(id), 1, `${label}: ${id}`);
  const ws = await server.get('/api/v1/workspace');
  assert.equal(ws.events, total, `${label}: the admin API counts every event once`);
}

describe('durability', { timeout: 240_000 }, () => {
  const servers = [];
  after(async () => {
    for (const s of servers) await s.dispose();
  });

  for (let round = 1; round <= CRASH_ROUNDS; round++) {
    test(`crash round ${round}: SIGKILL mid-stream loses no acknowledged event and duplicates none`, async (t) => {
      const server = await new NudgeServer().start();
      servers.push(server);
      const prefix = `crash${round}`;
      const stream = startStream(server, prefix);
      try {
        // Stream for a few seconds, a different time each round, before pulling the plug.
        await waitForAcks(stream, 10);
        await sleep(500 + 1000 * round);
        assert.ok(stream.state.inFlight > 0, 'requests are in flight when the server dies');
        const killed = server.kill();
        stream.state.stopped = true; // no new requests after the kill
        const exit = await killed;
        assert.equal(exit.signal, 'SIGKILL');
      } finally {
        await stream.stop();
      }
      const { batches } = stream;
      const acked = batches.filter((b) => b.status === 'acked').length;
      const refused = batches.filter((b) => b.status === 'refused');
      assert.deepEqual(
        refused.map((b) => b.http),
        [],
        'no request was refused while the server ran',
      );
      // Usually a few requests are cut off; all of them may also have been answered just
      // before the signal landed.
      t.diagnostic(`${acked} of ${batches.length} batches acknowledged before SIGKILL`);

      await server.start(); // same data directory
      const counts = await storedCounts(server);
      const replayed = /applying (\d+) acknowledged requests left in the inbox/.exec(server.log);
      t.diagnostic(`${replayed ? replayed[1] : 0} acknowledged requests were applied from the inbox after the restart`);
      checkStored(batches, counts, `after SIGKILL (${acked}/${batches.length} batches acknowledged)`);
      const storedUnacked = batches.filter((b) => b.status !== 'acked' && b.stored).length;
      t.diagnostic(`${storedUnacked} unacknowledged batches were stored whole`);

      // A client retries what it did not see acknowledged, including batches that were in
      // fact stored: deduplication keeps each event once.
      const resent = await resendUnacknowledged(server, batches);
      t.diagnostic(`${resent} batches re-sent`);
      // And a client that retries an acknowledged batch by mistake changes nothing either.
      const again = await post(
        server,
        batches.find((b) => b.status === 'acked'),
      );
      assert.equal(again.status, 200);
      await assertAllOnce(server, batches, 'after re-sending');

      const exit = await server.stop();
      assert.deepEqual(exit, { code: 0, signal: null }, server.log);
    });
  }

  // One inbox record as docs/ingest.md describes the format: u32 payload length, u32 CRC-32 of
  // the payload, then id, workspace, arrival (i64 each), flags, endpoint length, endpoint, body.
  // Each record here is a group of its own, as one request at a time would be.
  const inboxRecord = (id, ws, endpoint, body, flags = 2) => {
    const ep = Buffer.from(endpoint);
    const payload = Buffer.concat([Buffer.alloc(26), ep, Buffer.from(body)]);
    payload.writeBigInt64LE(BigInt(id), 0);
    payload.writeBigInt64LE(BigInt(ws), 8);
    payload.writeBigInt64LE(BigInt(Date.now()), 16);
    payload.writeUInt8(flags, 24); // 2: the last record of its group
    payload.writeUInt8(ep.length, 25);
    const head = Buffer.alloc(8);
    head.writeUInt32LE(payload.length, 0);
    head.writeUInt32LE(zlib.crc32(payload), 4);
    return Buffer.concat([head, payload]);
  };

  // Requests acknowledged and not applied, as a crash leaves them: `write(server, ws, mark,
  // rows)` puts rows [endpoint, body] past the store's mark where the server finds them.
  async function leftAtACrash(name, write) {
    const server = await new NudgeServer().start();
    servers.push(server);
    const first = makeBatch(`${name}-before`, 0, 0);
    assert.equal((await post(server, first)).status, 200);
    await server.get('/api/v1/workspace');
    await server.stop();
    const [mark] = await server.sql("select coalesce((select value from marks where name = 'inbox_applied'), 0)");
    const [ws] = await server.sql("select id from workspaces where name = 'default'");
    const left = makeBatch(`${name}-left`, 0, 1);
    const track = { userId: `${name}-left-track`, event: 'Left Behind', messageId: `${name}-left-track-1` };
    await write(server, Number(ws), Number(mark), [
      ['/v1/batch', left.text],
      ['/v1/track', JSON.stringify(track)],
    ]);

    await server.start();
    const counts = await storedCounts(server);
    const trackBatch = { client: 0, n: 2, ids: [track.messageId], status: 'acked' };
    checkStored([{ ...first, status: 'acked' }, { ...left, status: 'acked' }, trackBatch], counts, 'after the restart');
    assert.equal(counts.get(track.messageId), 1);
    assert.match(server.log, /applying 2 acknowledged requests left in the inbox/);
    // Once applied, a restart applies nothing again.
    await server.stop();
    await server.start();
    assert.deepEqual(await storedCounts(server), counts);
    assert.equal(server.log.match(/left in the inbox/g).length, 1, server.log);
    await server.stop();
    return server;
  }

  test('requests acknowledged but not applied at a crash are applied once at the next start', async () => {
    // What a crash between the inbox commit (the acknowledgement) and the store commit leaves:
    // records in DATA/inbox/ past the position the store recorded, and a torn one after them
    // (a group being written, never acknowledged).
    await leftAtACrash('inbox', async (server, ws, mark, rows) => {
      const records = rows.map(([endpoint, body], i) => inboxRecord(mark + 1 + i, ws, endpoint, body));
      const torn = inboxRecord(mark + 1 + rows.length, ws, '/v1/track', '{"never":"acknowledged"}').subarray(0, 20);
      const name = String(mark + 1).padStart(20, '0') + '.log';
      await fs.writeFile(
        path.join(server.dataDir, 'inbox', name),
        Buffer.concat([Buffer.from('NUDGEIB1'), ...records, torn]),
      );
    });
  });

  test("an earlier version's inbox (inbox.db) is applied and removed at start", async () => {
    const server = await leftAtACrash('legacy', async (server, ws, mark, rows) => {
      const quote = (text) => `'${text.replaceAll("'", "''")}'`;
      const sql = [
        'create table inbox(id integer primary key, ws integer not null, endpoint text not null, received_at integer not null, body text not null);',
        ...rows.map(([endpoint, body], i) => `insert into inbox values(${mark + 1 + i}, ${ws}, '${endpoint}', ${Date.now()}, ${quote(body)});`),
      ].join('\n');
      await promisify(execFile)('sqlite3', [path.join(server.dataDir, 'inbox.db'), sql]);
    });
    await assert.rejects(fs.access(path.join(server.dataDir, 'inbox.db')));
  });

  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal} during a stream drains, commits every acknowledged event and exits 0`, async (t) => {
      const server = await new NudgeServer().start();
      servers.push(server);
      const stream = startStream(server, signal.toLowerCase());
      let exit;
      try {
        await waitForAcks(stream, 10);
        await sleep(1500);
        assert.ok(stream.state.inFlight > 0, `requests are in flight at ${signal}`);
        exit = await server.stop(signal);
      } finally {
        await stream.stop();
      }
      const { batches } = stream;
      const acked = batches.filter((b) => b.status === 'acked').length;
      t.diagnostic(`${acked} of ${batches.length} batches acknowledged; exit ${JSON.stringify(exit)}`);

      // Read the file the stopped server left behind: what was acknowledged is there.
      const counts = await storedCounts(server);
      checkStored(batches, counts, `after ${signal} (${acked}/${batches.length} batches acknowledged)`);
      // While draining, the server may turn new requests away with a 503 (clients retry
      // those); any other refusal is a bug.
      const refused = batches.filter((b) => b.status === 'refused' && !b.http.startsWith('503 '));
      assert.deepEqual(
        refused.map((b) => b.http),
        [],
        'no request was refused while draining',
      );
      assert.deepEqual(exit, { code: 0, signal: null }, `exit after ${signal}:\n${server.log}`);

      await server.start();
      await resendUnacknowledged(server, batches);
      await assertAllOnce(server, batches, `after ${signal} and re-sending`);
      const exit2 = await server.stop();
      assert.deepEqual(exit2, { code: 0, signal: null });
    });
  }
});
