// The tracking and admin APIs over raw HTTP: every kind of bad input gets a clear error that
// says what and where, nothing of a refused request is stored, and the server keeps serving;
// plus gzip, write keys, deduplication, clock skew, workspace isolation, pagination, GDPR
// erasure and /metrics.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';

import { NudgeServer, request, uid } from './lib/server.mjs';

// Asserts a refusal: status, JSON body with success:false and the code, and where it is.
function assertError(r, { status, code, field, line, column, mentions }, label = '') {
  const ctx = `${label} -> ${r.status} ${r.text}`;
  assert.equal(r.status, status, `status: ${ctx}`);
  assert.ok(r.json && typeof r.json === 'object', `a JSON body: ${ctx}`);
  assert.equal(r.json.success, false, ctx);
  assert.equal(r.json.code, code, ctx);
  assert.equal(typeof r.json.error, 'string', ctx);
  assert.ok(r.json.error.length > 0, ctx);
  if (field !== undefined) assert.equal(r.json.field, field, `field: ${ctx}`);
  if (line !== undefined) {
    assert.equal(r.json.line, line, `line: ${ctx}`);
    assert.ok(Number.isInteger(r.json.column) && r.json.column >= 1, `column: ${ctx}`);
    if (column) {
      const [lo, hi] = column;
      assert.ok(r.json.column >= lo && r.json.column <= hi, `column in [${lo}, ${hi}]: ${ctx}`);
    }
    assert.ok(r.json.error.includes(`${line}:${r.json.column}`), `the message repeats line:column: ${ctx}`);
  }
  if (mentions) assert.match(r.json.error, mentions, ctx);
}

function assertOk(r, label = '') {
  assert.equal(r.status, 200, `${label}: ${r.status} ${r.text}`);
  assert.deepEqual(r.json, { success: true }, label);
}

// Every file under dir (the data directory), by path.
function filesUnder(dir) {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath ?? e.path, e.name));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function counts(ws) {
  const w = await ws.get('/api/v1/workspace');
  return { contacts: w.contacts, events: w.events };
}

async function assertStillServing(ws) {
  const h = await request(`${ws.url}/healthz`);
  assert.equal(h.status, 200, `/healthz: ${h.text}`);
  const user = uid('alive');
  assertOk(
    await ws.send('/v1/track', { userId: user, event: 'Still Alive' }),
    'a good request after bad ones',
  );
  const events = await ws.events(user);
  assert.equal(events.length, 1);
  return user;
}

const track = (userId, extra = {}) => ({ type: 'track', userId, event: 'Thing Happened', ...extra });

