// Journeys survive crashes: thousands of contacts wait in a journey when nudge is SIGKILLed,
// and again while their timers fire. After each restart on the same data directory the waits
// resume (overdue ones fire at once), and at the end, read straight from the SQLite file:
// every contact's instance completed, every contact has exactly one message per send step
// (none twice, none missing), no step was entered twice, and nothing is left active without a
// timer. Also: journeys, their status and late sends across a clean restart.
//
// Every wait here is a bounded poll; the whole file runs in well under a minute.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { NudgeServer, request } from './lib/server.mjs';

const N = 5000; // contacts
const BATCH = 250; // events per /v1/batch request
const FIRST_WAIT_MS = 3000;
const SECOND_WAIT_MS = 1000;

const JOURNEY = `id: crash
name: Crash test drip
trigger: { event: Crash Go }
entry: once
steps:
  - { id: w1, wait: 3s }
  - { id: m1, send: { channel: email, template: crash-one } }
  - { id: w2, wait: 1s }
  - { id: m2, send: { channel: email, template: crash-two } }
`;

function putJourney(s, id, body) {
  return request(`${s.url}/api/v1/journeys/${id}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${s.adminKey}`, 'Content-Type': 'application/yaml' },
    body,
  });
}

async function postBatch(s, batch) {
  const r = await s.send('/v1/batch', { batch, sentAt: new Date().toISOString() });
  assert.equal(r.status, 200, `batch: ${r.status} ${r.text}`);
}

// One number (the first column of the first row) from the database.
async function num(s, query) {
  const rows = await s.sql(query);
  return Number(rows[0]?.split('|')[0] ?? NaN);
}

async function row(s, query) {
  const rows = await s.sql(query);
  return (rows[0] ?? '').split('|').map(Number);
}

