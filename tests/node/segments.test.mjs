// Real-time segments, lead scores and lifecycle stages, end to end: real `nudge serve`
// processes on 127.0.0.1, events through the tracking API, definitions through the admin API
// and the `nudge apply` / `nudge segment preview` commands, everything read back the way a
// user would check it (the segment, its members, the contact's JSON and its events).
//
// Windows here are seconds long (`within 3s`): nudge runs on the real clock in these tests, so
// a window sliding out is waited for, in bounded loops.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

import { NudgeServer, request, uid } from './lib/server.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = path.join(REPO, 'examples', 'demo');
// How many files `nudge apply -f` reads from the demo directory (a line is printed per file).
function demoAppliedFiles() {
  const yamlIn = (sub) => {
    const d = path.join(DEMO, sub);
    return fs.existsSync(d) ? fs.readdirSync(d).filter((f) => /\.ya?ml$/.test(f)).length : 0;
  };
  const top = ['scoring.yaml', 'stages.yaml', 'policies.yaml'].filter((f) =>
    fs.existsSync(path.join(DEMO, f)),
  ).length;
  return yamlIn('segments') + yamlIn('templates') + yamlIn('images') + yamlIn('journeys') + top;
}

const DEMO_SEGMENTS = [
  'at-risk-customers',
  'cart-abandoners',
  'customers',
  'demo-then-integrations',
  'engaged',
  'pricing-intent',
  'trial-users',
];
const DEFAULT_STAGES = ['Awareness', 'Consideration', 'Decision', 'Retention', 'Advocacy'];

// ---- helpers -----------------------------------------------------------------------------------

// PUTs a definition (segment, scoring, stages) as text: YAML as written in a file, or an object
// sent as JSON. `source` sets X-Nudge-Source, the name errors should use.
async function putDoc(s, pathname, body, { source } = {}) {
  const json = typeof body !== 'string';
  const headers = {
    Authorization: `Bearer ${s.adminKey}`,
    'Content-Type': json ? 'application/json' : 'application/yaml',
  };
  if (source) headers['X-Nudge-Source'] = source;
  return request(`${s.url}${pathname}`, {
    method: 'PUT',
    headers,
    body: json ? JSON.stringify(body) : body,
  });
}

function putSegment(s, id, body, opts) {
  return putDoc(s, `/api/v1/segments/${encodeURIComponent(id)}`, body, opts);
}

async function okPut(s, pathname, body, opts) {
  const r = await putDoc(s, pathname, body, opts);
  assert.equal(r.status, 200, `PUT ${pathname}: ${r.status} ${r.text}`);
  return r.json;
}