describe('tracking API over raw HTTP', { timeout: 120_000 }, () => {
  let server;

  before(async () => {
    server = await new NudgeServer().start();
  });

  after(async () => {
    await server?.dispose();
  });

  test('bad input gets a 400 naming the field or line:column, stores nothing, and the server keeps serving', async () => {
    const ws = await server.createWorkspace();
    const victims = Array.from({ length: 8 }, (_, i) => uid(`victim${i}`));
    const [v0, v1, v2, v3, v4, v5, v6, v7] = victims;
    const cases = [
      {
        name: 'malformed JSON',
        path: '/v1/track',
        body: `{"userId": "${v0}",\n  "event": "X",\n  "properties": {"a": tru}\n}`,
        expect: { line: 3, column: [23, 26], mentions: /malformed JSON/ },
      },
      {
        name: 'malformed JSON in the third line of a batch',
        path: '/v1/batch',
        body: `{"batch": [\n  {"type": "track", "userId": "${v1}", "event": "E"},\n  {"type": "track" "userId": "${v1}", "event": "E"}\n]}`,
        expect: { line: 3, column: [19, 27], mentions: /malformed JSON/ },
      },
      {
        name: 'truncated JSON',
        path: '/v1/track',
        body: `{"userId":"u3","event":"E"`,
        expect: { line: 1, column: [24, 27], mentions: /end of input/ },
      },
      { name: 'empty body', path: '/v1/track', body: '', expect: { line: 1, column: [1, 1] } },
      {
        name: 'trailing garbage',
        path: '/v1/track',
        body: `{"userId":"${v2}","event":"E"} garbage`,
        expect: { line: 1 },
      },
      {
        name: 'a JSON array body',
        path: '/v1/track',
        body: '[]',
        expect: { field: 'body', mentions: /object/ },
      },
      {
        name: 'invalid UTF-8',
        path: '/v1/track',
        body: Buffer.concat([
          Buffer.from(`{"userId":"${v2}","event":"E","properties":{"x":"`),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('"}}'),
        ]),
        expect: { line: 1, mentions: /UTF-8/ },
      },
      {
        name: 'a lone surrogate escape in identify traits',
        path: '/v1/batch',
        body: `{"batch":[{"type":"track","userId":"${v3}","event":"E"},{"type":"identify","userId":"${v3}","traits":{"x":"\\ud800"}}]}`,
        expect: { line: 1, mentions: /surrogate/ },
      },
      {
        name: 'nesting too deep',
        path: '/v1/track',
        body: `{"userId":"${v3}","event":"E","properties":{"x":${'['.repeat(3000)}${']'.repeat(3000)}}}`,
        expect: { field: 'body' },
      },
      {
        name: 'event is a number',
        path: '/v1/track',
        body: { userId: v4, event: 42 },
        expect: { field: 'event', mentions: /string/ },
      },
      {
        name: 'event is empty',
        path: '/v1/track',
        body: { userId: v4, event: '' },
        expect: { field: 'event' },
      },
      { name: 'track without event', path: '/v1/track', body: { userId: v4 }, expect: { field: 'event' } },
      {
        name: 'userId is a boolean',
        path: '/v1/identify',
        body: { userId: true },
        expect: { field: 'userId' },
      },
      {
        name: 'userId is a fraction',
        path: '/v1/identify',
        body: { userId: 1.5 },
        expect: { field: 'userId' },
      },
      {
        name: 'batch[1].userId is an object',
        path: '/v1/batch',
        body: { batch: [track(v5), track({ id: v5 })] },
        expect: { field: 'batch[1].userId', mentions: /string/ },
      },
      {
        name: 'properties is an array',
        path: '/v1/track',
        body: { userId: v5, event: 'E', properties: [1, 2] },
        expect: { field: 'properties', mentions: /object/ },
      },
      {
        name: 'traits is a string',
        path: '/v1/identify',
        body: { userId: v5, traits: 'vip' },
        expect: { field: 'traits' },
      },
      {
        name: 'context is a string',
        path: '/v1/page',
        body: { userId: v5, context: 'web' },
        expect: { field: 'context' },
      },
      {
        name: 'timestamp is not ISO-8601',
        path: '/v1/track',
        body: { userId: v5, event: 'E', timestamp: 'yesterday' },
        expect: { field: 'timestamp', mentions: /ISO-8601/ },
      },
      {
        name: 'batch-level sentAt is a number',
        path: '/v1/batch',
        body: { sentAt: 1700000000, batch: [track(v5)] },
        expect: { field: 'sentAt' },
      },
      {
        name: 'batch-level context is an array',
        path: '/v1/batch',
        body: { context: [], batch: [track(v5)] },
        expect: { field: 'context' },
      },
      {
        name: 'neither userId nor anonymousId',
        path: '/v1/track',
        body: { event: 'E', properties: { a: 1 } },
        expect: { field: 'userId', mentions: /anonymousId/ },
      },
      {
        name: 'neither id in batch[2] (the first two are fine)',
        path: '/v1/batch',
        body: {
          batch: [
            track(v6),
            { type: 'identify', anonymousId: uid('a'), traits: { x: 1 } },
            { type: 'page', name: 'Home' },
          ],
        },
        expect: { field: 'batch[2].userId', mentions: /anonymousId/ },
      },
      {
        name: 'unknown type in a batch',
        path: '/v1/batch',
        body: { batch: [track(v6), { type: 'trak', userId: v6, event: 'E' }] },
        expect: { field: 'batch[1].type' },
      },
      {
        name: 'batch missing',
        path: '/v1/batch',
        body: { messages: [track(v6)] },
        expect: { field: 'batch' },
      },
      {
        name: 'batch is an object',
        path: '/v1/batch',
        body: { batch: { 0: track(v6) } },
        expect: { field: 'batch' },
      },
      {
        name: 'a batch item is a number',
        path: '/v1/batch',
        body: { batch: [track(v7), 7] },
        expect: { field: 'batch[1]' },
      },
      {
        name: 'alias without previousId',
        path: '/v1/alias',
        body: { userId: v7 },
        expect: { field: 'previousId' },
      },
      {
        name: 'group without groupId',
        path: '/v1/group',
        body: { userId: v7, traits: {} },
        expect: { field: 'groupId' },
      },
    ];

    for (const c of cases) {
      const r = await ws.send(c.path, c.body);
      assertError(r, { status: 400, code: 'invalid_argument', ...c.expect }, c.name);
    }

    // Nothing of any refused request was stored, not even the valid messages of a batch.
    assert.deepEqual(await counts(ws), { contacts: 0, events: 0 });
    for (const v of victims) {
      const r = await ws.admin('GET', `/api/v1/contacts/${v}`);
      assertError(r, { status: 404, code: 'not_found' }, `GET contact ${v}`);
    }
    await assertStillServing(ws);
    assert.deepEqual(await counts(ws), { contacts: 1, events: 1 });
  });

  test('bodies past 32 KB per message or 500 KB per batch, and gzip bombs, get a 413', async () => {
    const ws = await server.createWorkspace();
    const user = uid('big');
    const big = (n) => 'x'.repeat(n);
    const cases = [
      {
        name: 'a 40 KB track call',
        path: '/v1/track',
        body: { userId: user, event: 'E', properties: { blob: big(40 * 1024) } },
        expect: { field: 'body', mentions: /32768/ },
      },
      {
        name: 'a 600 KB batch',
        path: '/v1/batch',
        body: {
          batch: Array.from({ length: 30 }, () => track(user, { properties: { blob: big(20 * 1024) } })),
        },
        expect: { field: 'body', mentions: /512000/ },
      },
      {
        name: 'one 40 KB message in a small batch',
        path: '/v1/batch',
        body: { batch: [track(user), track(user, { properties: { blob: big(40 * 1024) } })] },
        expect: { field: 'batch[1]', mentions: /32768/ },
      },
      {
        name: 'a gzip bomb on /v1/batch (50 MB of spaces in ~50 KB)',
        path: '/v1/batch',
        body: zlib.gzipSync(Buffer.alloc(50 * 1024 * 1024, 0x20)),
        expect: { field: 'body', mentions: /decompressed/ },
      },
      {
        name: 'a gzip bomb on /v1/track (a 10 MB property)',
        path: '/v1/track',
        body: zlib.gzipSync(`{"userId":"${user}","event":"E","properties":{"x":"${big(10 * 1024 * 1024)}"}}`),
        headers: { 'Content-Encoding': 'gzip' },
        expect: { field: 'body', mentions: /decompressed/ },
      },
    ];
    for (const c of cases) {
      if (Buffer.isBuffer(c.body))
        assert.ok(c.body.length < 500 * 1024, `${c.name}: the compressed body is small`);
      const r = await ws.send(c.path, c.body, { headers: c.headers ?? {} });
      assertError(r, { status: 413, code: 'too_large', ...c.expect }, c.name);
    }
    // Streamed without a Content-Length (chunked): refused once it passes the limit.
    const chunk = Buffer.from(`${JSON.stringify(track(user, { properties: { blob: big(16 * 1024) } }))},`);
    let sent = 0;
    const stream = new ReadableStream({
      pull(controller) {
        if (sent === 0) controller.enqueue(Buffer.from('{"batch":['));
        if (sent >= 40) {
          controller.enqueue(Buffer.from(`${JSON.stringify(track(user))}]}`));
          controller.close();
          return;
        }
        controller.enqueue(chunk);
        sent++;
      },
    });
    const chunked = await request(`${ws.url}/v1/batch`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Basic ${Buffer.from(`${ws.writeKey}:`).toString('base64')}`,
      },
      body: stream,
      duplex: 'half',
    });
    assertError(
      chunked,
      { status: 413, code: 'too_large', field: 'body', mentions: /512000/ },
      'a chunked 650 KB batch',
    );
    assert.deepEqual(await counts(ws), { contacts: 0, events: 0 });

    // Just under the limits is fine: 15 messages of ~30 KB in one ~450 KB batch.
    const fine = {
      batch: Array.from({ length: 15 }, () => track(user, { properties: { blob: big(30 * 1024) } })),
    };
    assert.ok(JSON.stringify(fine).length < 500 * 1024);
    assertOk(await ws.send('/v1/batch', fine), 'a batch just under the limits');
    assert.equal((await ws.events(user)).length, 15);
    await assertStillServing(ws);
  });

  test('gzip bodies are recognised by their magic bytes whatever the headers; corrupt gzip is refused', async () => {
    const ws = await server.createWorkspace();
    const a = uid('gz');
    const gz = (obj) => zlib.gzipSync(JSON.stringify(obj));

    // Wrong Content-Type and no Content-Encoding: still gzip, still accepted.
    assertOk(
      await ws.send('/v1/track', gz({ userId: a, event: 'Plain Text Gzip' }), {
        headers: { 'Content-Type': 'text/plain' },
      }),
    );
    assertOk(
      await ws.send('/v1/batch', gz({ batch: [track(a, { event: 'Octet Gzip' })] }), {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' },
      }),
    );
    // A body in two gzip members (as `cat a.gz b.gz` makes) is one body.
    const text = JSON.stringify({ userId: a, event: 'Two Members' });
    const half = Math.floor(text.length / 2);
    assertOk(
      await ws.send(
        '/v1/track',
        Buffer.concat([zlib.gzipSync(text.slice(0, half)), zlib.gzipSync(text.slice(half))]),
      ),
    );
    // Content-Encoding: gzip on a plain body: the bytes decide, it is read as it is.
    assertOk(
      await ws.send('/v1/track', Buffer.from(JSON.stringify({ userId: a, event: 'Labelled Gzip' })), {
        headers: { 'Content-Encoding': 'gzip' },
      }),
    );
    const names = (await ws.events(a)).map((e) => e.event).sort();
    assert.deepEqual(names, ['Labelled Gzip', 'Octet Gzip', 'Plain Text Gzip', 'Two Members']);

    const good = gz({ userId: uid('gz-bad'), event: 'Never Stored' });
    const corrupt = Buffer.from(good);
    corrupt.fill(0x55, 10, 30);
    const bad = [
      ['gzip magic followed by garbage', Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), {}],
      ['a truncated gzip body', good.subarray(0, good.length - 6), {}],
      ['a gzip body with a corrupt middle', corrupt, {}],
    ];
    for (const [name, body, headers] of bad) {
      const r = await ws.send('/v1/track', body, { headers });
      assertError(r, { status: 400, code: 'invalid_argument', field: 'body', mentions: /gzip/ }, name);
    }
    assert.deepEqual(await counts(ws), { contacts: 1, events: 4 });
    await assertStillServing(ws);
  });

  test('keys: Basic auth or writeKey in the body; wrong keys get a 401 and store nothing', async () => {
    const ws = await server.createWorkspace();
    const user = uid('key');

    const inBody = await ws.send(
      '/v1/track',
      { userId: user, event: 'Body Key', writeKey: ws.writeKey },
      { auth: 'none' },
    );
    assertOk(inBody, 'writeKey in the body');
    const batchInBody = await ws.send(
      '/v1/batch',
      { writeKey: ws.writeKey, batch: [track(user, { event: 'Batch Body Key' })] },
      { auth: 'none' },
    );
    assertOk(batchInBody, 'writeKey in a batch body');
    assertOk(await ws.send('/v1/track', { userId: user, event: 'Basic Key' }), 'Basic auth');
    const events = await ws.events(user);
    assert.equal(events.length, 3);
    for (const e of events)
      assert.ok(!JSON.stringify(e).includes(ws.writeKey), 'the write key is not given back');
    const leaked = await ws.sql(`select count(*) from events where body like '%${ws.writeKey}%'`);
    assert.deepEqual(leaked, ['0'], 'the write key is not stored');

    const refused = [
      ['a wrong Basic key', () => ws.send('/v1/track', track(uid('x')), { key: 'wk_wrong' })],
      ['no key at all', () => ws.send('/v1/track', track(uid('x')), { auth: 'none' })],
      [
        'a wrong writeKey in the body',
        () => ws.send('/v1/track', { ...track(uid('x')), writeKey: 'wk_wrong' }, { auth: 'none' }),
      ],
      [
        'the admin key as write key',
        () => ws.send('/v1/batch', { batch: [track(uid('x'))] }, { key: ws.adminKey }),
      ],
      [
        'a Bearer header instead of Basic',
        () =>
          ws.send('/v1/track', track(uid('x')), {
            auth: 'none',
            headers: { Authorization: `Bearer ${ws.writeKey}` },
          }),
      ],
    ];
    for (const [name, call] of refused) {
      const r = await call();
      assertError(r, { status: 401, code: 'unauthenticated', mentions: /write key/ }, name);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Basic/, `${name}: WWW-Authenticate`);
    }

    // The admin API wants the admin key, as a Bearer token.
    const adminRefused = [
      ['the write key', { Authorization: `Bearer ${ws.writeKey}` }],
      ['no Authorization', {}],
      ['a wrong admin key', { Authorization: 'Bearer ak_wrong' }],
      [
        'the admin key as Basic user',
        { Authorization: `Basic ${Buffer.from(`${ws.adminKey}:`).toString('base64')}` },
      ],
    ];
    for (const [name, headers] of adminRefused) {
      const r = await request(`${ws.url}/api/v1/contacts/${user}`, { headers });
      assertError(r, { status: 401, code: 'unauthenticated' }, `admin API with ${name}`);
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/, `${name}: WWW-Authenticate`);
    }
    assert.deepEqual(await counts(ws), { contacts: 1, events: 3 });
  });

  test('unknown paths get a JSON 404, wrong methods a 405, and the server keeps serving', async () => {
    const ws = await server.createWorkspace();
    const cases = [
      ['POST', '/v1/trak', 404, 'not_found'],
      ['POST', '/v2/track', 404, 'not_found'],
      ['POST', '/', 404, 'not_found'],
      ['GET', '/api/v1/nothing', 404, 'not_found'],
      ['GET', '/v1/track', 405, 'method_not_allowed'],
      ['PUT', '/v1/batch', 405, 'method_not_allowed'],
      ['POST', '/healthz', 405, 'method_not_allowed'],
    ];
    for (const [method, path, status, code] of cases) {
      const r = await request(`${ws.url}${path}`, {
        method,
        headers: { Authorization: `Basic ${Buffer.from(`${ws.writeKey}:`).toString('base64')}` },
        body: method === 'GET' ? undefined : JSON.stringify(track(uid('lost'))),
      });
      assertError(r, { status, code }, `${method} ${path}`);
    }
    const missing = await ws.admin('GET', `/api/v1/contacts/${uid('nobody')}`);
    assertError(missing, { status: 404, code: 'not_found', mentions: /no contact/ }, 'unknown contact');
    assert.deepEqual(await counts(ws), { contacts: 0, events: 0 });
    await assertStillServing(ws);
  });

  test('a messageId is stored once per workspace; another workspace stores its own', async () => {
    const ws = await server.createWorkspace();
    const other = await server.createWorkspace();
    const user = uid('dup');
    const mid = uid('msg');

    assertOk(
      await ws.send('/v1/track', { userId: user, event: 'First', messageId: mid, properties: { n: 1 } }),
    );
    // A retry of the same request, and a different message reusing the id: both skipped.
    assertOk(
      await ws.send('/v1/track', { userId: user, event: 'First', messageId: mid, properties: { n: 1 } }),
      'retry',
    );
    assertOk(
      await ws.send('/v1/track', { userId: user, event: 'Second', messageId: mid, properties: { n: 2 } }),
      'reuse',
    );
    // The same id twice within one batch, beside a new one.
    const mid2 = uid('msg');
    assertOk(
      await ws.send('/v1/batch', {
        batch: [
          track(user, { event: 'Third', messageId: mid2 }),
          track(user, { event: 'Third Again', messageId: mid2 }),
          track(user, { event: 'First Again', messageId: mid }),
        ],
      }),
    );
    // Gzip or plain, Basic or body key: still the same message.
    assertOk(
      await ws.send(
        '/v1/track',
        { userId: user, event: 'First', messageId: mid, writeKey: ws.writeKey },
        { auth: 'none', gzip: true },
      ),
    );

    const events = await ws.events(user);
    assert.deepEqual(
      events.map((e) => [e.message_id, e.event]).sort(),
      [
        [mid, 'First'],
        [mid2, 'Third'],
      ].sort(),
    );
    assert.deepEqual(events.find((e) => e.message_id === mid).properties, { n: 1 }, 'the first one wins');
    const rows = await ws.sql(`select count(*) from events where message_id = '${mid}'`);
    assert.deepEqual(rows, ['1']);

    // Another workspace is another namespace.
    assertOk(await other.send('/v1/track', { userId: user, event: 'Elsewhere', messageId: mid }));
    const theirs = await other.events(user);
    assert.deepEqual(
      theirs.map((e) => [e.message_id, e.event]),
      [[mid, 'Elsewhere']],
    );
    assert.equal((await ws.events(user)).length, 2, 'the first workspace is untouched');
    assert.deepEqual(await ws.sql(`select count(*) from events where message_id = '${mid}'`), ['2']);
  });

  test('timestamps: clock skew corrected with sentAt and originalTimestamp; receivedAt kept', async () => {
    const ws = await server.createWorkspace();
    const user = uid('clock');
    const iso = (ms) => new Date(ms).toISOString();
    const now = Date.now();
    const before = Date.now();

    // A device whose clock runs an hour fast: it says the event happened 10 s before sending.
    const fastSent = now + 3600_000;
    // A device an hour and a half slow, sending a batch-level sentAt, events 5 s and 65 s old.
    const slowSent = now - 5400_000;
    assertOk(
      await ws.send('/v1/track', {
        userId: user,
        event: 'Fast Clock',
        messageId: 'fast',
        originalTimestamp: iso(fastSent - 10_000),
        sentAt: iso(fastSent),
      }),
    );
    assertOk(
      await ws.send('/v1/batch', {
        sentAt: iso(slowSent),
        batch: [
          track(user, { event: 'Slow Clock', messageId: 'slow', timestamp: iso(slowSent - 5000) }),
          track(user, {
            event: 'Slow Clock Older',
            messageId: 'slow-older',
            originalTimestamp: iso(slowSent - 65_000),
          }),
        ],
      }),
    );
    // No sentAt: a given timestamp is taken as is (history import), with a zone offset honoured.
    assertOk(
      await ws.send('/v1/track', {
        userId: user,
        event: 'Imported',
        messageId: 'imported',
        timestamp: '2021-03-01T12:00:00+02:00',
      }),
    );
    // Nothing given: the time it arrived.
    assertOk(await ws.send('/v1/track', { userId: user, event: 'Now', messageId: 'now' }));
    const afterSend = Date.now();

    const byId = new Map((await ws.events(user)).map((e) => [e.message_id, e]));
    const t = (id, field) => Date.parse(byId.get(id)[field]);
    for (const id of ['fast', 'slow', 'slow-older', 'imported', 'now']) {
      const received = t(id, 'received_at');
      assert.ok(
        received >= before - 1000 && received <= afterSend + 1000,
        `${id}: receivedAt is the server's time`,
      );
    }
    assert.equal(t('fast', 'timestamp'), t('fast', 'received_at') - 10_000, 'fast clock corrected');
    assert.equal(
      byId.get('fast').original_timestamp,
      iso(fastSent - 10_000),
      'originalTimestamp kept as sent',
    );
    assert.equal(byId.get('fast').sent_at, iso(fastSent), 'sentAt kept as sent');
    assert.equal(t('slow', 'timestamp'), t('slow', 'received_at') - 5000, 'slow clock corrected (timestamp)');
    assert.equal(
      t('slow-older', 'timestamp'),
      t('slow-older', 'received_at') - 65_000,
      'slow clock corrected (originalTimestamp)',
    );
    assert.equal(byId.get('slow').sent_at, iso(slowSent), 'the batch-level sentAt applies to its messages');
    assert.equal(byId.get('imported').timestamp, '2021-03-01T10:00:00.000Z');
    assert.equal(t('now', 'timestamp'), t('now', 'received_at'));

    // Newest first by when it happened, not when it arrived.
    const order = (await ws.events(user)).map((e) => e.message_id);
    assert.deepEqual(order.slice(-1), ['imported']);
    assert.ok(order.indexOf('slow') < order.indexOf('slow-older'));
    assert.ok(order.indexOf('fast') < order.indexOf('slow-older'));
  });

  test('context (ip, userAgent, page, campaign) is kept; page properties are completed from context.page', async () => {
    const ws = await server.createWorkspace();
    const anon = uid('ctx');
    const campaign = { name: 'autumn', source: 'google', medium: 'cpc', term: 'crm tool', content: 'ad-2' };
    const page = {
      path: '/pricing',
      url: 'https://ex.example/pricing',
      title: 'Pricing',
      referrer: 'https://google.example/',
      search: '?utm_source=google',
    };
    assertOk(
      await ws.send('/v1/batch', {
        context: { ip: '198.51.100.4', userAgent: 'BatchAgent/1.0', campaign, page },
        batch: [
          { type: 'page', anonymousId: anon, messageId: 'p1', name: 'Pricing' },
          {
            type: 'page',
            anonymousId: anon,
            messageId: 'p2',
            properties: { path: '/explicit', plan: 'pro' },
            context: { page: { path: '/ignored', title: 'Own' }, ip: '192.0.2.9' },
          },
          {
            type: 'track',
            anonymousId: anon,
            event: 'Thing Happened',
            messageId: 't1',
            properties: { a: [1, { b: null }] },
          },
        ],
      }),
    );
    const byId = new Map((await ws.events(anon)).map((e) => [e.message_id, e]));
    const p1 = byId.get('p1');
    assert.equal(p1.event, 'Page Viewed');
    assert.deepEqual(p1.properties, { name: 'Pricing', ...page });
    assert.deepEqual(p1.context, { ip: '198.51.100.4', userAgent: 'BatchAgent/1.0', campaign, page });
    const p2 = byId.get('p2');
    assert.equal(p2.properties.path, '/explicit', 'an explicit property wins over context.page');
    assert.equal(p2.properties.title, 'Own');
    assert.equal(p2.properties.plan, 'pro');
    assert.deepEqual(
      p2.context,
      { page: { path: '/ignored', title: 'Own' }, ip: '192.0.2.9' },
      "a message's own context replaces the batch's",
    );
    const t1 = byId.get('t1');
    assert.deepEqual(t1.properties, { a: [1, { b: null }] });
    assert.equal(t1.context.userAgent, 'BatchAgent/1.0');
    assert.deepEqual(t1.context.campaign, campaign);
  });

  test('identify: traits merge, null removes a trait, email and phone normalized beside the originals', async () => {
    const ws = await server.createWorkspace();
    const user = uid('traits');
    assertOk(
      await ws.send('/v1/identify', {
        userId: user,
        traits: {
          email: ' Ann@Mail.EXAMPLE.com',
          phone: '+44 20 7946 0958',
          plan: 'trial',
          age: 31,
          tags: ['a'],
        },
      }),
    );
    assertOk(
      await ws.send('/v1/identify', {
        userId: user,
        traits: { plan: 'pro', age: null, company: { name: 'Initech' } },
      }),
    );
    let c = await ws.contact(user);
    assert.deepEqual(c.traits, {
      email: ' Ann@Mail.EXAMPLE.com',
      phone: '+44 20 7946 0958',
      plan: 'pro',
      tags: ['a'],
      company: { name: 'Initech' },
    });
    assert.equal(c.email, 'Ann@mail.example.com');
    assert.equal(c.phone, '+442079460958');
    assert.equal((await ws.contact('ann@mail.example.com')).id, c.id);

    // An invalid email stays as a trait but is no address; removing the trait removes it.
    assertOk(await ws.send('/v1/identify', { userId: user, traits: { email: 'not an email' } }));
    c = await ws.contact(user);
    assert.equal(c.traits.email, 'not an email');
    assert.equal(c.email, null);
    assertOk(await ws.send('/v1/identify', { userId: user, traits: { email: null, phone: null } }));
    c = await ws.contact(user);
    assert.ok(!('email' in c.traits) && !('phone' in c.traits), JSON.stringify(c.traits));
    assert.equal(c.phone, null);
  });

  test('GET /api/v1/contacts pages through every contact with a cursor', async () => {
    const ws = await server.createWorkspace();
    const users = Array.from({ length: 7 }, (_, i) => `page-${i}-${uid('u')}`);
    assertOk(
      await ws.send('/v1/batch', {
        batch: users.map((u) => ({ type: 'identify', userId: u, traits: { n: u } })),
      }),
    );

    const seen = [];
    let cursor = null;
    const sizes = [];
    for (let page = 0; page < 10; page++) {
      const q = cursor ? `?limit=3&cursor=${encodeURIComponent(cursor)}` : '?limit=3';
      const r = await ws.get(`/api/v1/contacts${q}`);
      assert.equal(r.total, 7);
      sizes.push(r.contacts.length);
      seen.push(...r.contacts);
      cursor = r.next_cursor;
      if (!cursor) break;
    }
    assert.deepEqual(sizes, [3, 3, 1]);
    assert.deepEqual(seen.map((c) => c.user_id).sort(), [...users].sort(), 'every contact exactly once');
    const ids = seen.map((c) => c.id);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      'ascending by id',
    );
    for (const c of seen) assert.deepEqual(c.traits, { n: c.user_id });

    const all = await ws.get('/api/v1/contacts');
    assert.equal(all.contacts.length, 7);
    assert.equal(all.next_cursor, null);
    assertError(
      await ws.admin('GET', '/api/v1/contacts?cursor=%%%'),
      { status: 400, code: 'invalid_argument', field: 'cursor' },
      'bad cursor',
    );
    assertError(
      await ws.admin('GET', '/api/v1/contacts?limit=0'),
      { status: 400, code: 'invalid_argument', field: 'limit' },
      'limit=0',
    );
    assertError(
      await ws.admin('GET', '/api/v1/contacts?limit=ten'),
      { status: 400, code: 'invalid_argument', field: 'limit' },
      'limit=ten',
    );
  });

  test('DELETE erases a contact, its identities and its events (GDPR)', async () => {
    const ws = await server.createWorkspace();
    const anon = uid('gdpr-anon');
    const user = uid('gdpr-user');
    const keep = uid('gdpr-keep');
    const email = `${uid('erase')}@forget.example`;
    const mids = [uid('m'), uid('m'), uid('m'), uid('m')];
    assertOk(
      await ws.send('/v1/batch', {
        batch: [
          { type: 'page', anonymousId: anon, messageId: mids[0], name: 'Home' },
          {
            type: 'identify',
            userId: user,
            anonymousId: anon,
            messageId: mids[1],
            traits: { email, phone: '+1 415 555 2671' },
          },
          track(user, { messageId: mids[2], properties: { secret: 'diary' } }),
          track(keep, { messageId: mids[3] }),
        ],
      }),
    );
    assert.equal((await ws.events(anon)).length, 3);
    assert.deepEqual(await counts(ws), { contacts: 2, events: 4 });

    const del = await ws.admin('DELETE', `/api/v1/contacts/${encodeURIComponent(email)}`);
    assert.equal(del.status, 200, del.text);
    assert.equal(del.json.deleted, true);
    assert.equal(del.json.user_id, user);
    // Nor any copy in the data directory: the store's log (WAL) is emptied before the answer,
    // and the inbox segment that held the requests goes within a second once applied.
    const holding = () =>
      filesUnder(server.dataDir).filter((f) => {
        const bytes = fs.readFileSync(f);
        return bytes.includes(email) || bytes.includes('diary');
      });
    assert.deepEqual(
      holding().filter((f) => path.basename(f).startsWith('nudge.db')),
      [],
      'the store’s files right after the erasure',
    );
    const until = Date.now() + 5000;
    while (holding().length > 0 && Date.now() < until) await sleep(50);
    assert.deepEqual(holding(), [], 'files of the data directory 5 s after the erasure');

    for (const key of [user, anon, email, '+14155552671']) {
      assertError(
        await ws.admin('GET', `/api/v1/contacts/${encodeURIComponent(key)}`),
        { status: 404, code: 'not_found' },
        `GET ${key}`,
      );
      assertError(
        await ws.admin('GET', `/api/v1/contacts/${encodeURIComponent(key)}/events`),
        { status: 404, code: 'not_found' },
        `GET ${key}/events`,
      );
    }
    assertError(
      await ws.admin('DELETE', `/api/v1/contacts/${user}`),
      { status: 404, code: 'not_found' },
      'DELETE again',
    );
    assert.deepEqual(await counts(ws), { contacts: 1, events: 1 });
    assert.equal((await ws.events(keep)).length, 1, 'another contact is untouched');
    // No trace left in the database file.
    const traces = await ws.sql(
      `select (select count(*) from events where message_id in ('${mids.slice(0, 3).join("','")}') or body like '%diary%' or body like '%${email}%')` +
        ` || ',' || (select count(*) from identities where value in ('${anon}', '${user}'))` +
        ` || ',' || (select count(*) from contacts where user_id = '${user}' or email like '%forget.example')`,
    );
    assert.deepEqual(traces, ['0,0,0']);

    // The same visitor coming back starts from nothing.
    assertOk(await ws.send('/v1/track', { anonymousId: anon, event: 'Came Back' }));
    const fresh = await ws.contact(anon);
    assert.equal(fresh.user_id, null);
    assert.equal(fresh.email, null);
    assert.deepEqual(fresh.traits, {});
    assert.equal((await ws.events(anon)).length, 1);
  });

  test('`nudge contact show` and `nudge contact erase --yes` from the command line', async () => {
    const ws = await server.createWorkspace();
    const user = uid('cli-erase');
    const email = `${uid('cli')}@forget.example`;
    assertOk(await ws.send('/v1/identify', { userId: user, traits: { email, plan: 'pro' } }));
    assertOk(await ws.send('/v1/track', track(user, { properties: { secret: 'ledger' } })));
    const flags = ['--server', server.url, '--key', ws.adminKey];

    const shown = await server.cli(['contact', 'show', email, ...flags]);
    assert.equal(shown.code, 0, shown.stderr);
    const contact = JSON.parse(shown.stdout);
    assert.equal(contact.user_id, user);
    assert.equal(contact.traits.plan, 'pro');

    // Without --yes nothing is erased.
    const unconfirmed = await server.cli(['contact', 'erase', user, ...flags]);
    assert.equal(unconfirmed.code, 2);
    assert.match(unconfirmed.stderr, /--yes/);
    assert.equal((await ws.admin('GET', `/api/v1/contacts/${user}`)).status, 200);

    const erased = await server.cli(['contact', 'erase', user, '--yes', ...flags]);
    assert.equal(erased.code, 0, erased.stderr);
    assert.match(erased.stdout, new RegExp(`^erased contact \\d+ \\(user id ${user}\\)$`, 'm'));
    assertError(await ws.admin('GET', `/api/v1/contacts/${user}`), { status: 404, code: 'not_found' });
    const again = await server.cli(['contact', 'erase', user, '--yes', ...flags]);
    assert.equal(again.code, 2, 'a contact that is not there');
    assert.match(again.stderr, /^nudge: .*not found|^nudge: no contact/im);
    const missing = await server.cli(['contact', 'show', user, ...flags]);
    assert.equal(missing.code, 2);
    // Another workspace's key sees nothing to erase.
    const other = await server.createWorkspace();
    assertOk(await other.send('/v1/identify', { userId: user }));
    const foreign = await server.cli(['contact', 'erase', user, '--yes', '--server', server.url, '--key', ws.adminKey]);
    assert.equal(foreign.code, 2);
    assert.equal((await other.admin('GET', `/api/v1/contacts/${user}`)).status, 200, 'the other workspace keeps its own');
  });

  test('/metrics counts accepted, duplicate and refused events by reason', async () => {
    const ws = await server.createWorkspace();
    const before = await server.metrics();
    const delta = (after, name) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const user = uid('metrics');
    const mid = uid('m');

    assertOk(
      await ws.send('/v1/batch', { batch: [track(user, { messageId: mid }), track(user), track(user)] }),
    );
    assertOk(await ws.send('/v1/track', track(user, { messageId: mid })));
    assert.equal((await ws.send('/v1/track', { event: 'No Id' })).status, 400);
    assert.equal((await ws.send('/v1/track', '{"oops"')).status, 400);
    assert.equal((await ws.send('/v1/batch', zlib.gzipSync(Buffer.alloc(8 << 20, 0x20)))).status, 413);
    assert.equal((await ws.send('/v1/track', Buffer.from([0x1f, 0x8b, 0, 0, 0]))).status, 400);
    assert.equal((await ws.send('/v1/track', track(user), { key: 'wk_nope' })).status, 401);

    // Events are counted as they are applied, after the acknowledgement; an admin read answers
    // once everything acknowledged before it is.
    assert.equal((await ws.events(user)).length, 3);
    const after = await server.metrics();
    assert.equal(delta(after, 'nudge_events_accepted_total'), 3);
    assert.equal(delta(after, 'nudge_events_duplicate_total'), 1);
    assert.equal(delta(after, 'nudge_events_rejected_total{reason="invalid"}'), 2);
    assert.equal(delta(after, 'nudge_events_rejected_total{reason="too_large"}'), 1);
    assert.equal(delta(after, 'nudge_events_rejected_total{reason="bad_gzip"}'), 1);
    assert.equal(delta(after, 'nudge_events_rejected_total{reason="unauthorized"}'), 1);
    assert.ok(delta(after, 'nudge_http_requests_total') >= 7);
    assert.ok(delta(after, 'nudge_ingest_ack_seconds_count') >= 2);
  });

  test('/metrics counts a body refused for its size alone (Content-Length past the limit)', async () => {
    const ws = await server.createWorkspace();
    const before = await server.metrics();
    const r = await ws.send('/v1/batch', {
      batch: [track(uid('m'), { properties: { blob: 'y'.repeat(600 * 1024) } })],
    });
    assertError(r, { status: 413, code: 'too_large' }, 'a 600 KB batch');
    const after = await server.metrics();
    const name = 'nudge_events_rejected_total{reason="too_large"}';
    assert.equal((after.get(name) ?? 0) - (before.get(name) ?? 0), 1, `${name} counts the refused batch`);
  });
});

