// Journeys end to end: real `nudge serve` processes on 127.0.0.1, journeys PUT through the admin
// API (YAML and JSON), events through the tracking API, results read back the way a user checks
// them (instances and their paths, the outbox of messages, per-step stats, the events nudge
// writes on the contact), plus the offline commands (validate, simulate, graph) and `apply`.
//
// nudge runs on the real clock here, so waits are seconds long (`wait: 2s`) and every wait for
// the server is a bounded poll. Each test works in its own workspace (journeys react to every
// event of their workspace), so tests cannot see each other's contacts or messages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { NudgeServer, request, runCli } from './lib/server.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = path.join(REPO, 'examples', 'demo');
const DEMO_JOURNEYS = ['abandoned-cart', 'integrations', 'pricing-follow-up', 'pricing-nurture', 'welcome'];

// The issue's example, exactly as tests/scenarios/pricing_follow_up.yaml and
// examples/demo/journeys/pricing-follow-up.yaml have it.
const PRICING = `id: pricing-follow-up
name: Pricing page follow-up
goal: Book a demo within 7 days of looking at pricing
trigger:
  event: Page Viewed
  where: properties.path == "/pricing"
entry: once_per 30d            # also: once, every_time
exit_when: event "Demo Booked" # a goal: counted as a conversion
steps:
  - id: pause
    wait: 30s
  - id: case-study
    send: { channel: email, template: pricing-case-study }
  - id: clicked
    wait_for: { event: Email Link Clicked, where: properties.step == "case-study", timeout: 2d }
    on_event: offer-call
    on_timeout: reminder
  - id: reminder
    send: { channel: email, template: pricing-reminder }
    next: end
  - id: offer-call
    branch:
      - when: traits.employees >= 50
        next: sales-alert
      - else: end
  - id: sales-alert
    webhook: { url: "http://127.0.0.1:9000/crm", body: '{"user": "{{ contact.user_id }}"}' }
`;
const PRICING_FAST = PRICING.replace('wait: 30s', 'wait: 2s');

// ---- helpers -----------------------------------------------------------------------------------

// PUTs a journey: a string is sent as YAML, an object as JSON. `source` sets X-Nudge-Source.
function putJourney(s, id, body, { source } = {}) {
  const json = typeof body !== 'string';
  const headers = {
    Authorization: `Bearer ${s.adminKey}`,
    'Content-Type': json ? 'application/json' : 'application/yaml',
  };
  if (source) headers['X-Nudge-Source'] = source;
  return request(`${s.url}/api/v1/journeys/${encodeURIComponent(id)}`, {
    method: 'PUT',
    headers,
    body: json ? JSON.stringify(body) : body,
  });
}

async function okJourney(s, id, body, opts) {
  const r = await putJourney(s, id, body, opts);
  assert.equal(r.status, 200, `PUT journey ${id}: ${r.status} ${r.text}`);
  return r.json;
}