// Polls `fn` until it returns something truthy; bounded. On time-out the error shows what
// `fn` last returned (an array [ok, diagnostic] is read as such).
async function until(what, fn, { timeoutMs = 5000, intervalMs = 40 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    const [done, value] = Array.isArray(v) ? v : [v, v];
    if (done) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(value)}`);
    }
    await sleep(intervalMs);
  }
}

async function waitReady(s, id) {
  return until(`segment ${id} to be ready`, async () => {
    const seg = await s.get(`/api/v1/segments/${encodeURIComponent(id)}`);
    return [seg.status === 'ready', seg];
  });
}

async function segmentIds(s) {
  return (await s.get('/api/v1/segments')).segments.map((x) => x.id).sort();
}

async function members(s, id, query = '') {
  return s.get(`/api/v1/segments/${encodeURIComponent(id)}/members${query}`);
}

// The events nudge derived for a contact (Segment Entered, Stage Changed, Lead Qualified),
// newest first; `name` filters by event name, `segment` by properties.segment.
async function derived(s, key, { name, segment } = {}) {
  const r = await s.get(
    `/api/v1/contacts/${encodeURIComponent(key)}/events?limit=1000&origin=nudge`,
  );
  return r.events.filter(
    (e) => (!name || e.event === name) && (!segment || e.properties?.segment === segment),
  );
}

async function ok(promise, what) {
  const r = await promise;
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
  return r;
}

function page(s, userId, pagePath, extra = {}) {
  return ok(
    s.send('/v1/page', { userId, name: pagePath, properties: { path: pagePath }, ...extra }),
    `page ${pagePath}`,
  );
}

function track(s, userId, event, properties = {}) {
  return ok(s.send('/v1/track', { userId, event, properties }), `track ${event}`);
}

function identify(s, userId, traits) {
  return ok(s.send('/v1/identify', { userId, traits }), 'identify');
}

function assertRecent(iso, what) {
  const t = Date.parse(iso);
  assert.ok(Number.isFinite(t), `${what}: '${iso}' is not a timestamp`);
  assert.ok(Math.abs(Date.now() - t) < 5 * 60_000, `${what}: ${iso} is not within minutes of now`);
}

function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

function cliArgs(s) {
  return ['--server', s.url, '--key', s.adminKey];
}

// ---- one server for most tests; each test works on its own contacts, segments or workspace ----

describe('segments, lead scores and lifecycle stages', { timeout: 120_000 }, () => {
  let server;
  const dirs = [];

  before(async () => {
    server = await new NudgeServer().start();
  });

  after(async () => {
    await server?.dispose();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test('a behavioural segment is joined the moment the event is acknowledged and left when its window slides out', async () => {
    const s = server;
    const id = 'pricing-burst';
    const condition = 'count(event "Page Viewed" where properties.path == "/pricing" within 3s) >= 2';
    const created = await okPut(s, `/api/v1/segments/${id}`, {
      id,
      name: 'Pricing burst',
      description: 'Two pricing visits within three seconds',
      condition,
    });
    assert.equal(created.id, id);
    assert.equal(created.condition, condition);
    await waitReady(s, id);

    const user = uid('burst');
    const bystander = uid('burst-other');
    await page(s, user, '/pricing');
    await page(s, bystander, '/pricing');
    await page(s, bystander, '/home'); // two views, one of them pricing: not a member
    let c = await s.contact(user);
    assert.deepEqual(c.segments, [], 'one pricing visit is not enough');

    // The second visit, through /v1/batch: a member as soon as the 200 is back.
    await ok(
      s.send('/v1/batch', {
        batch: [{ type: 'page', userId: user, name: 'Pricing', context: { page: { path: '/pricing' } } }],
      }),
      'batch',
    );
    c = await s.contact(user);
    assert.deepEqual(c.segments, [id]);
    const seg = await s.get(`/api/v1/segments/${id}`);
    assert.equal(seg.member_count, 1);
    assert.equal(seg.status, 'ready');
    const list = await members(s, id);
    assert.equal(list.members.length, 1);
    assert.equal(list.members[0].user_id, user);
    assert.equal(list.members[0].id, c.id);
    assert.equal(list.next_cursor, null);
    assertRecent(list.members[0].since, 'members[0].since');
    assert.deepEqual((await s.contact(bystander)).segments, []);

    const entered = await derived(s, user, { name: 'Segment Entered' });
    assert.equal(entered.length, 1, JSON.stringify(entered));
    assert.deepEqual(entered[0].properties, { segment: id, segment_name: 'Pricing burst' });
    assert.ok(entered[0].message_id.startsWith('nudge:'), entered[0].message_id);
    const clientEvents = await s.events(user);
    assert.equal(clientEvents.filter((e) => e.event.startsWith('Segment ')).length, 0,
      'origin=client lists only what the client sent');
    assert.equal(clientEvents.filter((e) => e.event === 'Page Viewed').length, 2);

    // The first visit turns 3 s old: the count drops to 1 and the contact leaves, by timer.
    const firstVisit = Math.min(...clientEvents.map((e) => Date.parse(e.timestamp)));
    const exited = await until(
      'Segment Exited',
      async () => (await derived(s, user, { name: 'Segment Exited' }))[0],
      { timeoutMs: 8000, intervalMs: 100 },
    );
    assert.deepEqual(exited.properties, { segment: id, segment_name: 'Pricing burst' });
    const late = Date.parse(exited.timestamp) - firstVisit;
    assert.ok(late >= 3000 && late < 4500,
      `left ${late} ms after the first visit; the window is 3000 ms`);
    c = await s.contact(user);
    assert.deepEqual(c.segments, []);
    assert.equal((await s.get(`/api/v1/segments/${id}`)).member_count, 0);
    assert.deepEqual((await members(s, id)).members, []);
    assert.equal((await derived(s, user, { name: 'Segment Entered' })).length, 1);
    assert.equal((await derived(s, user, { name: 'Segment Exited' })).length, 1);
  });

  test('time passing alone moves a contact in, and derived events feed other segments', async () => {
    const s = server;
    await okPut(s, '/api/v1/segments/went-quiet', {
      id: 'went-quiet',
      name: 'Went quiet',
      condition:
        '(event "Page Viewed" where properties.path == "/quiet") and ' +
        'not (event "Page Viewed" where properties.path == "/quiet" within 2s)',
    });
    // Segment Entered is an event like any other: conditions can use it.
    await okPut(s, '/api/v1/segments/noticed-quiet', {
      id: 'noticed-quiet',
      condition: 'event "Segment Entered" where properties.segment == "went-quiet"',
    });
    await waitReady(s, 'went-quiet');
    await waitReady(s, 'noticed-quiet');

    const user = uid('quiet');
    await page(s, user, '/quiet');
    assert.deepEqual((await s.contact(user)).segments, []);
    const visitAt = Date.parse((await s.events(user))[0].timestamp);
    const entered = await until(
      'Segment Entered (went-quiet)',
      async () => (await derived(s, user, { name: 'Segment Entered', segment: 'went-quiet' }))[0],
      { timeoutMs: 6000, intervalMs: 100 },
    );
    const late = Date.parse(entered.timestamp) - visitAt;
    assert.ok(late >= 2000 && late < 3500, `entered ${late} ms after the visit; the window is 2000 ms`);
    assert.deepEqual(entered.properties, { segment: 'went-quiet', segment_name: 'Went quiet' });
    assert.deepEqual((await s.contact(user)).segments, ['noticed-quiet', 'went-quiet']);
    assert.equal((await derived(s, user, { name: 'Segment Entered', segment: 'noticed-quiet' })).length, 1);

    // A new visit: out of went-quiet at once; noticed-quiet stays (it happened).
    await page(s, user, '/quiet');
    assert.deepEqual((await s.contact(user)).segments, ['noticed-quiet']);
    assert.equal((await derived(s, user, { name: 'Segment Exited', segment: 'went-quiet' })).length, 1);
  });

  test('sum over a property, and the admin key guarding the segment API', async () => {
    const s = server;
    await okPut(s, '/api/v1/segments/big-spenders', {
      id: 'big-spenders',
      condition: 'sum(properties.revenue of event "Order Completed" within 30d) > 500',
    });
    await waitReady(s, 'big-spenders');
    const user = uid('spender');
    await track(s, user, 'Order Completed', { revenue: 300 });
    assert.deepEqual((await s.contact(user)).segments, []);
    await track(s, user, 'Order Completed', { revenue: 250.5 });
    assert.deepEqual((await s.contact(user)).segments, ['big-spenders']);

    const noKey = await request(`${s.url}/api/v1/segments`, { method: 'GET' });
    assert.equal(noKey.status, 401);
    const writeKey = await s.admin('GET', '/api/v1/segments', { key: s.writeKey });
    assert.equal(writeKey.status, 401, 'the write key is not an admin key');
    const put = await s.admin('PUT', '/api/v1/segments/sneaky', { key: 'nope', body: { condition: 'true' } });
    assert.equal(put.status, 401);
    assert.equal((await s.admin('GET', '/api/v1/segments/sneaky')).status, 404);
  });

  test('a new segment counts the events sent before it existed, silently, then emits live changes', async () => {
    const s = server;
    const [regular, once, quiet] = [uid('bf-regular'), uid('bf-once'), uid('bf-quiet')];
    const cohort = uid('cohort');
    await identify(s, regular, { cohort });
    await identify(s, once, { cohort });
    await identify(s, quiet, { cohort: 'someone-else' });
    await track(s, regular, 'Webinar Attended', { topic: 'growth' });
    await track(s, regular, 'Webinar Attended', { topic: 'growth' });
    await track(s, once, 'Webinar Attended', { topic: 'growth' });
    await track(s, once, 'Webinar Attended', { topic: 'pricing' });
    await track(s, quiet, 'Webinar Attended', { topic: 'pricing' });

    const id = 'growth-regulars';
    const created = await okPut(s, `/api/v1/segments/${id}`, {
      id,
      name: 'Growth webinar regulars',
      condition: 'count(event "Webinar Attended" where properties.topic == "growth") >= 2',
    });
    assert.equal(created.version, 1);
    assert.ok(['computing', 'ready'].includes(created.status), created.status);
    const cohortId = 'bf-cohort';
    await okPut(s, `/api/v1/segments/${cohortId}`, `id: ${cohortId}\ncondition: traits.cohort == "${cohort}"\n`);

    const seg = await waitReady(s, id);
    assert.equal(seg.member_count, 1);
    assert.equal((await waitReady(s, cohortId)).member_count, 2);
    // (The members list may lag `ready` by a moment: see the test after this one.)
    const listed = async (sid, n) =>
      until(`${n} members listed in ${sid}`, async () => {
        const m = (await members(s, sid)).members;
        return [m.length === n, m];
      });
    assert.deepEqual((await listed(id, 1)).map((m) => m.user_id), [regular]);
    assert.deepEqual((await listed(cohortId, 2)).map((m) => m.user_id).sort(), [regular, once].sort());
    // Members page by page.
    const p1 = await members(s, cohortId, '?limit=1');
    assert.equal(p1.members.length, 1);
    assert.equal(typeof p1.next_cursor, 'string');
    const p2 = await members(s, cohortId, `?limit=1&cursor=${encodeURIComponent(p1.next_cursor)}`);
    assert.equal(p2.members.length, 1);
    assert.equal(p2.next_cursor, null);
    assert.deepEqual([p1.members[0].user_id, p2.members[0].user_id].sort(), [regular, once].sort());
    assert.equal((await s.admin('GET', `/api/v1/segments/${cohortId}/members?limit=0`)).status, 400);
    assert.deepEqual((await s.contact(regular)).segments, [cohortId, id].sort());
    assert.deepEqual((await s.contact(once)).segments, [cohortId]);
    assert.deepEqual((await s.contact(quiet)).segments, []);
    for (const u of [regular, once]) {
      assert.deepEqual(await derived(s, u, { name: 'Segment Entered' }), [],
        'the first computation of a segment emits no Segment Entered');
    }

    // After the backfill, a change is live and emitted.
    await track(s, once, 'Webinar Attended', { topic: 'growth' });
    assert.deepEqual((await s.contact(once)).segments, [cohortId, id].sort());
    const entered = await derived(s, once, { name: 'Segment Entered' });
    assert.deepEqual(entered.map((e) => e.properties.segment), [id]);
    assert.equal((await s.get(`/api/v1/segments/${id}`)).member_count, 2);
  });

  test('once a segment says ready, its members list agrees with member_count', async () => {
    // A user who waits for `ready` and then lists the members must see them all. Repeated,
    // because what this checks is an ordering between the background computation and the
    // store.
    const s = server;
    const cohort = uid('ready');
    const users = [uid('ready'), uid('ready'), uid('ready')];
    for (const u of users) await identify(s, u, { cohort });
    const mismatches = [];
    for (let i = 0; i < 30; i++) {
      const id = `ready-check-${i}`;
      await okPut(s, `/api/v1/segments/${id}`, { id, condition: `traits.cohort == "${cohort}"` });
      const seg = await until(`${id} ready`, async () => {
        const x = await s.get(`/api/v1/segments/${id}`);
        return [x.status === 'ready', x];
      }, { intervalMs: 1 });
      const listed = (await members(s, id)).members.length;
      if (seg.member_count !== 3 || listed !== 3) {
        mismatches.push(`${id}: member_count ${seg.member_count}, listed ${listed}`);
      }
    }
    for (let i = 0; i < 30; i++) await ok(s.admin('DELETE', `/api/v1/segments/ready-check-${i}`), 'DELETE');
    assert.deepEqual(mismatches, [], 'ready with 3 members, then GET .../members right away');
  });

  test('segments are defined as YAML or JSON; unchanged definitions keep their version', async () => {
    const s = server;
    const yaml = [
      'id: def-yaml',
      'name: Defined in YAML',
      'description: >',
      '  Two lines folded',
      '  into one.',
      'condition: |',
      '  traits.plan == "trial"',
      '  and traits.country in ["DE", "FR"]',
      '',
    ].join('\n');
    const y = await okPut(s, '/api/v1/segments/def-yaml', yaml);
    assert.equal(y.id, 'def-yaml');
    assert.equal(y.name, 'Defined in YAML');
    assert.equal(y.description, 'Two lines folded into one.\n');
    assert.equal(y.condition, 'traits.plan == "trial"\nand traits.country in ["DE", "FR"]\n');
    assert.equal(y.version, 1);
    assert.equal(typeof y.member_count, 'number');
    assertRecent(y.updated_at, 'updated_at');

    const j = await okPut(s, '/api/v1/segments/def-json', {
      id: 'def-json',
      condition: 'traits.plan == "trial" and traits.country == "DE"',
    });
    assert.equal(j.name, 'def-json', 'the name defaults to the id');
    assert.equal(j.version, 1);

    const ids = await segmentIds(s);
    assert.ok(ids.includes('def-yaml') && ids.includes('def-json'), ids.join());
    const got = await s.get('/api/v1/segments/def-yaml');
    assert.equal(got.condition, y.condition);

    // A member through a trait change, live.
    const user = uid('def');
    await identify(s, user, { plan: 'trial', country: 'DE' });
    assert.deepEqual((await s.contact(user)).segments, ['def-json', 'def-yaml']);

    // The same text again: nothing changes. A different condition: version 2, recomputed.
    assert.equal((await okPut(s, '/api/v1/segments/def-yaml', yaml)).version, 1);
    assert.equal((await waitReady(s, 'def-yaml')).member_count, 1);
    const v2 = await okPut(s, '/api/v1/segments/def-json', {
      id: 'def-json',
      condition: 'traits.plan == "trial" and traits.country == "FR"',
    });
    assert.equal(v2.version, 2);
    assert.equal((await waitReady(s, 'def-json')).member_count, 0);
    assert.deepEqual((await s.contact(user)).segments, ['def-yaml']);

    // The URL's id and the body's must agree.
    const mismatch = await putSegment(s, 'def-other', 'id: def-yaml\ncondition: "true"\n');
    assert.equal(mismatch.status, 400, mismatch.text);
    assert.match(mismatch.json.error, /differs/);
    assert.equal((await s.admin('GET', '/api/v1/segments/def-other')).status, 404);
  });

  // Bodies with an error, where it is (line, column) and the message's start.
  const BROKEN_YAML = [
    'id: broken',
    'name: Broken',
    'description: a typo on the last line',
    'condition: |',
    '  traits.plan == "trial"',
    '  and traits.country in ["DE", "FR"]',
    '  and trait.employees > 10', // line 7 of the body, column 7
    '',
  ].join('\n');
  const BROKEN_JSON = '{\n  "id": "broken",\n  "condition": "traits.plan = \\"trial\\""\n}\n'; // 3:29

  test('errors in a definition name the source, line and column in the body', async () => {
    const s = server;
    // The error is on the third line of a `condition: |` block.
    let r = await putSegment(s, 'broken', BROKEN_YAML);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^request body:7:7: condition: /);
    assert.match(r.json.error, /did you mean traits/);

    r = await putSegment(s, 'broken', BROKEN_YAML, { source: 'segments/broken.yaml' });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^segments\/broken\.yaml:7:7: condition: /);

    // A JSON body over several lines: the lone '=' is on line 3, column 29.
    r = await putSegment(s, 'broken', BROKEN_JSON);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^request body:3:29: .*==/);

    // A type error on one line points at the operator.
    r = await putSegment(s, 'broken', 'id: broken\ncondition: count(event "Page Viewed") >= "three"\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^request body:2:39: /);

    // YAML that is not YAML.
    r = await putSegment(s, 'broken', 'id: broken\n  condition: x\n bad: [\n', { source: 'x.yaml' });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^x\.yaml:\d+:\d+: /);

    // A condition that is not a boolean, and an unknown key.
    r = await putSegment(s, 'broken', 'id: broken\ncondition: traits.plan\n');
    assert.equal(r.status, 400, r.text);
    r = await putSegment(s, 'broken', 'id: broken\ncondition: "true"\nconditon: "false"\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /conditon/);

    assert.equal((await s.admin('GET', '/api/v1/segments/broken')).status, 404,
      'a refused definition is not stored');
  });

  test('errors in a definition carry line and column as JSON fields', async () => {
    // The API's error shape: 400 with `line`/`column` for a position in the text (as
    // POST /api/v1/segments/preview does), `field` for a field.
    const s = server;
    for (const [body, source, line, column] of [
      [BROKEN_YAML, undefined, 7, 7],
      [BROKEN_YAML, 'segments/broken.yaml', 7, 7],
      [BROKEN_JSON, undefined, 3, 29],
    ]) {
      const r = await putSegment(s, 'broken', body, { source });
      assert.equal(r.status, 400, r.text);
      assert.deepEqual([r.json.line, r.json.column], [line, column], `line and column of ${r.text}`);
    }
  });

  test('references: unknown segments, self reference and cycles are refused; a referenced segment cannot be deleted', async () => {
    const s = server;
    let r = await putSegment(s, 'ref-a', { id: 'ref-a', condition: 'in segment "ref-missing"' });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /unknown segment "ref-missing"/);

    r = await putSegment(s, 'ref-self', 'condition: in segment "ref-self" or traits.x exists\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /itself/);
    assert.deepEqual([r.json.line, r.json.column], [1, 12], 'at the condition');

    await okPut(s, '/api/v1/segments/ref-a', { id: 'ref-a', condition: 'traits.ref == "a"' });
    await okPut(s, '/api/v1/segments/ref-b', { id: 'ref-b', condition: 'in segment "ref-a" and traits.deep == true' });
    await okPut(s, '/api/v1/segments/ref-c', { id: 'ref-c', condition: 'in segment "ref-b"' });
    r = await putSegment(s, 'ref-a', { id: 'ref-a', condition: 'in segment "ref-c"' });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /itself through other segments/);
    const a = await s.get('/api/v1/segments/ref-a');
    assert.equal(a.condition, 'traits.ref == "a"', 'the refused change left ref-a as it was');
    assert.equal(a.version, 1);

    // Chained segments are evaluated in order, in one go.
    const user = uid('ref');
    await identify(s, user, { ref: 'a', deep: true });
    assert.deepEqual((await s.contact(user)).segments, ['ref-a', 'ref-b', 'ref-c']);
    await identify(s, user, { ref: 'z' });
    assert.deepEqual((await s.contact(user)).segments, []);
    const exits = await derived(s, user, { name: 'Segment Exited' });
    assert.deepEqual(exits.map((e) => e.properties.segment).sort(), ['ref-a', 'ref-b', 'ref-c']);

    r = await s.admin('DELETE', '/api/v1/segments/ref-a');
    assert.equal(r.status, 409, r.text);
    assert.match(r.json.error, /ref-b/);
    r = await s.admin('DELETE', '/api/v1/segments/ref-b');
    assert.equal(r.status, 409, r.text);
    await ok(s.admin('DELETE', '/api/v1/segments/ref-c'), 'DELETE ref-c');
    await ok(s.admin('DELETE', '/api/v1/segments/ref-b'), 'DELETE ref-b');
    await ok(s.admin('DELETE', '/api/v1/segments/ref-a'), 'DELETE ref-a');
    for (const id of ['ref-a', 'ref-b', 'ref-c']) {
      assert.equal((await s.admin('GET', `/api/v1/segments/${id}`)).status, 404);
      assert.equal((await s.admin('GET', `/api/v1/segments/${id}/members`)).status, 404);
    }
    assert.equal((await s.admin('DELETE', '/api/v1/segments/ref-a')).status, 404);
  });

  describe('nudge apply -f DIR (a copy of examples/demo plus a broken segment)', () => {
    let ws;
    let dir;
    let first; // the first apply's {code, stdout, stderr}
    before(async () => {
      ws = await server.createWorkspace();
      dir = tmpDir('nudge-apply-');
      dirs.push(dir);
      fs.cpSync(DEMO, dir, { recursive: true });
      fs.writeFileSync(
        path.join(dir, 'segments', 'zz-broken.yaml'),
        'name: Broken\ncondition: |\n  traits.plan == "trial"\n  and trait.x > 1\n',
      );
      first = await ws.cli(['apply', '-f', dir, ...cliArgs(ws)]);
    });

    test('prints a line per applied file, exits 1, and the good files are applied', async () => {
      const out = first;
      assert.equal(out.code, 1, `exit code\n${out.stdout}\n${out.stderr}`);
      const lines = out.stdout.trim().split('\n');
      for (const id of DEMO_SEGMENTS) {
        assert.ok(
          lines.some((l) => new RegExp(`^segments/${id}\\.yaml: segment ${id}, version 1 \\((computing|ready)\\)$`).test(l)),
          `no line for ${id} in:\n${out.stdout}`,
        );
      }
      assert.ok(lines.includes('scoring.yaml: scoring applied'), out.stdout);
      assert.ok(lines.includes('stages.yaml: stages applied'), out.stdout);
      assert.equal(lines.length, demoAppliedFiles(), out.stdout);
      assert.doesNotMatch(out.stdout, /zz-broken/);
      assert.match(out.stderr, /1 file\(s\) refused/);

      // at-risk-customers names customers, which sorts after it: applied on a retry.
      assert.deepEqual(await segmentIds(ws), DEMO_SEGMENTS);
      for (const id of DEMO_SEGMENTS) assert.equal((await waitReady(ws, id)).version, 1);
      const scoring = await ws.get('/api/v1/scoring');
      assert.deepEqual(scoring.thresholds, { mql: 50, sql: 100 });
      assert.deepEqual(scoring.decay, { half_life: '30d' });
      const pricing = scoring.rules.find((x) => x.id === 'pricing-visit');
      assert.equal(pricing.cap.points, 30);
      assert.ok(['7d', '1w'].includes(pricing.cap.per), pricing.cap.per);
      const stages = await ws.get('/api/v1/stages');
      assert.deepEqual(stages.stages.map((x) => x.name), DEFAULT_STAGES);
      assert.match(stages.stages[2].when, /traits\.plan == "trial"/, 'the demo\'s own Decision condition');
    });

    test('names the refused file, line and column on stderr', () => {
      assert.match(
        first.stderr,
        /^error: segments\/zz-broken\.yaml:4:7: condition: unknown path root 'trait'.*$/m,
        'the first apply (which retried at-risk-customers) must say which file was refused and why',
      );
    });

    test('re-applying unchanged files keeps every version', async () => {
      const out = await ws.cli(['apply', '-f', dir, ...cliArgs(ws)]);
      assert.equal(out.code, 1, out.stderr);
      assert.match(out.stderr, /^error: segments\/zz-broken\.yaml:4:7: /m);
      for (const id of DEMO_SEGMENTS) {
        assert.match(out.stdout, new RegExp(`^segments/${id}\\.yaml: segment ${id}, version 1 \\(ready\\)$`, 'm'));
        assert.equal((await ws.get(`/api/v1/segments/${id}`)).version, 1);
      }
    });

    test('a fixed file and a changed one: exit 0, only the changed segment gets a new version', async () => {
      fs.writeFileSync(path.join(dir, 'segments', 'zz-broken.yaml'), 'name: Fixed\ncondition: traits.x > 1\n');
      fs.writeFileSync(path.join(dir, 'segments', 'trial-users.yaml'),
        'id: trial-users\nname: On a trial\ncondition: traits.plan in ["trial", "trial-extended"]\n');
      const out = await ws.cli(['apply', '-f', dir, ...cliArgs(ws)]);
      assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
      assert.match(out.stdout, /^segments\/trial-users\.yaml: segment trial-users, version 2 \(/m);
      assert.match(out.stdout, /^segments\/zz-broken\.yaml: segment zz-broken, version 1 \(/m);
      assert.match(out.stdout, /^segments\/customers\.yaml: segment customers, version 1 \(ready\)$/m);
      const zz = await ws.get('/api/v1/segments/zz-broken');
      assert.equal(zz.name, 'Fixed', 'the id comes from the file name');
      assert.equal((await ws.get('/api/v1/segments/trial-users')).condition,
        'traits.plan in ["trial", "trial-extended"]');
    });
  });

  test('lead scores: event rules with where and cap, condition rules, thresholds and Lead Qualified', async () => {
    const ws = await server.createWorkspace();
    const scoringYaml = [
      'rules:',
      '  - id: pricing-visit',
      '    event: Page Viewed',
      '    where: properties.path == "/pricing"',
      '    points: 10',
      '    cap: { points: 20, per: 7d }',
      '  - id: demo-request',
      '    event: Demo Requested',
      '    points: 40',
      '  - id: big-company',
      '    condition: traits.employees >= 50',
      '    points: 15',
      '  - id: unsubscribed',
      '    event: Unsubscribed',
      '    points: -30',
      'thresholds: { mql: 50, sql: 90 }',
      '',
    ].join('\n');
    const applied = await okPut(ws, '/api/v1/scoring', scoringYaml);
    assert.deepEqual(applied.thresholds, { mql: 50, sql: 90 });
    assert.deepEqual(applied.rules.map((x) => x.id), ['pricing-visit', 'demo-request', 'big-company', 'unsubscribed']);
    assert.deepEqual(applied.rules[0], {
      id: 'pricing-visit', event: 'Page Viewed', where: 'properties.path == "/pricing"', points: 10,
      cap: { points: 20, per: applied.rules[0].cap?.per },
    });
    assert.ok(['7d', '1w'].includes(applied.rules[0].cap.per), applied.rules[0].cap.per);
    assert.deepEqual(await ws.get('/api/v1/scoring'), applied);
    await okPut(ws, '/api/v1/segments/hot', { id: 'hot', name: 'Hot leads', condition: 'score >= 50' });
    await waitReady(ws, 'hot');

    // A rule error points into the file.
    const bad = await putDoc(ws, '/api/v1/scoring', 'rules:\n  - id: x\n    event: A\n    where: propertys.a == 1\n    points: 1\n', { source: 'scoring.yaml' });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.json.error, /^scoring\.yaml:4:12: /);

    const lead = uid('lead');
    await identify(ws, lead, { employees: 120 });
    let c = await ws.contact(lead);
    assert.deepEqual(c.score, { value: 15, qualification: null, breakdown: { 'big-company': 15 } });

    await page(ws, lead, '/pricing');
    await page(ws, lead, '/docs'); // no points
    await page(ws, lead, '/pricing');
    await page(ws, lead, '/pricing'); // capped: 20 in 7 days at most
    c = await ws.contact(lead);
    assert.deepEqual(c.score, {
      value: 35, qualification: null, breakdown: { 'big-company': 15, 'pricing-visit': 20 },
    });
    assert.deepEqual(await derived(ws, lead, { name: 'Lead Qualified' }), []);

    await track(ws, lead, 'Demo Requested');
    c = await ws.contact(lead);
    assert.equal(c.score.value, 75);
    assert.equal(c.score.qualification, 'MQL');
    assert.deepEqual(c.segments, ['hot']);
    let q = await derived(ws, lead, { name: 'Lead Qualified' });
    assert.equal(q.length, 1, JSON.stringify(q));
    assert.deepEqual(q[0].properties, { level: 'MQL', score: 75 });

    await track(ws, lead, 'Demo Requested');
    c = await ws.contact(lead);
    assert.deepEqual(c.score, {
      value: 115,
      qualification: 'SQL',
      breakdown: { 'big-company': 15, 'pricing-visit': 20, 'demo-request': 80 },
    });
    q = await derived(ws, lead, { name: 'Lead Qualified' });
    assert.deepEqual(q.map((e) => e.properties).reverse(), [
      { level: 'MQL', score: 75 },
      { level: 'SQL', score: 115 },
    ]);

    // Negative points bring the score down; qualifying again later emits nothing new.
    await track(ws, lead, 'Unsubscribed');
    c = await ws.contact(lead);
    assert.equal(c.score.value, 85);
    assert.equal(c.score.qualification, 'MQL');
    assert.equal(c.score.breakdown.unsubscribed, -30);

    // A small company, one demo request: 40, below MQL.
    const small = uid('lead-small');
    await identify(ws, small, { employees: 10 });
    await track(ws, small, 'Demo Requested');
    c = await ws.contact(small);
    assert.deepEqual(c.score, { value: 40, qualification: null, breakdown: { 'demo-request': 40 } });
    assert.deepEqual(c.segments, []);
    assert.deepEqual(await derived(ws, small, { name: 'Lead Qualified' }), []);
    assert.equal((await ws.get('/api/v1/segments/hot')).member_count, 1);

    // Changing the scoring recounts the points from the stored events.
    const recount = scoringYaml.replace('points: 40', 'points: 5');
    await okPut(ws, '/api/v1/scoring', recount);
    c = await until('the recount', async () => {
      const x = await ws.contact(small);
      return [x.score.value === 5, x];
    });
    assert.deepEqual(c.score.breakdown, { 'demo-request': 5 });
    assert.equal((await ws.contact(lead)).score.value, 15 + 20 + 10 - 30);
  });

  test('lifecycle stages: Awareness to Advocacy by default, counts, custom stages', async () => {
    const ws = await server.createWorkspace();
    const defaults = await ws.get('/api/v1/stages');
    assert.deepEqual(defaults.stages.map((x) => x.name), DEFAULT_STAGES);
    assert.equal(defaults.moves_back, false);
    assert.deepEqual(defaults.counts, DEFAULT_STAGES.map((name) => ({ name, contacts: 0 })));

    const buyer = uid('buyer');
    const reader = uid('reader');
    const trial = uid('trial');
    await identify(ws, buyer, { plan: 'free' });
    await identify(ws, reader, {});
    await identify(ws, trial, { plan: 'trial' });
    let c = await ws.contact(buyer);
    assert.equal(c.stage.name, 'Awareness');
    assertRecent(c.stage.since, 'stage.since');

    const steps = [
      [() => page(ws, buyer, '/pricing'), 'Consideration'],
      [() => track(ws, buyer, 'Demo Requested'), 'Decision'],
      [() => track(ws, buyer, 'Order Completed', { revenue: 99 }), 'Retention'],
      [() => track(ws, buyer, 'Referral Sent'), 'Advocacy'],
    ];
    let previous = 'Awareness';
    for (const [act, stage] of steps) {
      await act();
      c = await ws.contact(buyer);
      assert.equal(c.stage.name, stage);
      const changed = await derived(ws, buyer, { name: 'Stage Changed' });
      assert.deepEqual(changed[0].properties, { stage, previous });
      previous = stage;
    }
    // Moving back is off: a later pricing visit leaves the contact in Advocacy.
    await page(ws, buyer, '/pricing');
    c = await ws.contact(buyer);
    assert.equal(c.stage.name, 'Advocacy');
    assert.deepEqual(c.stage.history.map((h) => [h.stage, h.previous]), [
      ['Awareness', null],
      ['Consideration', 'Awareness'],
      ['Decision', 'Consideration'],
      ['Retention', 'Decision'],
      ['Advocacy', 'Retention'],
    ]);
    for (const h of c.stage.history) assertRecent(h.at, 'history.at');
    assert.equal((await derived(ws, buyer, { name: 'Stage Changed' })).length, 5);

    const counts = (await ws.get('/api/v1/stages')).counts;
    assert.deepEqual(counts, [
      { name: 'Awareness', contacts: 2 }, // reader; trial (the default stages ignore traits.plan)
      { name: 'Consideration', contacts: 0 },
      { name: 'Decision', contacts: 0 },
      { name: 'Retention', contacts: 0 },
      { name: 'Advocacy', contacts: 1 },
    ]);

    // Custom stages, allowed to move back; existing contacts are placed again.
    const custom = [
      'stages:',
      '  - name: Lead',
      '    when: "true"',
      '  - name: Trial',
      '    when: traits.plan == "trial"',
      '  - name: Customer',
      '    when: event "Order Completed"',
      'moves_back: true',
      '',
    ].join('\n');
    const put = await okPut(ws, '/api/v1/stages', custom);
    assert.deepEqual(put.stages.map((x) => x.name), ['Lead', 'Trial', 'Customer']);
    assert.equal(put.moves_back, true);
    const expected = [
      { name: 'Lead', contacts: 1 },
      { name: 'Trial', contacts: 1 },
      { name: 'Customer', contacts: 1 },
    ];
    await until('the contacts to be placed in the new stages', async () => {
      const r = await ws.get('/api/v1/stages');
      return [isDeepStrictEqual(r.counts, expected), r.counts];
    });
    assert.equal((await ws.contact(buyer)).stage.name, 'Customer');
    assert.equal((await ws.contact(trial)).stage.name, 'Trial');
    assert.equal((await ws.contact(reader)).stage.name, 'Lead');

    // moves_back: the trial ends, the contact is a Lead again, at once.
    await identify(ws, trial, { plan: 'free' });
    c = await ws.contact(trial);
    assert.equal(c.stage.name, 'Lead');
    const back = await derived(ws, trial, { name: 'Stage Changed' });
    assert.deepEqual(back[0].properties, { stage: 'Lead', previous: 'Trial' });

    // A stage condition error points into the file.
    const bad = await putDoc(ws, '/api/v1/stages', 'stages:\n  - name: A\n    when: event Order\n', { source: 'stages.yaml' });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.json.error, /^stages\.yaml:3:\d+: /);
    assert.deepEqual((await ws.get('/api/v1/stages')).stages.map((x) => x.name), ['Lead', 'Trial', 'Customer']);
  });

  test('preview counts what a condition matches without saving a segment (API and nudge segment preview)', async () => {
    const s = server;
    const cohort = uid('pv');
    const users = [uid('pv-a'), uid('pv-b'), uid('pv-c')];
    for (const u of users) await identify(s, u, { cohort });
    await track(s, users[0], 'Preview Ping', { n: 3 });
    await track(s, users[1], 'Preview Ping', { n: 2 });
    await track(s, users[2], 'Preview Ping', { n: 1 });
    const before = await segmentIds(s);

    let r = await s.admin('POST', '/api/v1/segments/preview', {
      body: { condition: `traits.cohort == "${cohort}"`, sample: 2 },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.count, 3);
    assert.equal(r.json.sample.length, 2);
    for (const m of r.json.sample) assert.ok(users.includes(m.user_id), m.user_id);
    // A trait path a segment reads is a trait column: a preview on it is answered from the
    // column, which follows trait changes.
    const key = `tier${Date.now()}${Math.floor(Math.random() * 1e6)}`;
    for (const u of users) await identify(s, u, { [key]: 'gold' });
    const onKey = { body: { condition: `traits.${key} == "gold"`, sample: 10 } };
    r = await s.admin('POST', '/api/v1/segments/preview', onKey);
    assert.deepEqual([r.json.count, r.json.from_columns], [3, false], 'no definition reads it yet');
    const reader = uid('pv-seg');
    r = await s.admin('PUT', `/api/v1/segments/${reader}`, { body: { condition: `traits.${key} == "none"` } });
    assert.equal(r.status, 200, r.text);
    r = await s.admin('POST', '/api/v1/segments/preview', onKey);
    assert.deepEqual([r.json.count, r.json.from_columns], [3, true]);
    await identify(s, users[2], { [key]: 'silver' });
    r = await s.admin('POST', '/api/v1/segments/preview', {
      body: { condition: `traits.${key} in ["gold", "platinum"]`, sample: 10 },
    });
    assert.deepEqual([r.json.count, r.json.from_columns], [2, true]);
    assert.deepEqual(r.json.sample.map((m) => m.user_id).sort(), [users[0], users[1]].sort());
    assert.equal((await s.admin('DELETE', `/api/v1/segments/${reader}`)).status, 200);

    // A behavioural term no segment uses yet is counted from the stored events.
    const behavioural = `traits.cohort == "${cohort}" and event "Preview Ping" where properties.n >= 2`;
    r = await s.admin('POST', '/api/v1/segments/preview', { body: { condition: behavioural, sample: 10 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.count, 2);
    assert.deepEqual(r.json.sample.map((m) => m.user_id).sort(), [users[0], users[1]].sort());

    r = await s.admin('POST', '/api/v1/segments/preview', { body: { condition: 'in segment "pv-nothing"' } });
    assert.equal(r.status, 400, r.text);
    r = await s.admin('POST', '/api/v1/segments/preview', { body: { condition: 'traits.cohort = 1' } });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.line, 1);
    assert.equal(r.json.column, 15);

    let out = await s.cli(['segment', 'preview', behavioural, ...cliArgs(s)]);
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.trim().split('\n');
    assert.equal(lines[0], '2 contacts match');
    assert.equal(lines.length, 3, out.stdout);
    assert.ok(lines.some((l) => l.includes(users[0])) && lines.some((l) => l.includes(users[1])), out.stdout);

    out = await s.cli(['segment', 'preview', `traits.cohort == "${cohort}"`, '--sample', '1', ...cliArgs(s)]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout.trim().split('\n')[0], '3 contacts match');
    assert.equal(out.stdout.trim().split('\n').length, 2, out.stdout);

    const badCondition = `traits.cohort == "${cohort}" and count(event "Preview Ping") >= "two"`;
    out = await s.cli(['segment', 'preview', badCondition, ...cliArgs(s)]);
    assert.equal(out.code, 2, `${out.stdout}\n${out.stderr}`);
    const column = badCondition.indexOf('>=') + 1;
    assert.ok(
      out.stderr.includes(`  ${badCondition}\n  ${' '.repeat(column - 1)}^\n`),
      `no caret under column ${column}:\n${out.stderr}`,
    );
    assert.match(out.stderr, new RegExp(`1:${column}: `));

    assert.deepEqual(await segmentIds(s), before, 'preview saved nothing');
  });

  test('workspaces do not see each other\'s segments or contacts', async () => {
    const a = await server.createWorkspace();
    const b = server; // the default workspace
    await okPut(a, '/api/v1/segments/vip', { id: 'vip', name: 'VIP (A)', condition: 'traits.vip == true' });
    assert.equal((await b.admin('GET', '/api/v1/segments/vip')).status, 404);
    assert.equal((await b.admin('GET', '/api/v1/segments/vip/members')).status, 404);
    assert.ok(!(await segmentIds(b)).includes('vip'));
    assert.equal((await b.admin('DELETE', '/api/v1/segments/vip')).status, 404);
    assert.equal((await a.admin('GET', '/api/v1/segments/pricing-burst')).status, 404,
      'A does not see the default workspace\'s segments');
    assert.deepEqual(await segmentIds(a), ['vip']);

    // The same id in B is B's own segment.
    const bv = await okPut(b, '/api/v1/segments/vip', { id: 'vip', name: 'VIP (B)', condition: 'traits.tier == "gold"' });
    assert.equal(bv.version, 1);
    assert.equal((await a.get('/api/v1/segments/vip')).name, 'VIP (A)');

    // One user id in both workspaces: only A's contact is a VIP.
    const user = uid('iso');
    await identify(a, user, { vip: true });
    await identify(b, user, { vip: true });
    assert.deepEqual((await a.contact(user)).segments, ['vip']);
    assert.deepEqual((await b.contact(user)).segments, []);
    assert.equal((await a.get('/api/v1/segments/vip')).member_count, 1);
    assert.equal((await b.get('/api/v1/segments/vip')).member_count, 0);
    const pa = await a.admin('POST', '/api/v1/segments/preview', { body: { condition: 'traits.vip == true' } });
    const pb = await b.admin('POST', '/api/v1/segments/preview', { body: { condition: 'traits.vip == true' } });
    assert.equal(pa.json.count, 1);
    assert.equal(pb.json.count, 1, 'B has its own contact with vip: true');
    assert.notEqual(pa.json.sample[0].id, pb.json.sample[0].id);

    await ok(b.admin('DELETE', '/api/v1/segments/vip'), 'DELETE vip in B');
    assert.equal((await a.get('/api/v1/segments/vip')).member_count, 1, 'A keeps its vip');
  });

  describe('the demo workspace (examples/demo)', () => {
    let ws;
    before(async () => {
      ws = await server.createWorkspace();
      const tmp = tmpDir('nudge-demo-');
      dirs.push(tmp);
      const applied = await ws.cli(['apply', '-f', DEMO, ...cliArgs(ws)]);
      assert.equal(applied.code, 0, `${applied.stdout}\n${applied.stderr}`);
      assert.equal(applied.stdout.trim().split('\n').length, demoAppliedFiles(), applied.stdout);
      const imported = await ws.cli([
        'import', 'contacts', path.join(DEMO, 'contacts.csv'),
        '--rejects', path.join(tmp, 'rejects.csv'), '--flagged', path.join(tmp, 'flagged.csv'),
        ...cliArgs(ws),
      ]);
      assert.equal(imported.code, 0, `${imported.stdout}\n${imported.stderr}`);
      for (const id of DEMO_SEGMENTS) await waitReady(ws, id);
      await ok(ws.send('/v1/batch', fs.readFileSync(path.join(DEMO, 'events.json'))), 'demo events');
    });

    test('memberships, stages and scores the demo data implies', async () => {
      const counts = Object.fromEntries(
        (await ws.get('/api/v1/segments')).segments.map((x) => [x.id, x.member_count]),
      );
      assert.deepEqual(counts, {
        'at-risk-customers': 1, // gia: bought, no page view in 30 days
        'cart-abandoners': 1, // ann
        customers: 1, // gia
        'demo-then-integrations': 1, // visitor-1, identified as cara
        engaged: 0,
        'pricing-intent': 0,
        'trial-users': 2, // ann, cara
      });

      const ann = await ws.contact('ann');
      assert.deepEqual(ann.segments, ['cart-abandoners', 'trial-users']);
      assert.equal(ann.stage.name, 'Decision');
      assert.equal(ann.traits.company, 'Acme', 'the imported row and the identified user are one contact');
      assert.deepEqual(ann.score, {
        value: 20, qualification: null, breakdown: { 'company-size': 10, 'pricing-visit': 10 },
      });
      // The segments existed before the events: entering was live, and emitted.
      const annEntered = (await derived(ws, 'ann', { name: 'Segment Entered' })).map((e) => e.properties.segment);
      assert.deepEqual(annEntered.sort(), ['cart-abandoners', 'trial-users']);

      let cara = await ws.contact('cara');
      assert.deepEqual(cara.segments, ['demo-then-integrations', 'trial-users']);
      assert.equal((await ws.contact('visitor-1')).id, cara.id);
      assert.equal(cara.stage.name, 'Decision');
      // The integrations journey (triggered by entering demo-then-integrations) sends an email,
      // then adds 10 points. The demo's policies keep email quiet from 21:00 to 08:00 in New
      // York: inside that window the email is deferred and the journey waits with it.
      const quietNow = () => {
        const hour = Number(new Intl.DateTimeFormat('en-US', {
          timeZone: 'America/New_York', hour: 'numeric', hourCycle: 'h23',
        }).format(new Date()));
        return hour >= 21 || hour < 8;
      };
      const quietBefore = quietNow();
      const [mail] = await until('the integrations email', async () => {
        const list = (await ws.get('/api/v1/messages?contact=cara&limit=10')).messages;
        return [list.length > 0, list];
      });
      assert.equal(mail.journey, 'integrations');
      const quietAfter = quietNow();
      if (quietBefore && quietAfter) {
        assert.equal(mail.status, 'deferred_quiet_hours', JSON.stringify(mail));
        cara = await ws.contact('cara');
        assert.deepEqual(cara.score.breakdown, { 'company-size': 10, 'demo-video': 15, 'pricing-visit': 10 });
      } else if (!quietBefore && !quietAfter) {
        assert.notEqual(mail.status, 'deferred_quiet_hours', JSON.stringify(mail));
        // The score step runs on the journey worker after the send step commits.
        cara = await until('the integrations journey to add its 10 points', async () => {
          const c = await ws.contact('cara');
          return [c.score.breakdown.adjustments !== undefined, c];
        });
        assert.deepEqual(cara.score.breakdown, {
          adjustments: 10, 'company-size': 10, 'demo-video': 15, 'pricing-visit': 10,
        });
        assert.equal(cara.score.value, 45);
      }

      const gia = await ws.contact('gia');
      assert.deepEqual(gia.segments, ['at-risk-customers', 'customers']);
      assert.equal(gia.stage.name, 'Retention');
      assert.equal((await ws.contact('gia@vandelay-example.com')).id, gia.id);

      const bo = await ws.contact('bo.chen@globex-example.com');
      assert.deepEqual(bo.segments, []);
      assert.equal(bo.stage.name, 'Awareness');

      const trial = (await members(ws, 'trial-users')).members.map((m) => m.user_id);
      assert.deepEqual(trial.sort(), ['ann', 'cara']);

      // bo, dev, eve and info (hooli) were imported and did nothing yet; finn@ was rejected and
      // the second ANN@ row merged into ann.
      assert.deepEqual((await ws.get('/api/v1/stages')).counts, [
        { name: 'Awareness', contacts: 4 },
        { name: 'Consideration', contacts: 0 },
        { name: 'Decision', contacts: 2 },
        { name: 'Retention', contacts: 1 },
        { name: 'Advocacy', contacts: 0 },
      ]);
    });

    test('the Employees column of contacts.csv counts for the company-size rule', async () => {
      // contacts.csv gives Gia 60 employees (Cara's 300 also come from her identify call);
      // scoring.yaml: company-size, traits.employees >= 50, 10 points.
      const gia = await ws.contact('gia');
      assert.equal(gia.score.breakdown['company-size'], 10,
        `gia's employees trait is ${JSON.stringify(gia.traits.employees)}; score ${JSON.stringify(gia.score)}`);
    });
  });
});