describe('workspaces', { timeout: 120_000 }, () => {
  let server;

  before(async () => {
    server = await new NudgeServer().start();
  });

  after(async () => {
    await server?.dispose();
  });

  test('`nudge workspace create` makes a workspace whose keys never see another workspace', async () => {
    const name = `acme-${uid('ws').slice(3, 11)}`;
    const created = await server.cli([
      'workspace',
      'create',
      name,
      '--server',
      server.url,
      '--key',
      server.adminKey,
    ]);
    assert.equal(created.code, 0, `nudge workspace create: ${created.stderr}`);
    const writeKey = /write key:\s*(\S+)/.exec(created.stdout)?.[1];
    const adminKey = /admin key:\s*(\S+)/.exec(created.stdout)?.[1];
    assert.ok(writeKey && adminKey, `keys printed: ${created.stdout}`);
    assert.notEqual(writeKey, server.writeKey);
    // The same name in other case is the same name: refused, naming the one it resembles.
    const twin = await server.cli(['workspace', 'create', name.toUpperCase(), '--server', server.url, '--key', server.adminKey]);
    assert.notEqual(twin.code, 0, twin.stdout);
    assert.match(twin.stderr, new RegExp(`only in case`));
    const acme = server.withKeys({ writeKey, adminKey });
    const main = server;

    // The same user id and messageId in both workspaces: two contacts, two events.
    const shared = uid('shared');
    const mid = uid('m');
    const onlyMain = uid('main-only');
    const onlyAcme = uid('acme-only');
    assertOk(
      await main.send('/v1/identify', {
        userId: shared,
        messageId: mid,
        traits: { plan: 'main', email: 'same@ws.example' },
      }),
    );
    assertOk(await main.send('/v1/track', track(onlyMain)));
    assertOk(await acme.send('/v1/identify', { userId: shared, messageId: mid, traits: { plan: 'acme' } }));
    assertOk(await acme.send('/v1/track', { anonymousId: onlyAcme, event: 'Acme Thing' }));

    assert.equal((await main.contact(shared)).traits.plan, 'main');
    assert.equal((await acme.contact(shared)).traits.plan, 'acme');
    assert.notEqual((await main.contact(shared)).id, (await acme.contact(shared)).id);
    assert.deepEqual(
      (await acme.events(shared)).map((e) => e.message_id),
      [mid],
    );

    // Neither admin key reads, finds, lists or erases the other's contacts.
    for (const [reader, key] of [
      [acme, onlyMain],
      [acme, 'same@ws.example'],
      [main, onlyAcme],
    ]) {
      assertError(
        await reader.admin('GET', `/api/v1/contacts/${encodeURIComponent(key)}`),
        { status: 404, code: 'not_found' },
        `GET ${key}`,
      );
      assertError(
        await reader.admin('GET', `/api/v1/contacts/${encodeURIComponent(key)}/events`),
        { status: 404, code: 'not_found' },
        `GET ${key}/events`,
      );
      assertError(
        await reader.admin('DELETE', `/api/v1/contacts/${encodeURIComponent(key)}`),
        { status: 404, code: 'not_found' },
        `DELETE ${key}`,
      );
    }
    assert.equal(
      (await main.events(onlyMain)).length,
      1,
      'still there after the other workspace tried to erase it',
    );
    const acmeList = await acme.get('/api/v1/contacts');
    assert.deepEqual(
      acmeList.contacts.map((c) => c.user_id ?? c.anonymous_ids[0]).sort(),
      [shared, onlyAcme].sort(),
    );
    assert.equal(acmeList.total, 2);
    const acmeWs = await acme.get('/api/v1/workspace');
    assert.equal(acmeWs.name, name);
    assert.deepEqual({ contacts: acmeWs.contacts, events: acmeWs.events }, { contacts: 2, events: 2 });
    const mainWs = await main.get('/api/v1/workspace');
    assert.deepEqual({ contacts: mainWs.contacts, events: mainWs.events }, { contacts: 2, events: 2 });
    assert.deepEqual(
      (await acme.get('/api/v1/workspaces')).workspaces.map((w) => w.name),
      [name],
    );

    // A write key is not an admin key, not even its own workspace's, and vice versa.
    assertError(
      await acme.admin('GET', '/api/v1/workspace', { key: writeKey }),
      { status: 401, code: 'unauthenticated' },
      'write key on the admin API',
    );
    assertError(
      await acme.send('/v1/track', track(uid('x')), { key: adminKey }),
      { status: 401, code: 'unauthenticated' },
      'admin key on /v1',
    );

    // Only the default workspace's admin key creates workspaces.
    assertError(
      await acme.admin('POST', '/api/v1/workspaces', { body: { name: 'sneaky' } }),
      { status: 403, code: 'permission_denied' },
      'create by a non-default key',
    );
    const sneaky = await server.cli([
      'workspace',
      'create',
      'sneaky-cli',
      '--server',
      server.url,
      '--key',
      adminKey,
    ]);
    assert.notEqual(sneaky.code, 0);
    assert.match(sneaky.stderr, /default workspace/);
    const wrong = await server.cli([
      'workspace',
      'create',
      'wrong-key',
      '--server',
      server.url,
      '--key',
      'ak_wrong',
    ]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /admin key/);
    const again = await server.cli([
      'workspace',
      'create',
      name,
      '--server',
      server.url,
      '--key',
      server.adminKey,
    ]);
    assert.notEqual(again.code, 0, 'a name is taken once');
    const names = (await main.get('/api/v1/workspaces')).workspaces.map((w) => w.name);
    assert.ok(
      !names.includes('sneaky') && !names.includes('sneaky-cli') && !names.includes('wrong-key'),
      names.join(','),
    );
  });
});