async function until(what, fn, { timeoutMs = 20_000, intervalMs = 50 } = {}) {
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

const servers = [];
after(async () => {
  for (const s of servers) await s.dispose();
});

describe('journeys and crashes', () => {
  test(`SIGKILL with ${N} pending waits, and again while their timers fire: every send exactly once`, async () => {
    const s = await new NudgeServer({ env: { NUDGE_DELIVERY_HOLD: '1' /* the outbox as journeys wrote it */ } }).start();
    servers.push(s);
    const put = await putJourney(s, 'crash', JOURNEY);
    assert.equal(put.status, 200, put.text);

    // N contacts enter, each with its own event; two senders post batches side by side.
    const events = [];
    for (let i = 0; i < N; i++) {
      events.push({ type: 'track', userId: `crash-${i}`, event: 'Crash Go', messageId: `crash-go-${i}`, properties: { i } });
    }
    const batches = [];
    for (let i = 0; i < N; i += BATCH) batches.push(events.slice(i, i + BATCH));
    const t0 = Date.now();
    let next = 0;
    const sender = async () => {
      while (next < batches.length) await postBatch(s, batches[next++]);
    };
    await Promise.all([sender(), sender()]);
    // Acknowledged events are applied in order after their acknowledgement; an admin read
    // answers once every one of them is (each started its instance in the commit applying it).
    await s.get('/api/v1/journeys/crash/instances?limit=1');
    const ingestMs = Date.now() - t0;

    // Kill while they wait.
    await s.kill();
    const [instances, waitingAtW1, withTimer] = await row(
      s,
      "select count(*), sum(step = 'w1'), sum(wake_at is not null) from journey_instances where journey = 'crash'",
    );
    assert.equal(instances, N, 'every acknowledged event started an instance');
    assert.equal(withTimer, N, 'every instance waits with a durable timer');
    assert.ok(waitingAtW1 > 0, `instances still waiting at the kill (ingest took ${ingestMs} ms)`);
    const firedBeforeKill = await num(s, "select count(*) from messages where journey = 'crash'");

    // Back up: the waits resume. Kill again as soon as timers have started to fire.
    await s.start();
    const atSecondKill = await until('timers to start firing after the restart', async () => {
      const n = await num(s, "select count(*) from messages where journey = 'crash'");
      return [n > firedBeforeKill, n];
    }, { intervalMs: 20 });
    await s.kill();
    const afterSecondKill = await num(s, "select count(*) from messages where journey = 'crash'");
    assert.ok(afterSecondKill < 2 * N, `killed while timers were still to fire (${afterSecondKill} of ${2 * N} sent)`);

    // Up again; a client retrying every batch (same messageIds) starts nothing new.
    await s.start();
    for (const b of batches) await postBatch(s, b);
    await until('every instance to complete', async () => {
      const done = await num(s, "select count(*) from journey_instances where journey = 'crash' and status = 'completed'");
      return [done === N, done];
    }, { timeoutMs: 25_000 });

    // Nothing more may happen: give stray timers a moment, then read everything.
    await sleep(300);
    const q = (sql) => s.sql(sql);
    // Instances: one per contact, all completed, none active without a timer (anywhere).
    assert.deepEqual(
      await row(s, "select count(*), count(distinct contact_id), sum(status = 'completed') from journey_instances where journey = 'crash'"),
      [N, N, N],
    );
    assert.equal(await num(s, "select count(*) from journey_instances where status = 'active' and wake_at is null"), 0);
    assert.equal(await num(s, "select count(*) from journey_instances where status = 'active'"), 0);
    assert.equal(
      await num(s, "select count(*) from contacts c join journey_instances i on i.contact_id = c.id where c.user_id like 'crash-%' and i.status = 'completed'"),
      N,
      'every user id has its completed instance',
    );
    // Messages: exactly two per contact, one per send step; unique keys; all queued.
    assert.deepEqual(
      await row(s, "select count(*), count(distinct idempotency_key), count(distinct contact_id || ':' || step) from messages where journey = 'crash'"),
      [2 * N, 2 * N, 2 * N],
    );
    assert.equal(
      await num(s, "select count(*) from (select contact_id from messages where journey = 'crash' group by contact_id having count(*) = 2 and sum(step = 'm1') = 1 and sum(step = 'm2') = 1)"),
      N,
    );
    assert.deepEqual(await q("select status, count(*) from messages where journey = 'crash' group by status"), [`queued|${2 * N}`]);
    assert.deepEqual(
      await q("select template, count(*) from messages where journey = 'crash' group by template order by template"),
      [`crash-one|${N}`, `crash-two|${N}`],
    );
    // Each send came after its whole wait, also across the restarts.
    assert.equal(
      await num(s, `select count(*) from messages m join journey_instances i on i.id = m.instance_id where m.step = 'm1' and m.created_at < i.entered_at + ${FIRST_WAIT_MS}`),
      0,
    );
    assert.equal(
      await num(s, `select count(*) from messages a join messages b on a.instance_id = b.instance_id and a.step = 'm1' and b.step = 'm2' where b.created_at < a.created_at + ${SECOND_WAIT_MS}`),
      0,
    );
    // The step log: every step entered exactly once per instance.
    assert.equal(
      await num(s, "select count(*) from (select instance_id, step from journey_steps where journey = 'crash' and outcome = 'entered' group by 1, 2 having count(*) > 1)"),
      0,
      'no step entered twice',
    );
    assert.equal(await num(s, "select count(*) from journey_steps where journey = 'crash' and outcome = 'entered'"), 4 * N);
    // The events nudge wrote: entered and exited once per contact.
    const journeyEvents = Object.fromEntries(
      (await q("select name, count(*), count(distinct contact_id) from events where name like 'Journey %' group by name")).map((l) => {
        const [name, n, d] = l.split('|');
        return [name, [Number(n), Number(d)]];
      }),
    );
    assert.deepEqual(journeyEvents['Journey Entered'], [N, N]);
    assert.deepEqual(journeyEvents['Journey Exited'], [N, N]);
    assert.deepEqual(journeyEvents['Journey Step Completed'], [3 * N, N]);
    assert.equal(await num(s, "select count(*) from events where name = 'Crash Go'"), N, 'the retried batches were deduplicated');

    // The API agrees.
    const st = await s.get('/api/v1/journeys/crash/stats');
    for (const step of st.steps) {
      assert.equal(step.entered, N, `${step.step} entered`);
      assert.equal(step.completed, N, `${step.step} completed`);
      assert.equal(step.waiting, 0, `${step.step} waiting`);
    }
    const page = await s.get('/api/v1/messages?journey=crash&limit=1000');
    assert.equal(page.messages.length, 1000);
    assert.ok(page.next_cursor);
    const stop = await s.stop();
    assert.equal(stop.code, 0, `a clean stop: ${JSON.stringify(stop)}\n${s.log}`);
    console.log(`# ${N} contacts: ingest ${ingestMs} ms; ${firedBeforeKill} sent before the first kill, ${atSecondKill}..${afterSecondKill} at the second`);
  });

  test('a clean restart keeps journeys (also one PUT without an id), their status, and skips a send that came too late', async () => {
    const s = await new NudgeServer({ env: { NUDGE_DELIVERY_HOLD: '1' /* the outbox as journeys wrote it */ } }).start();
    servers.push(s);
    // The id comes from the path only.
    let r = await putJourney(s, 'no-id', 'trigger: { event: NoId }\nsteps:\n  - { id: w, wait: 1h }\n');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, 'no-id');
    r = await putJourney(s, 'held', 'id: held\ntrigger: { event: Held }\nsteps:\n  - { id: w, wait: 3s }\n  - { id: m, send: { channel: email, template: t } }\n');
    assert.equal(r.status, 200, r.text);
    r = await putJourney(s, 'late', 'id: late\ntrigger: { event: Late }\nmax_lateness: 2s\nsteps:\n  - { id: w, wait: 3s }\n  - { id: m, send: { channel: email, template: t } }\n  - { id: after, wait: 1s }\n  - { id: m2, send: { channel: email, template: t2 } }\n');
    assert.equal(r.status, 200, r.text);
    // Quiet hours around now for Tokyo (UTC+9, no daylight saving): a send there is deferred
    // until the top of the UTC hour after next, and must stay so across the restart.
    const now = Date.now();
    const localHour = (new Date(now).getUTCHours() + 9) % 24;
    const pad = (h) => String((h + 24) % 24).padStart(2, '0');
    const quiet = await request(`${s.url}/api/v1/policies`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${s.adminKey}`, 'Content-Type': 'application/yaml' },
      body: `quiet_hours:\n  email: { from: "${pad(localHour - 1)}:00", to: "${pad(localHour + 2)}:00" }\n`,
    });
    assert.equal(quiet.status, 200, quiet.text);
    const deferredUntil = new Date(Math.floor(now / 3600_000) * 3600_000 + 2 * 3600_000).toISOString();
    r = await putJourney(s, 'quiet', 'id: quiet\ntrigger: { event: Quiet }\nsteps:\n  - { id: m, send: { channel: email, template: t } }\n  - { id: m2, send: { channel: sms, template: t } }\n');
    assert.equal(r.status, 200, r.text);
    assert.equal((await s.send('/v1/identify', { userId: 'r4', traits: { timezone: 'Asia/Tokyo' } })).status, 200);
    for (const [user, event] of [['r1', 'NoId'], ['r2', 'Held'], ['r3', 'Late'], ['r4', 'Quiet']]) {
      const t = await s.send('/v1/track', { userId: user, event });
      assert.equal(t.status, 200, t.text);
    }
    assert.equal((await s.admin('POST', '/api/v1/journeys/held/pause')).status, 200);
    const stopped = await s.stop();
    assert.equal(stopped.code, 0);
    // Down for longer than the waits (3 s, which outlast the requests before the stop however
    // slow the machine): they are overdue at the start, late's send by 3 s or more.
    await sleep(6000);

    await s.start();
    const list = (await s.get('/api/v1/journeys')).journeys;
    assert.deepEqual(list.map((j) => [j.id, j.version, j.status]).sort(), [
      ['held', 1, 'paused'],
      ['late', 1, 'active'],
      ['no-id', 1, 'active'],
      ['quiet', 1, 'active'],
    ]);
    // The deferred message and its instance are as they were: one message, still deferred.
    const [q] = (await s.get('/api/v1/journeys/quiet/instances')).instances;
    assert.equal(q.status, 'active');
    assert.equal(q.step, 'm');
    assert.equal(q.wake_at, deferredUntil);
    const qm = (await s.get('/api/v1/messages?journey=quiet')).messages;
    assert.deepEqual(qm.map((m) => [m.step, m.status, m.send_at]), [['m', 'deferred_quiet_hours', deferredUntil]]);
    const noId = (await s.get('/api/v1/journeys/no-id/instances')).instances;
    assert.equal(noId.length, 1);
    assert.equal(noId[0].status, 'active');
    assert.equal(noId[0].step, 'w');

    // The overdue wait fired at the start; its send was 3 s late or more, past max_lateness
    // (2 s): skipped, recorded, and the journey went on (its next send on time).
    const late = await until('the late instance to complete', async () => {
      const [i] = (await s.get('/api/v1/journeys/late/instances')).instances;
      return [i?.status === 'completed', i];
    }, { timeoutMs: 8000 });
    assert.deepEqual(late.path.filter((p) => p.outcome === 'entered').map((p) => p.step), ['w', 'm', 'after', 'm2']);
    const msgs = (await s.get('/api/v1/messages?journey=late')).messages.reverse();
    assert.deepEqual(msgs.map((m) => [m.step, m.status]), [['m', 'skipped_late'], ['m2', 'queued']]);
    assert.ok(msgs[0].detail, 'a skipped message says why');
    const st = Object.fromEntries((await s.get('/api/v1/journeys/late/stats')).steps.map((x) => [x.step, x]));
    assert.equal(st.m.skipped, 1);
    assert.equal(st.m2.skipped, 0);

    // The paused journey still holds its contact; resumed, the overdue timer fires.
    await sleep(200);
    let [held] = (await s.get('/api/v1/journeys/held/instances')).instances;
    assert.equal(held.status, 'active');
    assert.equal(held.step, 'w');
    assert.equal((await s.admin('POST', '/api/v1/journeys/held/resume')).status, 200);
    held = await until('the held instance to complete', async () => {
      const [i] = (await s.get('/api/v1/journeys/held/instances')).instances;
      return [i?.status === 'completed', i];
    }, { timeoutMs: 5000 });
    const heldMsgs = (await s.get('/api/v1/messages?journey=held')).messages;
    assert.deepEqual(heldMsgs.map((m) => m.status), ['queued'], 'resumed late, but the pause is not lateness');
  });
});