// ---- restart: a server of its own ------------------------------------------------------------

describe('memberships, stages and scores across a restart', { timeout: 60_000 }, () => {
  let server;
  const user = uid('rs');
  const other = uid('rs-other');
  const mergeAnon = uid('rs-anon');
  const mergeUser = uid('rs-merged');
  const gone = uid('rs-gone');
  let before1; // the user's derived events before the first restart
  let after1;
  let after2;
  const label = (e) => [e.event, e.properties.segment ?? e.properties.level ?? e.properties.stage];
  const isNew = (list, old) => list.filter((e) => !old.some((b) => b.message_id === e.message_id));

  before(async () => {
    server = await new NudgeServer().start();
  });
  after(async () => {
    await server?.dispose();
  });

  test('memberships and stages survive SIGTERM and restarts; a window that slid out meanwhile is left once', async () => {
    const s = server;
    await okPut(s, '/api/v1/scoring', 'rules:\n  - id: demo\n    event: Demo Requested\n    points: 60\nthresholds: { mql: 50 }\n');
    await okPut(s, '/api/v1/segments/repeat', {
      id: 'repeat',
      condition: 'count(event "Page Viewed" where properties.path starts_with "/r/") >= 2',
    });
    await okPut(s, '/api/v1/segments/blip', { id: 'blip', condition: 'event "Ping" within 5s' }); // outlasts the reads below on a slow machine
    await okPut(s, '/api/v1/segments/qualified', { id: 'qualified', condition: 'in segment "repeat" and score >= 50' });
    await okPut(s, '/api/v1/segments/merge-repeat', {
      id: 'merge-repeat',
      condition: 'count(event "Page Viewed" where properties.path starts_with "/m/") >= 2',
    });
    for (const id of ['repeat', 'blip', 'qualified', 'merge-repeat']) await waitReady(s, id);

    // Three members of merge-repeat; one anonymous visitor turns out to be one of the others,
    // and one contact is deleted: one member is left.
    for (const [who, key] of [['anonymousId', mergeAnon], ['userId', mergeUser], ['userId', gone]]) {
      for (const p of ['/m/1', '/m/2']) {
        await ok(s.send('/v1/page', { [who]: key, properties: { path: p } }), 'page');
      }
    }
    assert.equal((await s.get('/api/v1/segments/merge-repeat')).member_count, 3);
    await ok(s.send('/v1/identify', { userId: mergeUser, anonymousId: mergeAnon }), 'identify');
    await ok(s.admin('DELETE', `/api/v1/contacts/${gone}`), 'DELETE contact');
    assert.equal((await s.get('/api/v1/segments/merge-repeat')).member_count, 1);
    assert.deepEqual((await members(s, 'merge-repeat')).members.map((m) => m.user_id), [mergeUser]);
    assert.deepEqual((await s.contact(mergeAnon)).segments, ['merge-repeat']);

    await page(s, user, '/r/a');
    await page(s, user, '/r/b');
    await page(s, other, '/r/a');
    await track(s, user, 'Order Completed', { revenue: 10 });
    await track(s, user, 'Demo Requested');
    await track(s, user, 'Ping');
    let c = await s.contact(user);
    assert.deepEqual(c.segments, ['blip', 'qualified', 'repeat']);
    assert.equal(c.stage.name, 'Retention');
    assert.equal(c.score.qualification, 'MQL');
    const pingAt = Date.parse((await s.events(user)).find((e) => e.event === 'Ping').timestamp);
    before1 = await derived(s, user);
    const otherBefore = await derived(s, other);
    const stageBefore = c.stage;
    assert.deepEqual(
      before1.map(label).filter(([e]) => e === 'Segment Entered').map(([, x]) => x).sort(),
      ['blip', 'qualified', 'repeat'],
    );
    assert.equal(before1.filter((e) => e.event === 'Lead Qualified').length, 1);

    const stopped = await s.stop();
    assert.equal(stopped.code, 0, `exit ${JSON.stringify(stopped)}\n${s.log}`);
    // While nudge is down, the Ping leaves its 5 s window.
    await sleep(Math.max(0, pingAt + 5300 - Date.now()));
    await s.start();

    c = await s.contact(user);
    assert.deepEqual(c.segments, ['qualified', 'repeat'], 'blip slid out while nudge was down');
    assert.deepEqual(c.stage, stageBefore, 'stage, since and history survive');
    assert.equal(c.score.value, 60);
    assert.equal(c.score.qualification, 'MQL');
    assert.deepEqual((await s.contact(other)).segments, []);
    assert.equal((await s.get('/api/v1/segments/repeat')).member_count, 1);
    assert.equal((await s.get('/api/v1/segments/blip')).member_count, 0);
    assert.equal((await s.get('/api/v1/segments/qualified')).member_count, 1);
    assert.deepEqual((await members(s, 'repeat')).members.map((m) => m.user_id), [user]);
    const counts = Object.fromEntries((await s.get('/api/v1/stages')).counts.map((x) => [x.name, x.contacts]));
    assert.equal(counts.Retention, 1);
    assert.equal(counts.Awareness, 2); // other, and mergeUser

    after1 = await derived(s, user);
    assert.deepEqual(
      isNew(after1, before1).map(label).filter(([e]) => e !== 'Lead Qualified'),
      [['Segment Exited', 'blip']],
      'leaving blip is the only membership or stage change across the restart',
    );
    assert.deepEqual(await derived(s, other), otherBefore);

    // Once more, with nothing due: no membership or stage event at all.
    await s.restart();
    after2 = await derived(s, user);
    assert.deepEqual(isNew(after2, after1).map(label).filter(([e]) => e !== 'Lead Qualified'), []);
    assert.deepEqual((await s.contact(user)).segments, ['qualified', 'repeat']);
    assert.deepEqual((await s.contact(user)).stage, stageBefore);
    assert.deepEqual(await derived(s, other), otherBefore);
  });

  test('contacts merged into others or deleted are not counted as members after a restart', async () => {
    assert.ok(after2, 'the restart test ran');
    const s = server;
    assert.deepEqual((await members(s, 'merge-repeat')).members.map((m) => m.user_id), [mergeUser]);
    assert.deepEqual((await s.contact(mergeUser)).segments, ['merge-repeat']);
    assert.equal((await s.get('/api/v1/segments/merge-repeat')).member_count, 1,
      'member_count after a restart, one member listed');
  });

  test('a restart does not emit Lead Qualified again for a contact already qualified', () => {
    assert.ok(after2, 'the restart test ran');
    assert.deepEqual(
      after2.filter((e) => e.event === 'Lead Qualified').map((e) => e.message_id),
      before1.filter((e) => e.event === 'Lead Qualified').map((e) => e.message_id),
      `Lead Qualified events after two restarts: ${JSON.stringify(
        after2.filter((e) => e.event === 'Lead Qualified').map((e) => [e.message_id, e.properties]))}`,
    );
  });
});