function putPolicies(s, text) {
  return request(`${s.url}/api/v1/policies`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${s.adminKey}`, 'Content-Type': 'application/yaml' },
    body: text,
  });
}

// Polls `fn` until it returns something truthy; bounded. An array [done, value] is read as such.
async function until(what, fn, { timeoutMs = 8000, intervalMs = 40 } = {}) {
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

async function ok(promise, what) {
  const r = await promise;
  assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
  return r;
}

function page(s, userId, pagePath) {
  return ok(s.send('/v1/page', { userId, name: pagePath, properties: { path: pagePath } }), `page ${pagePath}`);
}

function track(s, userId, event, properties = {}) {
  return ok(s.send('/v1/track', { userId, event, properties }), `track ${event}`);
}

function identify(s, userId, traits) {
  return ok(s.send('/v1/identify', { userId, traits }), 'identify');
}

async function instances(s, journey, contact) {
  const q = contact ? `?contact=${encodeURIComponent(contact)}` : '';
  return (await s.get(`/api/v1/journeys/${encodeURIComponent(journey)}/instances${q}`)).instances;
}

async function instanceOf(s, journey, contact) {
  const list = await instances(s, journey, contact);
  assert.equal(list.length, 1, `one instance of ${journey} for ${contact}: ${JSON.stringify(list)}`);
  return list[0];
}

// The steps an instance went through, in order.
function stepsOf(inst) {
  return inst.path.filter((p) => p.outcome === 'entered').map((p) => p.step);
}

async function messages(s, query = {}) {
  const qs = new URLSearchParams(query).toString();
  return s.get(`/api/v1/messages${qs ? `?${qs}` : ''}`);
}

async function messagesOf(s, query) {
  return (await messages(s, { limit: 1000, ...query })).messages;
}

async function stats(s, journey) {
  const out = {};
  for (const st of (await s.get(`/api/v1/journeys/${encodeURIComponent(journey)}/stats`)).steps) out[st.step] = st;
  return out;
}

// Events nudge wrote on the contact (Journey Entered, ...), oldest first.
async function journeyEvents(s, key, name) {
  const r = await s.get(`/api/v1/contacts/${encodeURIComponent(key)}/events?limit=1000&origin=nudge`);
  return r.events.filter((e) => (!name || e.event === name) && e.event?.startsWith('Journey')).reverse();
}

function ms(iso) {
  const t = Date.parse(iso);
  assert.ok(Number.isFinite(t), `a timestamp: ${iso}`);
  return t;
}

function cliArgs(s) {
  return ['--server', s.url, '--key', s.adminKey];
}

function copyDir(from, to) {
  fs.cpSync(from, to, { recursive: true });
}

// ---- one server; each test in its own workspace ------------------------------------------------

let server;
before(async () => {
  server = await new NudgeServer({ env: { NUDGE_DELIVERY_HOLD: '1' /* the outbox as journeys wrote it */ } }).start();
});
after(async () => {
  await server?.dispose();
});

describe('the pricing follow-up from the issue', () => {
  test('as written: a pricing view starts a 30 s wait; a demo booked during it converts', async () => {
    const ws = await server.createWorkspace();
    const put = await okJourney(ws, 'pricing-follow-up', PRICING, { source: 'journeys/pricing-follow-up.yaml' });
    assert.equal(put.id, 'pricing-follow-up');
    assert.equal(put.name, 'Pricing page follow-up');
    assert.equal(put.goal, 'Book a demo within 7 days of looking at pricing');
    assert.equal(put.version, 1);
    assert.equal(put.status, 'active');
    assert.deepEqual(put.trigger, { event: 'Page Viewed' });
    assert.deepEqual(put.steps, [
      { id: 'pause', kind: 'wait' },
      { id: 'case-study', kind: 'send' },
      { id: 'clicked', kind: 'wait_for' },
      { id: 'reminder', kind: 'send' },
      { id: 'offer-call', kind: 'branch' },
      { id: 'sales-alert', kind: 'webhook' },
    ]);
    assert.equal(put.source, PRICING);
    assert.ok(Number.isFinite(ms(put.updated_at)));

    await identify(ws, 'ann', { employees: 120 });
    await page(ws, 'ann', '/docs'); // not pricing: no entry
    assert.deepEqual(await instances(ws, 'pricing-follow-up'), []);

    const t0 = Date.now();
    await page(ws, 'ann', '/pricing');
    // The view is acknowledged, then applied: the instance starts when it is applied, which may
    // be after the answer (a busy machine), and before the read below answers (reads wait for
    // what was acknowledged).
    let inst = await instanceOf(ws, 'pricing-follow-up', 'ann');
    const t1 = Date.now();
    assert.equal(inst.status, 'active');
    assert.equal(inst.step, 'pause');
    assert.equal(inst.version, 1);
    const entered = ms(inst.entered_at);
    assert.ok(entered >= t0 - 5 && entered <= t1 + 5, `entered with the view: ${inst.entered_at} (${t0}..${t1})`);
    assert.equal(ms(inst.wake_at), entered + 30_000, `wake_at 30 s after the view: ${inst.wake_at}, entered ${inst.entered_at}`);
    assert.deepEqual(stepsOf(inst), ['pause']);
    assert.deepEqual(await messagesOf(ws, { contact: 'ann' }), []);

    // Another contact stays waiting: the stats count her there.
    await page(ws, 'dan', '/pricing');
    let st = await stats(ws, 'pricing-follow-up');
    assert.equal(st.pause.entered, 2);
    assert.equal(st.pause.waiting, 2);

    // Looking at pricing again inside 30 days starts nothing new.
    await page(ws, 'ann', '/pricing');
    assert.equal((await instances(ws, 'pricing-follow-up', 'ann')).length, 1);

    // Demo Booked is the goal: the instance ends, converted, before any email.
    await track(ws, 'ann', 'Demo Booked');
    inst = await instanceOf(ws, 'pricing-follow-up', 'ann');
    assert.equal(inst.status, 'converted');
    assert.equal(inst.wake_at, null);
    assert.deepEqual(stepsOf(inst), ['pause']);
    assert.deepEqual(await messagesOf(ws, { contact: 'ann' }), []);
    const exited = await journeyEvents(ws, 'ann', 'Journey Exited');
    assert.equal(exited.length, 1, JSON.stringify(exited));
    assert.equal(exited[0].properties.journey, 'pricing-follow-up');
    assert.equal(exited[0].properties.converted, true);
    assert.equal(exited[0].properties.reason, 'goal');
    assert.equal(exited[0].properties.step, 'pause');
    assert.deepEqual(
      (await journeyEvents(ws, 'ann')).map((e) => e.event),
      ['Journey Entered', 'Journey Exited'],
    );

    st = await stats(ws, 'pricing-follow-up');
    assert.deepEqual(
      { entered: st.pause.entered, waiting: st.pause.waiting, converted: st.pause.converted },
      { entered: 2, waiting: 1, converted: 1 },
    );
    // GET of the journey carries the same stats.
    const got = await ws.get('/api/v1/journeys/pricing-follow-up');
    assert.equal(got.source, PRICING);
    assert.deepEqual(got.stats.map((x) => x.step), ['pause', 'case-study', 'clicked', 'reminder', 'offer-call', 'sales-alert']);
    assert.equal(got.stats[0].converted, 1);
    for (const key of ['step', 'kind', 'entered', 'waiting', 'completed', 'exited', 'converted', 'skipped']) {
      assert.ok(key in got.stats[0], `stats have ${key}`);
    }
  });

  test('with wait: 2s: the email comes 2 s after the view, a click routes to the webhook, Demo Booked converts', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'pricing-follow-up', PRICING_FAST);
    await identify(ws, 'ann', { employees: 120 });
    await identify(ws, 'bo', { employees: 8 });

    const t0 = Date.now();
    await page(ws, 'ann', '/pricing');
    await page(ws, 'bo', '/pricing');
    const t1 = Date.now();
    assert.deepEqual(await messagesOf(ws, { journey: 'pricing-follow-up' }), [], 'nothing before 2 s');

    const mails = await until('the two case-study emails', async () => {
      const m = await messagesOf(ws, { journey: 'pricing-follow-up' });
      return [m.length >= 2, m];
    });
    const seenAt = Date.now();
    assert.ok(seenAt >= t0 + 2000, `not before 2 s (${seenAt - t0} ms)`);
    assert.equal(mails.length, 2);
    const annInst = await instanceOf(ws, 'pricing-follow-up', 'ann');
    const boInst = await instanceOf(ws, 'pricing-follow-up', 'bo');
    for (const [m, inst] of [
      [mails.find((x) => x.instance_id === annInst.id), annInst],
      [mails.find((x) => x.instance_id === boInst.id), boInst],
    ]) {
      assert.ok(m, `a message for instance ${inst.id}: ${JSON.stringify(mails)}`);
      assert.equal(m.contact_id, inst.contact_id);
      assert.equal(m.journey, 'pricing-follow-up');
      assert.equal(m.version, 1);
      assert.equal(m.step, 'case-study');
      assert.equal(m.channel, 'email');
      assert.equal(m.template, 'pricing-case-study');
      assert.equal(m.status, 'queued');
      assert.equal(typeof m.idempotency_key, 'string');
      assert.ok(m.idempotency_key.length > 0);
      const created = ms(m.created_at);
      assert.ok(created >= t0 + 2000 - 5, `created 2 s after the view: ${m.created_at} vs ${new Date(t0).toISOString()}`);
      assert.ok(created <= t1 + 2000 + 2500, `and not much later: ${m.created_at} vs ${new Date(t1).toISOString()}`);
      assert.equal(ms(m.send_at), created);
      // The instance moved on to wait for the click.
      const now = await instanceOf(ws, 'pricing-follow-up', inst.contact_id === annInst.contact_id ? 'ann' : 'bo');
      assert.equal(now.step, 'clicked');
      assert.equal(now.status, 'active');
      assert.ok(ms(now.wake_at) >= created + 2 * 86400_000 - 5, `the 2d timeout: ${now.wake_at}`);
    }
    assert.notEqual(mails[0].idempotency_key, mails[1].idempotency_key);

    // A click on another message does not count; a click on the case study does.
    await track(ws, 'ann', 'Email Link Clicked', { step: 'newsletter' });
    assert.equal((await instanceOf(ws, 'pricing-follow-up', 'ann')).step, 'clicked');
    await track(ws, 'ann', 'Email Link Clicked', { step: 'case-study' });
    const ann = await instanceOf(ws, 'pricing-follow-up', 'ann');
    assert.equal(ann.status, 'completed');
    assert.equal(ann.step, null);
    assert.deepEqual(stepsOf(ann), ['pause', 'case-study', 'clicked', 'offer-call', 'sales-alert']);
    const hooks = await messagesOf(ws, { contact: 'ann', journey: 'pricing-follow-up' });
    const hook = hooks.find((m) => m.channel === 'webhook');
    assert.ok(hook, `a webhook message for ann: ${JSON.stringify(hooks)}`);
    assert.equal(hook.step, 'sales-alert');
    assert.equal(hook.status, 'queued');
    assert.equal(hook.template, null);
    assert.equal(hook.instance_id, ann.id);
    assert.equal(hook.payload.url, 'http://127.0.0.1:9000/crm');
    assert.equal(hook.payload.method, 'POST');
    assert.equal(hook.payload.body, '{"user": "{{ contact.user_id }}"}');

    // Bo has 8 employees: the branch ends the journey without the webhook.
    await track(ws, 'bo', 'Email Link Clicked', { step: 'case-study' });
    const bo = await instanceOf(ws, 'pricing-follow-up', 'bo');
    assert.equal(bo.status, 'completed');
    assert.deepEqual(stepsOf(bo), ['pause', 'case-study', 'clicked', 'offer-call']);
    assert.deepEqual((await messagesOf(ws, { contact: 'bo' })).map((m) => m.step), ['case-study']);

    // Cy books a demo inside the 2 s: converted, no email, ever.
    await page(ws, 'cy', '/pricing');
    await track(ws, 'cy', 'Demo Booked');
    const cy = await instanceOf(ws, 'pricing-follow-up', 'cy');
    assert.equal(cy.status, 'converted');
    assert.deepEqual(stepsOf(cy), ['pause']);
    await sleep(2300);
    assert.deepEqual(await messagesOf(ws, { contact: 'cy' }), []);
    const cyExit = await journeyEvents(ws, 'cy', 'Journey Exited');
    assert.equal(cyExit.length, 1);
    assert.equal(cyExit[0].properties.converted, true);

    // Ann's events: entered, four steps completed, exited (completed, not converted).
    const annEvents = await journeyEvents(ws, 'ann');
    assert.deepEqual(annEvents.map((e) => e.event), [
      'Journey Entered',
      'Journey Step Completed',
      'Journey Step Completed',
      'Journey Step Completed',
      'Journey Step Completed',
      'Journey Exited',
    ]);
    assert.deepEqual(
      annEvents.filter((e) => e.event === 'Journey Step Completed').map((e) => e.properties.step),
      ['pause', 'case-study', 'clicked', 'offer-call'],
    );
    assert.equal(annEvents.at(-1).properties.converted, false);
    assert.equal(annEvents.at(-1).properties.reason, 'completed');

    const st = await stats(ws, 'pricing-follow-up');
    const pick = (x) => ({ entered: x.entered, waiting: x.waiting, completed: x.completed, converted: x.converted });
    assert.deepEqual(pick(st.pause), { entered: 3, waiting: 0, completed: 2, converted: 1 });
    assert.deepEqual(pick(st['case-study']), { entered: 2, waiting: 0, completed: 2, converted: 0 });
    assert.deepEqual(pick(st.clicked), { entered: 2, waiting: 0, completed: 2, converted: 0 });
    assert.equal(st.reminder.entered, 0);
    assert.equal(st['offer-call'].entered, 2);
    assert.equal(st['sales-alert'].entered, 1);
  });
});

describe('definitions', () => {
  test('a broken step graph is refused with 400, naming every problem with its position', async () => {
    const ws = await server.createWorkspace();
    const text = [
      'id: broken', //                                   1
      'trigger: { event: Go }', //                       2
      'steps:', //                                       3
      '  - id: start', //                                4
      '    branch:', //                                  5
      '      - when: traits.vip == true', //             6
      '        next: nowhere', //                        7
      '      - else: loop-a', //                         8
      '  - id: loop-a', //                               9
      '    update: { set: { seen: true } }', //          10
      '  - id: loop-b', //                               11
      '    send: { channel: email, template: t }', //    12
      '    next: loop-a', //                             13
      '  - id: orphan', //                               14
      '    send: { channel: email, template: t }', //    15
      '    next: end', //                                16
      '',
    ].join('\n');
    const r = await putJourney(ws, 'broken', text, { source: 'journeys/broken.yaml' });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.source, 'journeys/broken.yaml');
    assert.equal(typeof r.json.line, 'number');
    assert.equal(typeof r.json.column, 'number');
    const msg = r.json.error;
    assert.match(msg, /no step 'nowhere'/);
    assert.match(msg, /journeys\/broken\.yaml:7:15: next: no step 'nowhere' in this journey/, msg);
    assert.match(msg, /journeys\/broken\.yaml:14:5: step 'orphan' can never be reached/, msg);
    assert.match(msg, /journeys\/broken\.yaml:9:5: the loop loop-a -> loop-b -> loop-a never waits/, msg);
    assert.deepEqual([r.json.line, r.json.column], [7, 15]);
    // The first problem's position is the response's line and column.
    assert.ok(msg.startsWith(`journeys/broken.yaml:${r.json.line}:${r.json.column}: `), msg);
    // Nothing was stored.
    assert.equal((await ws.admin('GET', '/api/v1/journeys/broken')).status, 404);
    assert.deepEqual((await ws.get('/api/v1/journeys')).journeys, []);

    // Without X-Nudge-Source the body is called something; positions are still given.
    const unnamed = await putJourney(ws, 'broken', text);
    assert.equal(unnamed.status, 400);
    assert.equal(unnamed.json.line, r.json.line);
    assert.equal(unnamed.json.column, r.json.column);

    // The same graph with a wait in the loop, the target fixed and the orphan gone is fine.
    const fixed = text
      .replace('next: nowhere', 'next: end')
      .replace('update: { set: { seen: true } }', 'wait: 1h')
      .split('\n')
      .slice(0, 13)
      .join('\n');
    const good = await putJourney(ws, 'broken', `${fixed}\n`);
    assert.equal(good.status, 200, good.text);
    // Template t does not exist (yet): stored, with a warning naming it.
    assert.deepEqual(good.json.warnings?.length, 1, good.text);
    assert.match(good.json.warnings[0], /template 't' does not exist yet/);
    const t = await ws.admin('PUT', '/api/v1/templates/t', { body: { channel: 'email', subject: 'Hi', html: '<p>Hi</p>' } });
    assert.equal(t.status, 200, t.text);
    const again = await putJourney(ws, 'broken', `${fixed}\n# with its template\n`);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.warnings, undefined, again.text);
  });

  test('unknown segments, bad conditions, unknown keys and a wrong id are refused with positions', async () => {
    const ws = await server.createWorkspace();
    let r = await putJourney(ws, 'seg', 'id: seg\ntrigger: { segment_entered: no-such-segment }\nsteps:\n  - { id: a, wait: 1d }\n', {
      source: 'journeys/seg.yaml',
    });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /no segment 'no-such-segment'/);
    assert.match(r.json.error, /^journeys\/seg\.yaml:\d+:\d+: /);
    assert.equal(r.json.source, 'journeys/seg.yaml');

    r = await putJourney(ws, 'aud', 'id: aud\ntrigger: { event: Go }\naudience: in segment "ghost"\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /no segment 'ghost'/);

    // Once the segment exists, the same journey is accepted.
    const seg = await request(`${ws.url}/api/v1/segments/ghost`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${ws.adminKey}`, 'Content-Type': 'application/yaml' },
      body: 'id: ghost\ncondition: traits.ghost == true\n',
    });
    assert.equal(seg.status, 200, seg.text);
    r = await putJourney(ws, 'aud', 'id: aud\ntrigger: { event: Go }\naudience: in segment "ghost"\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.equal(r.status, 200, r.text);

    // While a journey that is not archived uses it, the segment cannot be deleted.
    const del = () =>
      request(`${ws.url}/api/v1/segments/ghost`, { method: 'DELETE', headers: { Authorization: `Bearer ${ws.adminKey}` } });
    r = await del();
    assert.equal(r.status, 409, r.text);
    assert.match(r.json.error, /journey 'aud' uses segment 'ghost'/);
    r = await request(`${ws.url}/api/v1/journeys/aud/archive`, { method: 'POST', headers: { Authorization: `Bearer ${ws.adminKey}` } });
    assert.equal(r.status, 200, r.text);
    r = await del();
    assert.equal(r.status, 200, r.text);

    // A condition that does not parse: its line and a column inside it.
    r = await putJourney(ws, 'cond', 'id: cond\ntrigger:\n  event: Go\n  where: properties.path ==\nsteps:\n  - { id: a, wait: 1d }\n', {
      source: 'journeys/cond.yaml',
    });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.line, 4, r.text);
    assert.ok(r.json.column >= 10, r.text);

    // An unknown key and a wrong step kind.
    r = await putJourney(ws, 'keys', 'id: keys\ntrigger: { event: Go }\nsteps:\n  - { id: a, wait: 1d }\nretries: 3\n');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.line, 5, r.text);
    r = await putJourney(ws, 'kind', 'id: kind\ntrigger: { event: Go }\nsteps:\n  - id: a\n    teleport: somewhere\n');
    assert.equal(r.status, 400, r.text);
    assert.ok(r.json.line >= 4, r.text);

    // The id in the body must be the id in the path.
    r = await putJourney(ws, 'other', 'id: mine\ntrigger: { event: Go }\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /'mine' differs from 'other'/);
    assert.equal(r.json.line, 1);

    // Not YAML at all.
    r = await putJourney(ws, 'junk', 'id: [unclosed\n');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.success, false);

    // Only the segment-backed one was stored.
    assert.deepEqual((await ws.get('/api/v1/journeys')).journeys.map((j) => j.id), ['aud']);
  });

  test('versions: the same body keeps its version, a changed one makes version 2, running contacts stay on 1', async () => {
    const ws = await server.createWorkspace();
    const v1 = [
      'id: drip',
      'trigger: { event: Joined }',
      'entry: once',
      'steps:',
      '  - { id: first, send: { channel: email, template: v1-first } }',
      '  - { id: wait, wait: 1h }',
      '  - { id: second, send: { channel: email, template: v1-second } }',
      '',
    ].join('\n');
    const v2 = v1.replaceAll('v1-', 'v2-').replace('wait: 1h', 'wait: 2h');
    let j = await okJourney(ws, 'drip', v1);
    assert.equal(j.version, 1);
    const firstUpdate = j.updated_at;
    j = await okJourney(ws, 'drip', v1); // the same again
    assert.equal(j.version, 1);
    assert.equal(j.updated_at, firstUpdate);

    await track(ws, 'old', 'Joined');
    j = await okJourney(ws, 'drip', v2);
    assert.equal(j.version, 2);
    assert.equal(j.source, v2);
    j = await okJourney(ws, 'drip', v2);
    assert.equal(j.version, 2, 're-PUT of version 2 keeps 2');
    await track(ws, 'new', 'Joined');

    const old = await instanceOf(ws, 'drip', 'old');
    const nu = await instanceOf(ws, 'drip', 'new');
    assert.equal(old.version, 1);
    assert.equal(nu.version, 2);
    assert.equal(old.step, 'wait');
    assert.equal(nu.step, 'wait');
    // Each waits as long as its own version says.
    const oldWait = ms(old.wake_at) - ms(old.entered_at);
    const newWait = ms(nu.wake_at) - ms(nu.entered_at);
    assert.ok(Math.abs(oldWait - 3600_000) < 1000, `v1 waits 1h: ${oldWait}`);
    assert.ok(Math.abs(newWait - 7200_000) < 1000, `v2 waits 2h: ${newWait}`);
    const sent = await messagesOf(ws, { journey: 'drip' });
    const byContact = Object.fromEntries(sent.map((m) => [m.contact_id, m]));
    assert.equal(byContact[old.contact_id].template, 'v1-first');
    assert.equal(byContact[old.contact_id].version, 1);
    assert.equal(byContact[nu.contact_id].template, 'v2-first');
    assert.equal(byContact[nu.contact_id].version, 2);

    // The journey shows its current version; the list too.
    const got = await ws.get('/api/v1/journeys/drip');
    assert.equal(got.version, 2);
    assert.equal(got.source, v2);
    const listed = (await ws.get('/api/v1/journeys')).journeys;
    assert.deepEqual(listed.map((x) => [x.id, x.version, x.status]), [['drip', 2, 'active']]);
    assert.ok(!('source' in listed[0]), 'the list leaves the sources out');

    // A JSON body is a journey too (and another change: version 3).
    const asJson = {
      id: 'drip',
      trigger: { event: 'Joined' },
      entry: 'once',
      steps: [{ id: 'first', send: { channel: 'email', template: 'v3-first' } }],
    };
    j = await okJourney(ws, 'drip', asJson);
    assert.equal(j.version, 3);
    assert.deepEqual(j.steps, [{ id: 'first', kind: 'send' }]);
    // The old instances still answer with their versions.
    assert.equal((await instanceOf(ws, 'drip', 'old')).version, 1);
    assert.equal((await instanceOf(ws, 'drip', 'new')).version, 2);
  });
});

describe('running journeys', () => {
  test('pause holds instances and lets no one in, resume lets due timers fire, archive ends them', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'hold', [
      'id: hold',
      'trigger: { event: Go }',
      'entry: every_time',
      'steps:',
      // Long enough that the pause below comes first however slow the machine.
      '  - { id: wait, wait: 3s }',
      '  - { id: mail, send: { channel: email, template: t } }',
      '',
    ].join('\n'));
    await track(ws, 'p1', 'Go');
    let r = await ws.admin('POST', '/api/v1/journeys/hold/pause');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'paused');
    assert.equal(r.json.id, 'hold');
    assert.ok(Array.isArray(r.json.stats));
    await track(ws, 'p2', 'Go'); // nobody enters a paused journey
    let p1 = await instanceOf(ws, 'hold', 'p1');
    assert.equal(p1.step, 'wait', 'paused before its wait was over');
    // Past the time its wait was due, it is still held there.
    await sleep(Math.max(0, Date.parse(p1.wake_at) - Date.now()) + 500);
    assert.deepEqual(await instances(ws, 'hold', 'p2'), []);
    p1 = await instanceOf(ws, 'hold', 'p1');
    assert.equal(p1.status, 'active');
    assert.equal(p1.step, 'wait', 'held at its wait');
    assert.deepEqual(await messagesOf(ws, { journey: 'hold' }), []);
    assert.equal((await ws.get('/api/v1/journeys/hold')).status, 'paused');
    assert.equal((await ws.get('/api/v1/journeys')).journeys[0].status, 'paused');
    // Pausing twice is fine.
    assert.equal((await ws.admin('POST', '/api/v1/journeys/hold/pause')).status, 200);

    r = await ws.admin('POST', '/api/v1/journeys/hold/resume');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'active');
    p1 = await until('p1 to complete after the resume', async () => {
      const i = await instanceOf(ws, 'hold', 'p1');
      return [i.status === 'completed', i];
    });
    assert.deepEqual(stepsOf(p1), ['wait', 'mail']);
    assert.equal((await messagesOf(ws, { journey: 'hold', contact: 'p1' })).length, 1);

    await track(ws, 'p3', 'Go');
    r = await ws.admin('POST', '/api/v1/journeys/hold/archive');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, 'archived');
    const p3 = await instanceOf(ws, 'hold', 'p3');
    assert.equal(p3.status, 'exited');
    assert.equal(p3.wake_at, null);
    const exit = await journeyEvents(ws, 'p3', 'Journey Exited');
    assert.equal(exit.length, 1);
    assert.equal(exit[0].properties.reason, 'archived');
    assert.equal(exit[0].properties.converted, false);
    await track(ws, 'p4', 'Go');
    await sleep(1200);
    assert.deepEqual(await instances(ws, 'hold', 'p4'), []);
    assert.deepEqual(await messagesOf(ws, { contact: 'p3' }), []);
    assert.equal((await ws.get('/api/v1/journeys/hold')).status, 'archived');

    // Unknown journeys: 404.
    for (const action of ['pause', 'resume', 'archive']) {
      r = await ws.admin('POST', `/api/v1/journeys/nope/${action}`);
      assert.equal(r.status, 404, `${action}: ${r.text}`);
    }
    assert.equal((await ws.admin('GET', '/api/v1/journeys/nope')).status, 404);
    assert.equal((await ws.admin('GET', '/api/v1/journeys/nope/stats')).status, 404);
    assert.equal((await ws.admin('GET', '/api/v1/journeys/nope/instances')).status, 404);
    // And without the admin key: 401.
    r = await request(`${ws.url}/api/v1/journeys/hold/pause`, { method: 'POST' });
    assert.equal(r.status, 401);
    r = await request(`${ws.url}/api/v1/journeys`, { headers: { Authorization: `Bearer ${ws.writeKey}` } });
    assert.equal(r.status, 401);
  });

  test('max_active bounds how many times at once one contact runs an every_time journey', async () => {
    const ws = await server.createWorkspace();
    const capped = async () =>
      Number(/^nudge_journey_entries_capped_total (\S+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? 0);
    const before = await capped();
    await okJourney(ws, 'orders', [
      'id: orders',
      'trigger: { event: Order Placed }',
      'entry: every_time',
      'max_active: 3',
      'steps:',
      '  - { id: later, wait: 1d }',
      '',
    ].join('\n'));
    await okJourney(ws, 'views', 'id: views\ntrigger: { event: Viewed }\nentry: every_time\nsteps:\n  - { id: later, wait: 1d }\n');
    for (let i = 0; i < 5; ++i) {
      await track(ws, 'buyer', 'Order Placed', { n: i });
      await track(ws, 'buyer', 'Viewed', { n: i });
    }
    const running = await instances(ws, 'orders', 'buyer');
    assert.equal(running.length, 3, JSON.stringify(running));
    assert.ok(running.every((i) => i.status === 'active'));
    assert.equal((await instances(ws, 'views', 'buyer')).length, 5, 'the default (100) lets five in');
    assert.equal((await capped()) - before, 2);
    // Another contact has a count of its own.
    await track(ws, 'other', 'Order Placed');
    assert.equal((await instances(ws, 'orders', 'other')).length, 1);

    // Refused where it means nothing, or out of range, with its place.
    let r = await putJourney(ws, 'once', 'id: once\ntrigger: { event: X }\nmax_active: 2\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /:3:13: max_active: only entry: every_time/);
    r = await putJourney(ws, 'zero', 'id: zero\ntrigger: { event: X }\nentry: every_time\nmax_active: 0\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /:4:13: max_active: expected a whole number from 1 to 10000, got '0'/);
  });

  test('trigger through the API: api journeys only, with data, for known contacts', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'manual', [
      'id: manual',
      'trigger: { api: true }',
      'entry: every_time',
      'steps:',
      '  - id: check',
      '    branch:',
      '      - when: properties.reason == "upgrade"',
      '        next: upgrade',
      '      - else: note',
      '  - { id: note, send: { channel: email, template: note }, next: end }',
      '  - { id: upgrade, send: { channel: email, template: upgrade } }',
      '',
    ].join('\n'));
    await okJourney(ws, 'on-event', 'id: on-event\ntrigger: { event: Go }\nsteps:\n  - { id: a, wait: 1d }\n');
    assert.deepEqual((await ws.get('/api/v1/journeys/manual')).trigger, { api: true });
    await identify(ws, 'tia', { plan: 'pro' });

    let r = await ws.admin('POST', '/api/v1/journeys/manual/trigger', { body: { user_id: 'tia', data: { reason: 'upgrade' } } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.entered, true);
    assert.equal(typeof r.json.instance_id, 'number');
    let inst = await instances(ws, 'manual', 'tia');
    assert.equal(inst.length, 1);
    assert.equal(inst[0].id, r.json.instance_id);
    assert.equal(inst[0].status, 'completed');
    assert.deepEqual(stepsOf(inst[0]), ['check', 'upgrade']);

    r = await ws.admin('POST', '/api/v1/journeys/manual/trigger', { body: { user_id: 'tia' } });
    assert.equal(r.status, 200, r.text);
    inst = await instances(ws, 'manual', 'tia');
    assert.equal(inst.length, 2);
    assert.deepEqual(stepsOf(inst[0]), ['check', 'note']);
    assert.deepEqual(
      (await messagesOf(ws, { contact: 'tia' })).map((m) => m.template).sort(),
      ['note', 'upgrade'],
    );

    // Entry rules apply to API triggers too: `once` lets the contact in once.
    await okJourney(ws, 'once', 'id: once\ntrigger: { api: true }\nentry: once\nsteps:\n  - { id: w, wait: 1h }\n');
    r = await ws.admin('POST', '/api/v1/journeys/once/trigger', { body: { user_id: 'tia' } });
    assert.deepEqual([r.status, r.json.entered], [200, true], r.text);
    r = await ws.admin('POST', '/api/v1/journeys/once/trigger', { body: { user_id: 'tia' } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { entered: false, instance_id: null });
    assert.equal((await instances(ws, 'once', 'tia')).length, 1);
    // Instances page: limit, and a cursor that walks every instance once, newest first.
    assert.equal((await ws.get('/api/v1/journeys/manual/instances?limit=1')).instances.length, 1);
    const all = (await ws.get('/api/v1/journeys/manual/instances?limit=1000')).instances.map((i) => i.id);
    assert.ok(all.length >= 2, `${all.length} instances`);
    const paged = [];
    let cursor = '';
    for (let page = 0; page < 100; ++page) {
      const body = await ws.get(`/api/v1/journeys/manual/instances?limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      paged.push(...body.instances.map((i) => i.id));
      if (!body.next_cursor) break;
      cursor = body.next_cursor;
    }
    assert.deepEqual(paged, all);
    assert.equal((await ws.admin('GET', '/api/v1/journeys/manual/instances?cursor=xyz')).status, 400);
    assert.equal((await ws.admin('GET', '/api/v1/journeys/manual/instances?limit=0')).status, 400);
    assert.equal((await ws.admin('GET', '/api/v1/journeys/manual/instances?contact=nobody')).status, 404);

    // A journey with another trigger: 409, and nobody enters.
    r = await ws.admin('POST', '/api/v1/journeys/on-event/trigger', { body: { user_id: 'tia' } });
    assert.equal(r.status, 409, r.text);
    assert.match(r.json.error, /not triggered by the API/);
    assert.deepEqual(await instances(ws, 'on-event'), []);
    // Bad requests.
    for (const body of [{}, { user_id: 7 }, { user_id: 'tia', data: 'x' }, { user_id: 'tia', data: [1] }]) {
      r = await ws.admin('POST', '/api/v1/journeys/manual/trigger', { body });
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.status} ${r.text}`);
    }
    r = await request(`${ws.url}/api/v1/journeys/manual/trigger`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${ws.adminKey}`, 'Content-Type': 'application/json' },
      body: 'not json',
    });
    assert.equal(r.status, 400, r.text);
    r = await ws.admin('POST', '/api/v1/journeys/manual/trigger', { body: { user_id: 'nobody-here' } });
    assert.equal(r.status, 404, r.text);
    r = await ws.admin('POST', '/api/v1/journeys/missing/trigger', { body: { user_id: 'tia' } });
    assert.equal(r.status, 404, r.text);
    // A paused api journey takes no one.
    assert.equal((await ws.admin('POST', '/api/v1/journeys/manual/pause')).status, 200);
    r = await ws.admin('POST', '/api/v1/journeys/manual/trigger', { body: { user_id: 'tia' } });
    assert.equal(r.status, 409, r.text);
    assert.equal((await instances(ws, 'manual', 'tia')).length, 2);
  });

  test('step types in real time: wait_for a condition (both exits), split, update, exit; test groups', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'steps', [
      'id: steps',
      'trigger: { event: Start }',
      'entry: every_time',
      'steps:',
      '  - id: act',
      "    wait_for: { condition: 'traits.activated == true', timeout: 2s }",
      '    on_event: ab',
      '    on_timeout: nudge',
      '  - id: nudge',
      '    update: { set: { nudged: true }, tags: { add: [slow] } }',
      '    next: stop',
      '  - id: ab',
      '    split:',
      '      experiment: tone',
      '      variants:',
      '        - { name: friendly, weight: 50, next: friendly }',
      '        - { name: formal, weight: 50, next: formal }',
      '  - { id: friendly, send: { channel: email, template: friendly }, next: end }',
      '  - { id: formal, send: { channel: email, template: formal }, next: end }',
      '  - { id: stop, exit: true }',
      '',
    ].join('\n'));
    await track(ws, 'fast', 'Start');
    await track(ws, 'slow', 'Start');
    let fast = await instanceOf(ws, 'steps', 'fast');
    assert.equal(fast.step, 'act');
    assert.ok(ms(fast.wake_at) - ms(fast.entered_at) <= 2000, `the timeout is the timer: ${fast.wake_at}`);
    // The condition comes true: the "happened" exit, at once.
    await identify(ws, 'fast', { activated: true });
    fast = await instanceOf(ws, 'steps', 'fast');
    assert.equal(fast.status, 'completed');
    const variant = stepsOf(fast)[2];
    assert.ok(['friendly', 'formal'].includes(variant), JSON.stringify(fast));
    assert.deepEqual(stepsOf(fast), ['act', 'ab', variant]);
    const [mail] = await messagesOf(ws, { contact: 'fast' });
    assert.equal(mail.template, variant);
    const viewed = (await ws.get('/api/v1/contacts/fast/events?limit=100&origin=nudge')).events.filter(
      (e) => e.event === 'Experiment Viewed',
    );
    assert.equal(viewed.length, 1);
    assert.equal(viewed[0].properties.experiment, 'tone');
    assert.equal(viewed[0].properties.variant, variant);
    // The same contact again: the split is stable per contact.
    await identify(ws, 'fast', { activated: false });
    await track(ws, 'fast', 'Start');
    await identify(ws, 'fast', { activated: true });
    const again = await instances(ws, 'steps', 'fast');
    assert.equal(again.length, 2);
    assert.deepEqual(stepsOf(again[0]), ['act', 'ab', variant]);

    // Slow never activates: after 2 s the timeout exit updates the contact and exits.
    const slow = await until('slow to time out', async () => {
      const i = await instanceOf(ws, 'steps', 'slow');
      return [i.status !== 'active', i];
    });
    assert.equal(slow.status, 'exited');
    assert.deepEqual(stepsOf(slow), ['act', 'nudge', 'stop']);
    assert.ok(slow.path.some((p) => p.step === 'act' && p.outcome === 'timed_out'), JSON.stringify(slow.path));
    const contact = await ws.contact('slow');
    assert.equal(contact.traits.nudged, true);
    assert.ok(JSON.stringify(contact.tags ?? contact.traits.tags ?? []).includes('slow'), JSON.stringify(contact));
    assert.deepEqual(await messagesOf(ws, { contact: 'slow' }), []);
    const exit = await journeyEvents(ws, 'slow', 'Journey Exited');
    assert.equal(exit[0].properties.reason, 'exit step');

    // A test group: only members of the segment enter the live journey.
    const seg = await request(`${ws.url}/api/v1/segments/staff`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${ws.adminKey}`, 'Content-Type': 'application/yaml' },
      body: 'id: staff\ncondition: traits.email ends_with "@nudge.example"\n',
    });
    assert.equal(seg.status, 200, seg.text);
    await okJourney(ws, 'pilot', 'id: pilot\ntrigger: { event: Pilot }\ntest_group: staff\nsteps:\n  - { id: m, send: { channel: email, template: pilot } }\n');
    await identify(ws, 'insider', { email: 'me@nudge.example' });
    await identify(ws, 'outsider', { email: 'you@else.example' });
    await track(ws, 'insider', 'Pilot');
    await track(ws, 'outsider', 'Pilot');
    assert.equal((await instances(ws, 'pilot', 'insider')).length, 1);
    assert.deepEqual(await instances(ws, 'pilot', 'outsider'), []);
  });

  test('instances record the variant a split chose, also when the journey ends right after', async () => {
    const ws = await server.createWorkspace();
    const body = (id, tail) => [
      `id: ${id}`,
      'trigger: { event: Split }',
      'entry: every_time',
      'steps:',
      '  - id: ab',
      '    split:',
      '      experiment: subject',
      '      variants:',
      '        - { name: short, weight: 50, next: short }',
      '        - { name: long, weight: 50, next: long }',
      `  - { id: short, send: { channel: email, template: short }, next: ${tail} }`,
      `  - { id: long, send: { channel: email, template: long }, next: ${tail} }`,
      ...(tail === 'hold' ? ['  - { id: hold, wait: 1h }'] : []),
      '',
    ].join('\n');
    await okJourney(ws, 'split-wait', body('split-wait', 'hold'));
    await okJourney(ws, 'split-end', body('split-end', 'end'));
    await track(ws, 'vic', 'Split');
    // Waiting after the split: the variant is on the instance.
    const waiting = await instanceOf(ws, 'split-wait', 'vic');
    assert.equal(waiting.status, 'active');
    const chosenW = stepsOf(waiting)[1];
    assert.deepEqual(waiting.variants, { ab: chosenW });
    // Ending right after the split: the instance should say the same (GET .../instances
    // documents `variants` on every instance; simulate --json prints them too).
    const ended = await instanceOf(ws, 'split-end', 'vic');
    assert.equal(ended.status, 'completed');
    const chosenE = stepsOf(ended)[1];
    assert.deepEqual(ended.variants, { ab: chosenE }, `variants of a completed instance: ${JSON.stringify(ended)}`);
  });

  test('a contact erased mid-journey leaves it: no instance, no message later', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'erase', 'id: erase\ntrigger: { event: Go }\nsteps:\n  - { id: w, wait: 1s }\n  - { id: m, send: { channel: email, template: t } }\n');
    await track(ws, 'gone', 'Go');
    await track(ws, 'kept', 'Go');
    const gone = await instanceOf(ws, 'erase', 'gone');
    assert.equal(gone.step, 'w');
    const del = await ws.admin('DELETE', '/api/v1/contacts/gone');
    assert.equal(del.status, 200, del.text);
    assert.equal((await stats(ws, 'erase')).w.waiting, 1, 'only kept still waits');
    await until('kept to get the message', async () => {
      const m = await messagesOf(ws, { journey: 'erase' });
      return [m.length >= 1, m];
    });
    await sleep(300);
    const sent = await messagesOf(ws, { journey: 'erase' });
    assert.equal(sent.length, 1, JSON.stringify(sent));
    assert.notEqual(sent[0].contact_id, gone.contact_id);
    const left = await instances(ws, 'erase');
    assert.deepEqual(left.map((i) => [i.contact_id, i.status]), [[(await instanceOf(ws, 'erase', 'kept')).contact_id, 'completed']]);
    // The same user id coming back is a new contact, who may enter again.
    await track(ws, 'gone', 'Go');
    const back = await instanceOf(ws, 'erase', 'gone');
    assert.notEqual(back.contact_id, gone.contact_id);
    assert.equal(back.status, 'active');
  });

  test('messages: pages with a cursor, filters by contact, journey and status', async () => {
    const ws = await server.createWorkspace();
    await okJourney(ws, 'mails', 'id: mails\ntrigger: { event: M }\nentry: every_time\nsteps:\n  - { id: one, send: { channel: email, template: e1 } }\n');
    await okJourney(ws, 'texts', 'id: texts\ntrigger: { event: T }\nentry: every_time\nsteps:\n  - { id: two, send: { channel: sms, template: s1 } }\n');
    for (let i = 0; i < 3; i++) await track(ws, 'u1', 'M', { i });
    for (let i = 0; i < 2; i++) await track(ws, 'u2', 'M', { i });
    for (let i = 0; i < 2; i++) await track(ws, 'u2', 'T', { i });

    const all = await messagesOf(ws, {});
    assert.equal(all.length, 7);
    const ids = all.map((m) => m.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
    assert.equal(new Set(all.map((m) => m.idempotency_key)).size, 7);

    // Pages of three: 3 + 3 + 1, in the same order, no repeats, the last without a cursor.
    const pages = [];
    let cursor = null;
    for (let n = 0; n < 5; n++) {
      const q = { limit: 3 };
      if (cursor) q.cursor = cursor;
      const p = await messages(ws, q);
      pages.push(p.messages.map((m) => m.id));
      cursor = p.next_cursor;
      if (!cursor) break;
      assert.equal(typeof cursor, 'string');
    }
    assert.deepEqual(pages.map((p) => p.length), [3, 3, 1]);
    assert.deepEqual(pages.flat(), ids);
    // Exactly one page's worth: no cursor.
    const exact = await messages(ws, { limit: 7 });
    assert.equal(exact.messages.length, 7);
    assert.equal(exact.next_cursor, null);

    // Filters, alone and together, also while paging.
    assert.equal((await messagesOf(ws, { journey: 'mails' })).length, 5);
    assert.equal((await messagesOf(ws, { journey: 'texts' })).length, 2);
    assert.ok((await messagesOf(ws, { journey: 'texts' })).every((m) => m.channel === 'sms' && m.template === 's1'));
    assert.equal((await messagesOf(ws, { contact: 'u1' })).length, 3);
    assert.equal((await messagesOf(ws, { contact: 'u2' })).length, 4);
    assert.equal((await messagesOf(ws, { contact: 'u2', journey: 'mails' })).length, 2);
    assert.equal((await messagesOf(ws, { status: 'queued' })).length, 7);
    assert.equal((await messagesOf(ws, { status: 'capped' })).length, 0);
    assert.equal((await messagesOf(ws, { journey: 'nope' })).length, 0);
    let p = await messages(ws, { journey: 'mails', limit: 2 });
    const seen = [...p.messages.map((m) => m.id)];
    while (p.next_cursor) {
      p = await messages(ws, { journey: 'mails', limit: 2, cursor: p.next_cursor });
      assert.ok(p.messages.every((m) => m.journey === 'mails'));
      seen.push(...p.messages.map((m) => m.id));
    }
    assert.deepEqual(seen, all.filter((m) => m.journey === 'mails').map((m) => m.id));

    // Bad parameters.
    for (const q of ['limit=0', 'limit=1001', 'limit=x', 'cursor=%25%25', 'cursor=bm9wZQ']) {
      const r = await ws.admin('GET', `/api/v1/messages?${q}`);
      assert.equal(r.status, 400, `${q}: ${r.status} ${r.text}`);
    }
    assert.equal((await ws.admin('GET', '/api/v1/messages?contact=nobody')).status, 404);
    assert.equal((await request(`${ws.url}/api/v1/messages`)).status, 401);
  });

  test('policies: PUT and GET; frequency caps mark the extra send as capped', async () => {
    const ws = await server.createWorkspace();
    // Defaults before any PUT.
    const defaults = await ws.get('/api/v1/policies');
    assert.equal(defaults.timezone, 'UTC');
    assert.deepEqual(defaults.quiet_hours, {});
    assert.deepEqual(defaults.frequency_caps, {});

    const yaml = [
      'timezone: Europe/Berlin',
      'quiet_hours:',
      '  sms: { from: "20:00", to: "09:00" }',
      'frequency_caps:',
      '  email: { max: 1, per: 1d }',
      '',
    ].join('\n');
    let r = await putPolicies(ws, yaml);
    assert.equal(r.status, 200, r.text);
    const expected = {
      timezone: 'Europe/Berlin',
      quiet_hours: { sms: { from: '20:00', to: '09:00' } },
      frequency_caps: { email: { max: 1, per: '1d' } },
    };
    assert.deepEqual(r.json, expected);
    assert.deepEqual(await ws.get('/api/v1/policies'), expected);

    // Bad policies are refused with positions and change nothing.
    r = await putPolicies(ws, 'timezone: Mars/Olympus_Mons\n');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.line, 1);
    assert.match(r.json.error, /not an IANA time zone/);
    r = await putPolicies(ws, 'quiet_hours:\n  pigeon: { from: "20:00", to: "09:00" }\n');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.line, 2);
    r = await putPolicies(ws, 'quiet_hours:\n  email: { from: "25:00", to: "09:00" }\n');
    assert.equal(r.status, 400, r.text);
    r = await putPolicies(ws, 'frequency_caps:\n  email: { max: 2 }\n');
    assert.equal(r.status, 400, r.text);
    r = await putPolicies(ws, 'holidays: true\n');
    assert.equal(r.status, 400, r.text);
    assert.deepEqual(await ws.get('/api/v1/policies'), expected);

    // One email a day: the second send is written, capped, and the journey goes on.
    await okJourney(ws, 'capme', [
      'id: capme',
      'trigger: { event: C }',
      'entry: every_time',
      'steps:',
      '  - { id: mail, send: { channel: email, template: t } }',
      '  - { id: after, update: { set: { went_on: true } } }',
      '',
    ].join('\n'));
    const suppressedCount = async () => Number(/^nudge_messages_suppressed_total (\S+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? 0);
    const before = await suppressedCount();
    await track(ws, 'cap', 'C');
    await track(ws, 'cap', 'C');
    await track(ws, 'other', 'C');
    const sent = (await messagesOf(ws, { journey: 'capme' })).reverse();
    assert.deepEqual(sent.map((m) => m.status), ['queued', 'capped', 'queued']);
    assert.equal(await suppressedCount(), before + 1, 'a capped message counts as not sent');
    assert.ok(sent[1].detail, 'a capped message says why');
    const list = await instances(ws, 'capme', 'cap');
    assert.deepEqual(list.map((i) => i.status), ['completed', 'completed']);
    assert.deepEqual(list.map(stepsOf), [['mail', 'after'], ['mail', 'after']]);
    const st = await stats(ws, 'capme');
    assert.equal(st.mail.entered, 3);
    assert.equal(st.mail.skipped, 1);
    assert.equal((await messagesOf(ws, { status: 'capped' })).length, 1);
  });

  test('quiet hours: a send inside the contact’s quiet window is deferred until it ends', async () => {
    const ws = await server.createWorkspace();
    // Asia/Tokyo has no daylight saving: local = UTC + 9 h. The quiet window runs from the
    // local hour before now to two hours after it, so "now" is inside it for Tokyo and outside
    // it for the workspace's zone (UTC), and it ends at the top of the UTC hour after next.
    const now = Date.now();
    const hourStart = Math.floor(now / 3600_000) * 3600_000;
    const localHour = (new Date(now).getUTCHours() + 9) % 24;
    const pad = (h) => String((h + 24) % 24).padStart(2, '0');
    const from = `${pad(localHour - 1)}:00`;
    const to = `${pad(localHour + 2)}:00`;
    const r = await putPolicies(ws, `timezone: UTC\nquiet_hours:\n  email: { from: "${from}", to: "${to}" }\n`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.quiet_hours, { email: { from, to } });
    const expectedSendAt = new Date(hourStart + 2 * 3600_000).toISOString();

    await okJourney(ws, 'hello', [
      'id: hello',
      'trigger: { event: Signed Up }',
      'entry: every_time',
      'steps:',
      '  - { id: hello, send: { channel: email, template: hello } }',
      '  - { id: ping, send: { channel: sms, template: ping } }',
      '',
    ].join('\n'));
    await identify(ws, 'kenji', { timezone: 'Asia/Tokyo' });
    await identify(ws, 'uma', { timezone: 'not/a-zone' }); // falls back to the workspace's UTC
    await track(ws, 'kenji', 'Signed Up');
    await track(ws, 'uma', 'Signed Up');
    await track(ws, 'walt', 'Signed Up'); // no time zone at all

    const [kenjiMail] = await messagesOf(ws, { contact: 'kenji' });
    assert.ok(kenjiMail, 'a message for kenji');
    assert.equal(kenjiMail.status, 'deferred_quiet_hours');
    assert.equal(kenjiMail.step, 'hello');
    assert.equal(kenjiMail.send_at, expectedSendAt, `deferred until ${to} in Tokyo`);
    assert.match(kenjiMail.detail ?? '', /Asia\/Tokyo/);
    assert.ok(ms(kenjiMail.created_at) >= now - 5);
    // The journey waits with the message: the sms step has not run.
    const kenji = await instanceOf(ws, 'hello', 'kenji');
    assert.equal(kenji.status, 'active');
    assert.equal(kenji.step, 'hello');
    assert.equal(kenji.wake_at, expectedSendAt);
    assert.equal((await messagesOf(ws, { contact: 'kenji' })).length, 1);

    for (const who of ['uma', 'walt']) {
      const sent = (await messagesOf(ws, { contact: who })).reverse();
      assert.deepEqual(sent.map((m) => [m.step, m.status]), [['hello', 'queued'], ['ping', 'queued']], who);
      assert.equal((await instanceOf(ws, 'hello', who)).status, 'completed');
    }
    assert.equal((await messagesOf(ws, { status: 'deferred_quiet_hours' })).length, 1);
  });

  test('a message deferred for quiet hours is not left pending when its instance ends first', async () => {
    const ws = await server.createWorkspace();
    const now = Date.now();
    const localHour = (new Date(now).getUTCHours() + 9) % 24; // Asia/Tokyo, no DST
    const pad = (h) => String((h + 24) % 24).padStart(2, '0');
    const r = await putPolicies(ws, `quiet_hours:\n  email: { from: "${pad(localHour - 1)}:00", to: "${pad(localHour + 2)}:00" }\n`);
    assert.equal(r.status, 200, r.text);
    await okJourney(ws, 'goal', 'id: goal\ntrigger: { event: Q }\nexit_when: event "Demo Booked"\nsteps:\n  - { id: m, send: { channel: email, template: t } }\n');
    await okJourney(ws, 'shelved', 'id: shelved\ntrigger: { event: Q }\nsteps:\n  - { id: m, send: { channel: email, template: t } }\n');
    await identify(ws, 'night', { timezone: 'Asia/Tokyo' });
    await track(ws, 'night', 'Q');
    const deferred = await messagesOf(ws, { contact: 'night' });
    assert.deepEqual(deferred.map((m) => m.status), ['deferred_quiet_hours', 'deferred_quiet_hours']);
    // The goal is reached during the quiet hours; the other journey is archived.
    await track(ws, 'night', 'Demo Booked');
    assert.equal((await ws.admin('POST', '/api/v1/journeys/shelved/archive')).status, 200);
    assert.equal((await instanceOf(ws, 'goal', 'night')).status, 'converted');
    assert.equal((await instanceOf(ws, 'shelved', 'night')).status, 'exited');
    // Nothing will ever release these messages now; left as deferred_quiet_hours (with a
    // send_at ahead) they read as still to be sent, and simulate counts them as sent.
    const after = await messagesOf(ws, { contact: 'night' });
    for (const m of after) {
      assert.notEqual(m.status, 'deferred_quiet_hours', `${m.journey}: the message of an ended instance is still pending: ${JSON.stringify(m)}`);
      assert.notEqual(m.status, 'queued', `${m.journey}: a message after the journey ended`);
      assert.equal(m.status, 'cancelled', JSON.stringify(m));
      assert.match(m.detail, /before quiet hours were over/);
    }
  });

  test('workspaces do not see each other’s journeys, instances or messages', async () => {
    const a = await server.createWorkspace();
    const b = await server.createWorkspace();
    const body = 'id: iso\ntrigger: { event: Go }\nentry: every_time\nsteps:\n  - { id: m, send: { channel: email, template: a } }\n';
    await okJourney(a, 'iso', body);
    await okJourney(a, 'only-a', 'id: only-a\ntrigger: { api: true }\nsteps:\n  - { id: m, send: { channel: email, template: a } }\n');
    await track(a, 'same-user', 'Go');
    await track(b, 'same-user', 'Go'); // b has no journey yet: nothing
    assert.deepEqual((await b.get('/api/v1/journeys')).journeys, []);
    assert.deepEqual(await messagesOf(b, {}), []);
    assert.equal((await messagesOf(a, {})).length, 1);
    for (const p of ['/api/v1/journeys/iso', '/api/v1/journeys/iso/stats', '/api/v1/journeys/iso/instances']) {
      const r = await b.admin('GET', p);
      assert.equal(r.status, 404, `${p}: ${r.text}`);
    }
    let r = await b.admin('POST', '/api/v1/journeys/iso/pause');
    assert.equal(r.status, 404);
    assert.equal((await a.get('/api/v1/journeys/iso')).status, 'active');
    await identify(b, 'someone', {});
    r = await b.admin('POST', '/api/v1/journeys/only-a/trigger', { body: { user_id: 'someone' } });
    assert.equal(r.status, 404, r.text);

    // b's own journey of the same id is its own: version 1, its own instances and messages.
    const other = body.replace('template: a', 'template: b');
    await okJourney(a, 'iso', other); // a: version 2
    const bj = await okJourney(b, 'iso', other);
    assert.equal(bj.version, 1);
    await track(b, 'same-user', 'Go');
    const bm = await messagesOf(b, {});
    assert.equal(bm.length, 1);
    assert.equal(bm[0].template, 'b');
    assert.equal(bm[0].version, 1);
    const am = await messagesOf(a, {});
    assert.equal(am.length, 1, 'a did not get b\'s message');
    assert.equal(am[0].template, 'a');
    assert.equal((await instances(a, 'iso')).length, 1);
    assert.equal((await instances(b, 'iso')).length, 1);
    assert.notEqual((await instances(a, 'iso'))[0].contact_id, (await instances(b, 'iso'))[0].contact_id);
    // a's message ids are not reachable through b's filters either.
    assert.deepEqual(await messagesOf(b, { journey: 'only-a' }), []);
    // Policies are per workspace.
    assert.equal((await putPolicies(a, 'timezone: Asia/Tokyo\n')).status, 200);
    assert.equal((await b.get('/api/v1/policies')).timezone, 'UTC');
  });
});

describe('the nudge command', () => {
  test('validate: the demo is clean; unknown targets and missing templates are listed with file:line:column', async () => {
    const bin = server.bin;
    let out = await runCli(bin, ['validate', DEMO]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    assert.match(out.stdout, /^\d+ file\(s\) checked, 0 problem\(s\)$/m);
    assert.equal(out.stderr, '');

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-validate-'));
    try {
      copyDir(DEMO, dir);
      fs.writeFileSync(path.join(dir, 'journeys', 'broken.yaml'), [
        'id: broken', //                                          1
        'trigger: { event: Go }', //                              2
        'steps:', //                                              3
        '  - id: first', //                                       4
        '    send: { channel: email, template: welcome }', //     5
        '    next: nowhere', //                                   6
        '',
      ].join('\n'));
      fs.writeFileSync(path.join(dir, 'journeys', 'no-template.yaml'), [
        'id: no-template', //                                     1
        'trigger: { event: Go }', //                              2
        'steps:', //                                              3
        '  - { id: w, wait: 1d }', //                             4
        '  - id: mail', //                                        5
        '    send: { channel: email, template: does-not-exist }', // 6
        '',
      ].join('\n'));
      out = await runCli(bin, ['validate', dir]);
      assert.equal(out.code, 1, `${out.stdout}\n${out.stderr}`);
      assert.match(out.stdout, /\d+ file\(s\) checked, 2 problem\(s\)/);
      const lines = out.stderr.trim().split('\n');
      assert.equal(lines.length, 2, out.stderr);
      assert.ok(
        lines.some((l) => /^journeys\/broken\.yaml:6:\d+: .*no step 'nowhere'/.test(l)),
        out.stderr,
      );
      assert.ok(
        // At the template's name (line 6, column 39), not at the step.
        lines.some((l) => /^journeys\/no-template\.yaml:6:39: .*does-not-exist/.test(l)),
        out.stderr,
      );

      // A bad condition: its line and column.
      fs.rmSync(path.join(dir, 'journeys', 'no-template.yaml'));
      fs.writeFileSync(path.join(dir, 'journeys', 'broken.yaml'), [
        'id: broken',
        'trigger:',
        '  event: Go',
        '  where: properties.x >>= 3',
        'steps:',
        '  - { id: w, wait: 1d }',
        '',
      ].join('\n'));
      out = await runCli(bin, ['validate', dir]);
      assert.equal(out.code, 1, `${out.stdout}\n${out.stderr}`);
      assert.match(out.stderr, /^journeys\/broken\.yaml:4:\d+: /m);

      // A topic policies.yaml does not list (a typo): subscribed(topic "newz") would be true for
      // everyone subscribed to email. Named in a segment, a journey and a template.
      fs.rmSync(path.join(dir, 'journeys', 'broken.yaml'));
      fs.writeFileSync(path.join(dir, 'segments', 'newz-readers.yaml'),
        'name: Newz readers\ncondition: subscribed(topic "newz")\n');
      fs.writeFileSync(path.join(dir, 'journeys', 'newz.yaml'),
        'id: newz\ntrigger: { event: Go }\naudience: subscribed(topic "newz")\nsteps:\n  - { id: w, wait: 1d }\n');
      const welcome = fs.readFileSync(path.join(dir, 'templates', 'welcome.yaml'), 'utf8');
      fs.writeFileSync(path.join(dir, 'templates', 'welcome.yaml'), welcome.replace('topic: news', 'topic: newz'));
      out = await runCli(bin, ['validate', dir]);
      assert.equal(out.code, 1, `${out.stdout}\n${out.stderr}`);
      assert.match(out.stdout, /3 problem\(s\)/, out.stderr);
      assert.match(out.stderr, /^segments\/newz-readers\.yaml:2:\d+: topic 'newz' is not one of the workspace's topics \(policies\.yaml topics: news, offers\)/m);
      assert.match(out.stderr, /^journeys\/newz\.yaml: topic 'newz'/m);
      assert.match(out.stderr, /^templates\/welcome\.yaml topic: topic 'newz'/m);

      // The server takes them (apply may publish policies after them) with a warning.
      const ws = await server.createWorkspace();
      const put = await ws.admin('PUT', '/api/v1/segments/newz-readers', {
        body: { name: 'Newz readers', condition: 'subscribed(topic "newz")' },
      });
      assert.equal(put.status, 200, put.text);
      assert.match(put.json.warnings.join('\n'), /topic 'newz' is not one of the workspace's topics \(policies\.yaml lists none\)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Usage errors: exit 2.
    out = await runCli(bin, ['validate', path.join(DEMO, 'no-such-dir')]);
    assert.equal(out.code, 2, `${out.stdout}\n${out.stderr}`);
  });

  test('simulate: the demo rehearsal, deterministic', async () => {
    const bin = server.bin;
    const args = ['simulate', DEMO, '--events', path.join(DEMO, 'rehearsal.jsonl'), '--json'];
    const first = await runCli(bin, args);
    assert.equal(first.code, 0, first.stderr);
    const second = await runCli(bin, args);
    assert.equal(second.code, 0, second.stderr);
    assert.equal(second.stdout, first.stdout, 'two runs print the same');
    const report = JSON.parse(first.stdout);
    assert.equal(report.from, '2026-11-02T15:00:00.000Z');
    assert.equal(report.until, '2026-12-09T14:00:00.000Z'); // the last event + 30 days
    assert.equal(report.events, 14);
    const byId = Object.fromEntries(report.journeys.map((j) => [j.id, j]));
    assert.deepEqual(Object.keys(byId).sort(), DEMO_JOURNEYS);
    const summary = (j) => j.instances.map((i) => ({
      contact: i.contact,
      status: i.status,
      path: i.path,
      messages: i.messages.map((m) => `${m.channel}:${m.template || m.step}:${m.status}`),
    }));

    // Ann (Los Angeles) signs up at 07:00 local, inside the demo's quiet hours (21:00-08:00):
    // the welcome waits for 08:00 (16:00Z); the pricing case study too, and then her click
    // (at 16:00Z) leads to the sales alert: 120 employees.
    assert.deepEqual(summary(byId['pricing-follow-up']), [
      {
        contact: 'ann',
        status: 'completed',
        path: ['pause', 'case-study', 'clicked', 'offer-call', 'sales-alert'],
        messages: ['email:pricing-case-study:queued', 'webhook:sales-alert:queued'],
      },
    ]);
    const pfuMail = byId['pricing-follow-up'].instances[0].messages[0];
    assert.equal(pfuMail.at, '2026-11-02T15:10:30.000Z');
    assert.equal(pfuMail.send_at, '2026-11-02T16:00:00.000Z');
    assert.equal(pfuMail.held_for_quiet_hours, true);
    assert.equal(byId['pricing-follow-up'].capped, 0);
    assert.deepEqual(summary(byId.welcome), [
      {
        contact: 'ann',
        status: 'completed',
        path: ['welcome', 'settle-in', 'best-content'],
        messages: ['email:welcome:queued', 'email:best-content:queued'],
      },
    ]);
    assert.equal(byId.welcome.instances[0].messages[0].send_at, '2026-11-02T16:00:00.000Z');
    assert.equal(byId.welcome.instances[0].messages[1].at, '2026-11-04T16:00:00.000Z');
    // Three pricing views in a week (the third on Friday 11-06): the nurture; its second email
    // waits two days and then for a weekday 09:00 in Los Angeles (Monday 11-09, 17:00Z).
    assert.deepEqual(summary(byId['pricing-nurture']), [
      {
        contact: 'ann',
        status: 'completed',
        path: ['case-study', 'two-days', 'next-morning', 'comparison', 'three-days', 'offer'],
        messages: ['email:nurture-case-study:queued', 'email:nurture-comparison:queued', 'email:nurture-offer:queued'],
      },
    ]);
    assert.deepEqual(
      byId['pricing-nurture'].instances[0].messages.map((m) => m.at),
      ['2026-11-06T17:00:00.000Z', '2026-11-09T17:00:00.000Z', '2026-11-12T17:00:00.000Z'],
    );
    assert.ok(byId['pricing-nurture'].instances[0].messages.every((m) => !m.held_for_quiet_hours));
    // Bo orders 20 minutes after starting the checkout: converted. Cara never orders: the
    // reminder an hour later, the offer a day after that.
    assert.deepEqual(summary(byId['abandoned-cart']), [
      { contact: 'bo', status: 'converted', path: ['wait-for-order'], messages: [] },
      {
        contact: 'cara',
        status: 'completed',
        path: ['wait-for-order', 'reminder', 'wait-a-day', 'offer'],
        messages: ['email:cart-reminder:queued', 'email:cart-offer:queued'],
      },
    ]);
    assert.deepEqual(
      byId['abandoned-cart'].instances[1].messages.map((m) => m.at),
      ['2026-11-07T21:30:00.000Z', '2026-11-08T21:30:00.000Z'],
    );
    // visitor-7 watched the demo and then the integrations page, anonymous, and became Cara.
    assert.deepEqual(summary(byId.integrations), [
      { contact: 'cara', status: 'completed', path: ['integrations-email', 'score'], messages: ['email:integrations:queued'] },
    ]);
    // The summary counts.
    const counts = (j) => [j.entered, j.converted, j.completed, j.exited, j.active, j.messages];
    assert.deepEqual(counts(byId['pricing-follow-up']), [1, 0, 1, 0, 0, 2]);
    assert.deepEqual(counts(byId['abandoned-cart']), [2, 1, 1, 0, 0, 2]);
    assert.deepEqual(counts(byId.integrations), [1, 0, 1, 0, 0, 1]);
    assert.deepEqual(counts(byId['pricing-nurture']), [1, 0, 1, 0, 0, 3]);
    assert.deepEqual(counts(byId.welcome), [1, 0, 1, 0, 0, 2]);

    // The human-readable report: deterministic too, with the summary table.
    const text1 = await runCli(bin, args.slice(0, -1));
    const text2 = await runCli(bin, args.slice(0, -1));
    assert.equal(text1.code, 0, text1.stderr);
    assert.equal(text1.stdout, text2.stdout);
    assert.match(text1.stdout, /nothing was sent/);
    assert.match(text1.stdout, /ann .*completed +pause > case-study > clicked > offer-call > sales-alert/);
    assert.match(text1.stdout, /^abandoned-cart +2 +1 +1 +0 +0 +2 +0$/m);
    // Messages at the time they would go out; the one written in quiet hours says so.
    assert.match(text1.stdout, /^ +2026-11-02T16:00:00 +email +pricing-case-study +queued +held for quiet hours from 2026-11-02T15:10:30$/m);
    // --after shortens the horizon: the nurture's last email is not due yet two days on.
    const short = await runCli(bin, [...args, '--after', '2d']);
    assert.equal(short.code, 0, short.stderr);
    const nurture = JSON.parse(short.stdout).journeys.find((j) => j.id === 'pricing-nurture');
    assert.equal(nurture.instances[0].status, 'active');
    assert.equal(nurture.instances[0].messages.length, 2);
    // Bad input: exit 2 with the line.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-sim-'));
    try {
      const bad = path.join(dir, 'bad.jsonl');
      fs.writeFileSync(bad, '{"type":"track","userId":"x","event":"A","timestamp":"2026-11-02T00:00:00Z"}\nnot json\n');
      const r = await runCli(bin, ['simulate', DEMO, '--events', bad]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /bad\.jsonl:2/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('graph: DOT with an edge per branch; SVG only with Graphviz', async () => {
    const bin = server.bin;
    const file = path.join(DEMO, 'journeys', 'pricing-follow-up.yaml');
    const out = await runCli(bin, ['graph', file]);
    assert.equal(out.code, 0, out.stderr);
    const dot = out.stdout;
    assert.match(dot, /^digraph "pricing-follow-up" \{/);
    assert.match(dot, /\}\s*$/);
    const edges = [...dot.matchAll(/^\s*(\S+) -> (\S+?)(?: \[label="([^"]*)"[^\]]*\])?;$/gm)].map(
      (m) => [m[1].replaceAll('"', ''), m[2].replaceAll('"', ''), m[3] ?? ''],
    );
    const expected = [
      ['start', 'pause', ''],
      ['pause', 'case-study', ''],
      ['case-study', 'clicked', ''],
      ['clicked', 'offer-call', 'happened'],
      ['clicked', 'reminder', 'timeout'],
      ['reminder', 'end', ''],
      ['offer-call', 'sales-alert', 'traits.employees >= 50'],
      ['offer-call', 'end', 'else'],
      ['sales-alert', 'end', ''],
    ];
    assert.deepEqual(
      edges.map((e) => e.join(' ')).sort(),
      expected.map((e) => e.join(' ')).sort(),
      dot,
    );
    for (const id of ['pause', 'case-study', 'clicked', 'reminder', 'offer-call', 'sales-alert']) {
      assert.match(dot, new RegExp(`^\\s*"${id}" \\[label=`, 'm'), `a node for ${id}`);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-graph-'));
    try {
      const dotFile = path.join(dir, 'g.dot');
      const written = await runCli(bin, ['graph', file, '-o', dotFile]);
      assert.equal(written.code, 0, written.stderr);
      assert.equal(fs.readFileSync(dotFile, 'utf8'), dot);
      const svgFile = path.join(dir, 'g.svg');
      const svg = await runCli(bin, ['graph', file, '--svg', svgFile]);
      const haveDot = (await runCli('/bin/sh', ['-c', 'command -v dot'])).code === 0;
      if (haveDot) {
        assert.equal(svg.code, 0, svg.stderr);
        assert.match(fs.readFileSync(svgFile, 'utf8'), /<svg/);
      } else {
        assert.equal(svg.code, 1, svg.stderr);
        assert.match(svg.stderr, /Graphviz/);
        assert.equal(svg.stdout, dot, 'without Graphviz the DOT still comes out');
      }
      // A graph that validate refuses is not drawn: its problems, with the path as given.
      const wrongTarget = path.join(dir, 'pricing-follow-up.yaml');
      fs.writeFileSync(wrongTarget, fs.readFileSync(file, 'utf8').replace('on_event: offer-call', 'on_event: offer-calll'));
      const wrong = await runCli(bin, ['graph', wrongTarget]);
      assert.equal(wrong.code, 1, wrong.stderr);
      assert.equal(wrong.stdout, '');
      assert.ok(wrong.stderr.includes(`${wrongTarget}:16:15: on_event: no step 'offer-calll'`), wrong.stderr);
      assert.match(wrong.stderr, /step 'sales-alert' can never be reached/);
      // A broken file: an error with its position.
      const broken = path.join(dir, 'broken.yaml');
      fs.writeFileSync(broken, 'id: broken\ntrigger: { event: Go }\nsteps:\n  - { id: a, frobnicate: 1 }\n');
      const bad = await runCli(bin, ['graph', broken]);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /broken\.yaml:4:\d+/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('apply -f examples/demo publishes the five demo journeys and the policies', async () => {
    const ws = await server.createWorkspace();
    const out = await ws.cli(['apply', '-f', DEMO, ...cliArgs(ws)]);
    assert.equal(out.code, 0, `${out.stdout}\n${out.stderr}`);
    for (const id of DEMO_JOURNEYS) {
      assert.match(out.stdout, new RegExp(`journeys/${id}\\.yaml: journey ${id}, version 1 \\(active\\)`));
    }
    const listed = (await ws.get('/api/v1/journeys')).journeys;
    assert.deepEqual(listed.map((j) => j.id).sort(), DEMO_JOURNEYS);
    assert.ok(listed.every((j) => j.version === 1 && j.status === 'active'));
    const pricing = await ws.get('/api/v1/journeys/pricing-follow-up');
    assert.equal(pricing.source, fs.readFileSync(path.join(DEMO, 'journeys', 'pricing-follow-up.yaml'), 'utf8'));
    assert.deepEqual((await ws.get('/api/v1/journeys/integrations')).trigger, { segment_entered: 'demo-then-integrations' });
    const policies = await ws.get('/api/v1/policies');
    assert.equal(policies.timezone, 'America/New_York');
    assert.deepEqual(policies.quiet_hours.email, { from: '21:00', to: '08:00' });
    assert.deepEqual(policies.frequency_caps.email, { max: 4, per: '7d' });
    // Applying again changes no version.
    const again = await ws.cli(['apply', '-f', DEMO, ...cliArgs(ws)]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok((await ws.get('/api/v1/journeys')).journeys.every((j) => j.version === 1));
    // And the demo runs: a sign-up gets the welcome (or a quiet-hours deferral of it).
    await identify(ws, 'demo-user', { timezone: 'UTC' });
    await track(ws, 'demo-user', 'Signed Up');
    const [welcome] = await messagesOf(ws, { contact: 'demo-user', journey: 'welcome' });
    assert.ok(welcome, 'the welcome message');
    assert.equal(welcome.template, 'welcome');
    assert.ok(['queued', 'deferred_quiet_hours'].includes(welcome.status), welcome.status);
  });
});
