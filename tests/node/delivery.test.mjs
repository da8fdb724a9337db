// Delivery end to end: a real `nudge serve` with a journey that sends email, SMS and a webhook,
// real relays (Node's smtp-server, read back with mailparser; a dead relay first, to fail over
// from; one answering 421), a Twilio-style SMS gateway and a webhook receiver on 127.0.0.1.
// Checks what a recipient and a sender would notice: the MIME, DKIM (python3-dkim), RFC 8058
// headers and the one-click POST, click redirects and opens as events, suppressions, retries.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { NudgeServer, request } from './lib/server.mjs';

const require = createRequire(import.meta.url);
const { SMTPServer } = require('smtp-server');
const { simpleParser } = require('mailparser');

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs = 15_000, explain = null) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${explain ? ': ' + (await explain()) : ''}`);
}

// A relay that records what it accepts. `rules[rcpt] = {code, times}` answers RCPT with code.
async function startRelay({ rules = {} } = {}) {
  const received = [];
  const attempts = {};
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onRcptTo(address, session, cb) {
      const rcpt = address.address.toLowerCase();
      attempts[rcpt] = (attempts[rcpt] ?? 0) + 1;
      const rule = rules[rcpt];
      if (rule && (rule.times === undefined || attempts[rcpt] <= rule.times)) {
        const err = new Error(rule.message ?? 'try again later');
        err.responseCode = rule.code;
        return cb(err);
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks = [];
      stream.on('data', (c) => chunks.push(c));
      stream.on('end', async () => {
        const raw = Buffer.concat(chunks);
        const parsed = await simpleParser(raw);
        received.push({ raw, parsed, rcpt: session.envelope.rcptTo.map((r) => r.address), at: Date.now() });
        cb();
      });
    },
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: server.server.address().port, received, attempts, close: () => new Promise((r) => server.close(r)) };
}

// A port nobody listens on: the first relay, to fail over from.
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

// A DSN (RFC 3464) as a relay sends one: the recipient's status, the report's own Message-ID
// when given, and the headers of the message it is about when given.
function dsnReport({ recipient, status, diagnostic, reportId, originalMessageId }) {
  return [
    'From: MAILER-DAEMON@relay.example',
    'To: bounces@acme.test',
    ...(reportId ? [`Message-ID: <${reportId}>`] : []),
    'Subject: Delivery Status Notification',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    '',
    '--b1',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; relay.example',
    '',
    `Final-Recipient: rfc822; ${recipient}`,
    'Action: failed',
    `Status: ${status}`,
    `Diagnostic-Code: smtp; ${diagnostic}`,
    '',
    ...(originalMessageId
      ? ['--b1', 'Content-Type: text/rfc822-headers', '', `Message-ID: ${originalMessageId}`, `To: ${recipient}`, 'From: hello@acme.test', '']
      : []),
    '--b1--',
    '',
  ].join('\r\n');
}

// An HTTP receiver recording requests (the SMS gateway and the webhook endpoint).
async function startReceiver(answer) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      const [status, json] = answer(req, body, requests.length);
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(json));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { requests, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

async function putYaml(server, kind, id, yaml) {
  const r = await request(`${server.url}/api/v1/${kind}${id ? `/${id}` : ''}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${server.adminKey}`, 'Content-Type': 'application/yaml' },
    body: yaml,
  });
  assert.equal(r.status, 200, `PUT ${kind}/${id}: ${r.text}`);
  return r.json;
}

function verifyDkim(raw, record) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-dkim-'));
  try {
    fs.writeFileSync(path.join(dir, 'record.txt'), record);
    const out = execFileSync('/usr/bin/python3', [path.join(ROOT, 'tests/email/dkim_verify.py'), path.join(dir, 'record.txt')], {
      input: raw,
    });
    return JSON.parse(out.toString().trim().split('\n').pop());
  } catch (err) {
    return { ok: false, error: String(err.stdout ?? err) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('delivery', () => {
  let server, relay, sms, hook, dir, dkimRecord, feedbackPort;
  const smsToken = 'sms-token-' + crypto.randomBytes(6).toString('hex');
  const hookSecret = 'hook-secret-' + crypto.randomBytes(6).toString('hex');

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-delivery-'));
    execFileSync('openssl', ['genrsa', '-out', path.join(dir, 'dkim.pem'), '2048'], { stdio: 'ignore' });
    const pub = execFileSync('openssl', ['rsa', '-in', path.join(dir, 'dkim.pem'), '-pubout', '-outform', 'DER'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    dkimRecord = `v=DKIM1; k=rsa; p=${pub.toString('base64')}`;
    relay = await startRelay({ rules: { 'flaky@example.com': { code: 421, times: 1 } } });
    const dead = await deadPort();
    feedbackPort = await deadPort();
    for (const sub of ['new', 'cur', 'tmp']) fs.mkdirSync(path.join(dir, 'Maildir', sub), { recursive: true });
    // Twilio's refusals for two numbers: one replied STOP (21610), one is no number (21211).
    sms = await startReceiver((req, body, n) => {
      if (/To=%2B14155550199/.test(body)) return [400, { code: 21610, message: 'Attempt to send to unsubscribed recipient' }];
      if (/To=%2B14155550198/.test(body)) return [400, { code: 21211, message: "The 'To' number is not a valid phone number." }];
      return [201, { sid: `SM${n}`, status: 'queued' }];
    });
    hook = await startReceiver(() => [200, { ok: true }]);
    fs.writeFileSync(
      path.join(dir, 'nudge.yaml'),
      `channels:
  email:
    from: "Acme <hello@acme.test>"
    postal_address: "Acme Inc, 1 Main St, Springfield"
    relays:
      - { name: dead, host: 127.0.0.1, port: ${dead}, tls: none, pool: 2 }
      - { name: live, host: 127.0.0.1, port: ${relay.port}, tls: none, pool: 4 }
    dkim: { domain: acme.test, selector: s1, key_file: dkim.pem }
  sms:
    gateway: { url: "http://127.0.0.1:${sms.port}/2010-04-01/Accounts/AC1/Messages.json", account: AC1, token_env: NUDGE_SMS_TOKEN, from: "+15550001111" }
  webhook: { secret_env: NUDGE_WEBHOOK_SECRET }
delivery:
  retry: { initial: 1s, max: 2s, attempts: 5 }
  unsubscribe_mailbox: unsubscribe@acme.test
feedback:
  listen: 127.0.0.1:${feedbackPort}
  maildir: ${path.join(dir, 'Maildir')}
  poll: 1s
`,
    );
    server = await new NudgeServer({
      env: { NUDGE_CONFIG: path.join(dir, 'nudge.yaml'), NUDGE_SMS_TOKEN: smsToken, NUDGE_WEBHOOK_SECRET: hookSecret },
    }).start();

    await putYaml(
      server,
      'templates',
      'hello',
      `id: hello
channel: email
subject: "Hello {{ contact.traits.first_name }} — ünïcode"
topic: news
html: |
  <p>Hi {{ contact.traits.first_name }}, <a href="https://acme.test/pricing?x=1&amp;y=2">see pricing</a>.</p>
`,
    );
    await putYaml(server, 'templates', 'hello-sms', `id: hello-sms\nchannel: sms\nbody: "Hi {{ contact.traits.first_name }}, reply STOP to opt out"\n`);
    await putYaml(
      server,
      'journeys',
      'hello',
      `id: hello
trigger: { event: Hello }
entry: every_time
steps:
  - id: mail
    send: { channel: email, template: hello }
  - id: text
    send: { channel: sms, template: hello-sms }
  - id: notify
    webhook: { url: "http://127.0.0.1:${hook.port}/crm", body: '{"user": "{{ contact.user_id }}"}', headers: { X-Source: "nudge-{{ contact.user_id }}", Content-Type: application/vnd.crm+json } }
`,
    );
  });

  after(async () => {
    await server?.dispose();
    await relay?.close();
    await sms?.close();
    await hook?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function identify(userId, traits) {
    const r = await server.send('/v1/identify', { userId, traits });
    assert.equal(r.status, 200, r.text);
  }
  async function hello(userId) {
    const r = await server.send('/v1/track', { userId, event: 'Hello' });
    assert.equal(r.status, 200, r.text);
  }
  const mailTo = (addr) => relay.received.filter((m) => m.rcpt.includes(addr));
  async function messages(userId) {
    return (await server.get(`/api/v1/messages?contact=${encodeURIComponent(userId)}&journey=hello`)).messages;
  }
  async function allEvents(userId) {
    return (await server.get(`/api/v1/contacts/${encodeURIComponent(userId)}/events?limit=1000&origin=all`)).events;
  }

  test('an event sends a signed, personalized email through the relay that works, with RFC 8058 headers', async () => {
    await identify('ada', { email: 'ada@example.com', first_name: 'Ada', phone: '+14155550101' });
    await hello('ada');
    const [mail] = await waitFor('the email at the relay', () => mailTo('ada@example.com').length && mailTo('ada@example.com'));
    const p = mail.parsed;
    assert.equal(p.subject, 'Hello Ada — ünïcode');
    assert.equal(p.from.value[0].address, 'hello@acme.test');
    assert.match(p.html, /Hi Ada/);
    assert.match(p.text, /Hi Ada/);
    assert.match(p.text, /Acme Inc, 1 Main St, Springfield/, 'the postal address is in the footer');
    assert.match(mail.raw.toString(), /Content-Type: multipart\/alternative/i);
    assert.match(p.messageId, /@acme\.test>$/);
    assert.match(mail.raw.toString(), /^List-Unsubscribe: .*<http:\/\/127\.0\.0\.1:\d+\/t\/u\/[^>]+>/m);
    assert.match(mail.raw.toString(), /^List-Unsubscribe-Post: List-Unsubscribe=One-Click\r?$/m);
    assert.match(mail.raw.toString(), /^Feedback-ID: /m);
    assert.match(mail.raw.toString().replace(/\r\n\s+/g, ' '), /^List-Unsubscribe: .*<mailto:[^>]+>/m);
    const dkim = verifyDkim(mail.raw, dkimRecord);
    assert.equal(dkim.ok, true, JSON.stringify(dkim));

    const msgs = await waitFor('three messages sent', async () => {
      const m = await messages('ada');
      return m.length === 3 && m.every((x) => x.status === 'sent') && m;
    }, 15_000, async () => JSON.stringify(await messages('ada')));
    assert.deepEqual(msgs.map((m) => m.channel).sort(), ['email', 'sms', 'webhook']);
    const events = await allEvents('ada');
    const sent = events.find((e) => e.event === 'Email Sent');
    assert.ok(sent, 'an Email Sent event');
    assert.equal(sent.properties.journey, 'hello');
    assert.equal(sent.properties.step, 'mail');
    assert.equal(String(sent.properties.message_id), String(msgs.find((m) => m.channel === 'email').id));
  });

  test('clicks redirect through signed links and become events; tampered links are refused', async () => {
    const [mail] = mailTo('ada@example.com');
    const m = /href="(http:\/\/127\.0\.0\.1:\d+\/t\/c\/[^"]+)"/.exec(mail.parsed.html);
    assert.ok(m, 'the link is rewritten');
    const r = await fetch(m[1], { redirect: 'manual' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.get('location'), 'https://acme.test/pricing?x=1&y=2');
    const tampered = m[1].slice(0, -3) + (m[1].endsWith('AAA') ? 'BBB' : 'AAA');
    const bad = await fetch(tampered, { redirect: 'manual' });
    assert.ok([400, 403].includes(bad.status), `tampered link: ${bad.status}`);
    assert.equal(bad.headers.get('location'), null);

    const pixel = /src="(http:\/\/127\.0\.0\.1:\d+\/t\/o\/[^"]+)"/.exec(mail.parsed.html);
    assert.ok(pixel, 'an open pixel');
    const o = await fetch(pixel[1], { headers: { 'User-Agent': 'Mozilla/5.0' } });
    assert.equal(o.status, 200);
    assert.match(o.headers.get('content-type'), /image\/gif/);

    const events = await waitFor('click and open events', async () => {
      const ev = await allEvents('ada');
      return ev.some((e) => e.event === 'Email Link Clicked') && ev.some((e) => e.event === 'Email Opened') && ev;
    });
    const click = events.find((e) => e.event === 'Email Link Clicked');
    assert.equal(click.properties.url, 'https://acme.test/pricing?x=1&y=2');
    assert.equal(click.properties.step, 'mail');
    assert.equal(click.properties.journey, 'hello');
    const open = events.find((e) => e.event === 'Email Opened');
    assert.ok(open.properties.proxy === 'apple' || open.properties.privacy_proxy === true || open.properties.machine_open === true, JSON.stringify(open.properties));
  });

  test('the SMS goes through the Twilio-style gateway and the webhook is signed', async () => {
    const smsReq = await waitFor('the SMS request', () => sms.requests.find((r) => /To=%2B14155550101/.test(r.body)));
    assert.equal(smsReq.method, 'POST');
    assert.equal(smsReq.url, '/2010-04-01/Accounts/AC1/Messages.json');
    assert.equal(smsReq.headers.authorization, `Basic ${Buffer.from(`AC1:${smsToken}`).toString('base64')}`);
    const form = new URLSearchParams(smsReq.body);
    assert.equal(form.get('From'), '+15550001111');
    assert.equal(form.get('Body'), 'Hi Ada, reply STOP to opt out');

    const h = await waitFor('the webhook', () => hook.requests.find((r) => r.url === '/crm'));
    assert.deepEqual(JSON.parse(h.body), { user: 'ada' });
    assert.equal(h.headers['x-source'], 'nudge-ada', 'header values are Liquid');
    assert.equal(h.headers['content-type'], 'application/vnd.crm+json', "the step's Content-Type replaces the default");
    const sig = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(h.headers['x-nudge-signature']);
    assert.ok(sig, h.headers['x-nudge-signature']);
    const want = crypto.createHmac('sha256', hookSecret).update(`${sig[1]}.${h.body}`).digest('hex');
    assert.equal(sig[2], want);
  });

  test('one-click unsubscribe (RFC 8058 POST) stops the next email but not the SMS', async () => {
    const [mail] = mailTo('ada@example.com');
    const url = /<(http:\/\/127\.0\.0\.1:\d+\/t\/u\/[^>]+)>/.exec(mail.raw.toString().replace(/\r\n\s+/g, ' '))[1];
    const page = await fetch(url);
    assert.equal(page.status, 200, 'the GET shows a confirmation page');
    assert.match(await page.text(), /unsubscribe/i);
    // As RFC 8058 says a mail client should send it: multipart/form-data.
    const form = new FormData();
    form.append('List-Unsubscribe', 'One-Click');
    const r = await fetch(url, { method: 'POST', body: form });
    assert.equal(r.status, 200);
    const ev = await waitFor('the Unsubscribed event', async () => (await allEvents('ada')).find((e) => e.event === 'Unsubscribed'));
    assert.equal(ev.properties.source, 'one_click');
    // A client that posts twice unsubscribes once: one event, one consent log entry.
    assert.equal((await fetch(url, { method: 'POST', body: form })).status, 200);
    assert.equal((await allEvents('ada')).filter((e) => e.event === 'Unsubscribed').length, 1);
    const log = (await server.get('/api/v1/contacts/ada/consent')).history.filter((h) => h.status === 'unsubscribed');
    assert.equal(log.length, 1, JSON.stringify(log));

    const before = mailTo('ada@example.com').length;
    const smsBefore = sms.requests.length;
    await hello('ada');
    const msgs = await waitFor('the second round answered', async () => {
      const m = await messages('ada');
      return m.length === 6 && m.every((x) => !['queued', 'sending'].includes(x.status)) && m;
    });
    const second = msgs.filter((m) => !msgs.slice(-3).includes(m) || true).slice(-3);
    const email = msgs.filter((m) => m.channel === 'email');
    assert.ok(email.some((m) => m.status === 'suppressed'), JSON.stringify(email));
    await sleep(300);
    assert.equal(mailTo('ada@example.com').length, before, 'no email after the unsubscribe');
    assert.ok(sms.requests.length > smsBefore, 'the SMS still goes');
    assert.ok(second.length === 3);
  });

  test('nothing is mailed to a suppressed address; a 421 is retried', async () => {
    await identify('bob', { email: 'bob@example.com', first_name: 'Bob' });
    const add = await server.cli(['suppress', 'add', 'Bob@Example.com', '--reason', 'manual', '--server', server.url, '--key', server.adminKey]);
    assert.equal(add.code, 0, add.stderr);
    const list = await server.cli(['suppress', 'list', '--json', '--server', server.url, '--key', server.adminKey]);
    assert.match(list.stdout, /"address":"bob@example.com"/);
    await hello('bob');
    const bobs = await waitFor('bob answered', async () => {
      const m = (await messages('bob')).filter((x) => x.channel === 'email');
      return m.length === 1 && m[0].status !== 'queued' && m[0].status !== 'sending' && m;
    });
    assert.equal(bobs[0].status, 'suppressed');
    assert.equal(mailTo('bob@example.com').length, 0);

    await identify('flo', { email: 'flaky@example.com', first_name: 'Flo' });
    await hello('flo');
    await waitFor('the retried email', () => mailTo('flaky@example.com').length === 1, 20_000);
    assert.equal(relay.attempts['flaky@example.com'], 2, 'one 421, then accepted');
    const flo = await waitFor('sent', async () => {
      const m = (await messages('flo')).find((x) => x.channel === 'email');
      return m && m.status === 'sent' && m;
    });
    assert.equal(flo.status, 'sent');

    // Added again as an unsubscribe: the manual entry is stronger and stays, and the answer
    // shows what is stored (200: it was there already).
    const again = await server.admin('POST', '/api/v1/suppressions', { body: { address: 'bob@example.com', reason: 'unsubscribed', detail: 'later' } });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.reason, 'manual');
    const typo = await server.admin('POST', '/api/v1/suppressions', { body: { address: 'x@example.com', reasn: 'complaint' } });
    assert.equal(typo.status, 400);
    assert.match(typo.text, /reasn/);
    const badCursor = await server.admin('GET', '/api/v1/suppressions?cursor=zzz');
    assert.equal(badCursor.status, 400);
    assert.match(badCursor.text, /cursor/);
    const number = await server.admin('POST', '/api/v1/suppressions', { body: { address: 123 } });
    assert.equal(number.status, 400);
    assert.match(number.text, /must be a string/);

    const rm = await server.cli(['suppress', 'remove', 'bob@example.com', '--server', server.url, '--key', server.adminKey]);
    assert.equal(rm.code, 0, rm.stderr);
    await hello('bob');
    await waitFor('bob mailed after the suppression is lifted', () => mailTo('bob@example.com').length === 1);
  });

  test('an inbound STOP with a valid Twilio signature unsubscribes the number; a forged one is refused', async () => {
    const url = `${server.url}/hooks/sms/inbound?key=${server.writeKey}`;
    const params = { From: '+14155550101', To: '+15550001111', Body: 'STOP' };
    const signed = url + Object.keys(params).sort().map((k) => k + params[k]).join('');
    const signature = crypto.createHmac('sha1', smsToken).update(signed).digest('base64');
    const body = new URLSearchParams(params).toString();
    const forged = await request(url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': 'AAAA' }, body });
    assert.equal(forged.status, 403);
    const ok = await request(url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-Twilio-Signature': signature }, body });
    assert.equal(ok.status, 200, ok.text);
    const consent = await server.get('/api/v1/contacts/ada/consent');
    assert.match(JSON.stringify(consent), /sms/);
    const smsBefore = sms.requests.length;
    await hello('ada');
    await waitFor('the third round answered', async () => {
      const m = await messages('ada');
      return m.length === 9 && m.every((x) => !['queued', 'sending'].includes(x.status));
    });
    await sleep(200);
    assert.equal(sms.requests.length, smsBefore, 'no SMS after STOP');
  });

  async function mailToListener({ from, to, subject, raw }) {
    const nodemailer = require('nodemailer');
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: feedbackPort, secure: false, ignoreTLS: true });
    try {
      if (raw) await t.sendMail({ envelope: { from, to: [to] }, raw });
      else await t.sendMail({ from, to, subject, text: 'please unsubscribe me' });
    } finally {
      t.close();
    }
  }

  test('an unsubscribe mailed to the List-Unsubscribe mailto address is honoured', async () => {
    await identify('cy', { email: 'cy@example.com', first_name: 'Cy' });
    await hello('cy');
    const [mail] = await waitFor('cy mailed', () => mailTo('cy@example.com').length && mailTo('cy@example.com'));
    const unfolded = mail.raw.toString().replace(/\r\n\s+/g, ' ');
    const m = /<mailto:(unsubscribe@acme\.test)\?subject=([^>]+)>/.exec(unfolded);
    assert.ok(m, 'a mailto in List-Unsubscribe');
    await mailToListener({ from: 'cy@example.com', to: m[1], subject: decodeURIComponent(m[2]) });
    const ev = await waitFor('the Unsubscribed event', async () => (await allEvents('cy')).find((e) => e.event === 'Unsubscribed'));
    assert.equal(ev.properties.source, 'mailto');
    // A forged token changes nothing.
    await identify('di', { email: 'di@example.com', first_name: 'Di' });
    await mailToListener({ from: 'di@example.com', to: m[1], subject: decodeURIComponent(m[2]).slice(0, -4) + 'AAAA' });
    await sleep(300);
    assert.equal((await allEvents('di')).filter((e) => e.event === 'Unsubscribed').length, 0);
  });

  test('an unsubscribe mail that lands in the maildir is honoured too', async () => {
    await identify('kim', { email: 'kim@example.com', first_name: 'Kim' });
    await hello('kim');
    const [mail] = await waitFor('kim mailed', () => mailTo('kim@example.com').length && mailTo('kim@example.com'));
    const m = /<mailto:(unsubscribe@acme\.test)\?subject=([^>]+)>/.exec(mail.raw.toString().replace(/\r\n\s+/g, ' '));
    const raw = `From: Kim <kim@example.com>\r\nTo: ${m[1]}\r\nSubject: ${decodeURIComponent(m[2])}\r\n\r\nunsubscribe\r\n`;
    const maildir = path.join(dir, 'Maildir');
    fs.writeFileSync(path.join(maildir, 'tmp', '1.kim'), raw);
    fs.renameSync(path.join(maildir, 'tmp', '1.kim'), path.join(maildir, 'new', '1.kim'));
    const ev = await waitFor('the Unsubscribed event', async () => (await allEvents('kim')).find((e) => e.event === 'Unsubscribed'));
    assert.equal(ev.properties.source, 'mailto');
    const consent = await server.get('/api/v1/contacts/kim/consent');
    assert.doesNotMatch(JSON.stringify(consent), /"ip":"[^"]*@/, 'the sender is no IP address');
    await waitFor('the mail filed as read', () => fs.readdirSync(path.join(maildir, 'cur')).some((f) => f.startsWith('1.kim')));
  });

  test('a DSN for a hard bounce received by the listener suppresses the address', async () => {
    await identify('dan', { email: 'dan@example.com', first_name: 'Dan' });
    await hello('dan');
    const [mail] = await waitFor('dan mailed', () => mailTo('dan@example.com').length && mailTo('dan@example.com'));
    const dsn = dsnReport({ recipient: 'dan@example.com', status: '5.1.1', diagnostic: '550 5.1.1 user unknown', originalMessageId: mail.parsed.messageId });
    await mailToListener({ from: '', to: 'bounces@acme.test', raw: dsn });
    const bounced = await waitFor('Email Bounced', async () => (await allEvents('dan')).find((e) => e.event === 'Email Bounced'));
    assert.equal(bounced.properties.bounce_type, 'hard');
    const list = await server.get('/api/v1/suppressions?channel=email');
    const entry = list.suppressions.find((x) => x.address === 'dan@example.com');
    assert.equal(entry?.reason, 'hard_bounce', JSON.stringify(list));
    const before = mailTo('dan@example.com').length;
    await hello('dan');
    await waitFor('dan suppressed', async () => (await messages('dan')).some((x) => x.channel === 'email' && x.status === 'suppressed'));
    assert.equal(mailTo('dan@example.com').length, before);
  });

  test("the SMS gateway's refusals: a number that replied STOP is suppressed as unsubscribed, an invalid one bounces", async () => {
    await identify('stu', { phone: '+14155550199' });
    await identify('val', { phone: '+14155550198' });
    await hello('stu');
    await hello('val');
    const stu = await waitFor('the SMS Failed event', async () => (await allEvents('stu')).find((e) => e.event === 'SMS Failed'));
    assert.equal(stu.properties.code, 21610);
    const val = await waitFor('the SMS Bounced event', async () => (await allEvents('val')).find((e) => e.event === 'SMS Bounced'));
    assert.equal(val.properties.code, 21211, "Twilio's code, not the HTTP status");
    const list = await server.get('/api/v1/suppressions?channel=sms');
    assert.equal(list.suppressions.find((x) => x.address === '+14155550199')?.reason, 'unsubscribed', JSON.stringify(list));
    assert.equal(list.suppressions.find((x) => x.address === '+14155550198')?.reason, 'hard_bounce', JSON.stringify(list));
    // The next one is not sent to the gateway at all.
    const before = sms.requests.filter((r) => /To=%2B14155550199/.test(r.body)).length;
    await hello('stu');
    await waitFor('suppressed', async () => (await server.get('/api/v1/messages?contact=stu&journey=hello')).messages.some((m) => m.channel === 'sms' && m.status === 'suppressed'));
    assert.equal(sms.requests.filter((r) => /To=%2B14155550199/.test(r.body)).length, before);
  });

  test('five soft bounces of an address, in five reports, suppress it even when no report names a message', async () => {
    await identify('sol', { email: 'sol@example.com', first_name: 'Sol' });
    const report = (i) => dsnReport({ recipient: 'sol@example.com', status: '4.2.2', diagnostic: '452 4.2.2 mailbox full', reportId: `report-${i}@relay.example` });
    // The first report twice (read twice): counted once.
    for (const i of [1, 1, 2, 3, 4]) await mailToListener({ from: '', to: 'bounces@acme.test', raw: report(i) });
    const four = await waitFor('four soft bounces', async () => {
      const n = (await allEvents('sol')).filter((e) => e.event === 'Email Bounced').length;
      return n >= 4 && n;
    });
    assert.equal(four, 4);
    let list = await server.get('/api/v1/suppressions?channel=email');
    assert.equal(list.suppressions.find((x) => x.address === 'sol@example.com'), undefined, 'four are not enough');
    await mailToListener({ from: '', to: 'bounces@acme.test', raw: report(5) });
    await waitFor('the fifth suppresses', async () => {
      list = await server.get('/api/v1/suppressions?channel=email');
      return list.suppressions.some((x) => x.address === 'sol@example.com');
    });
    assert.equal(list.suppressions.find((x) => x.address === 'sol@example.com').reason, 'hard_bounce');
  });

  test('personalized images: image_url links to an image drawn for the contact; links are signed', async () => {
    const demo = path.join(ROOT, 'examples/demo/images');
    const put = await server.admin('PUT', '/api/v1/images/welcome-hero', {
      body: {
        yaml: fs.readFileSync(path.join(demo, 'welcome-hero.yaml'), 'utf8'),
        assets: { 'hero.png': fs.readFileSync(path.join(demo, 'hero.png')).toString('base64') },
      },
    });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json.width, 1200);
    const bad = await server.admin('PUT', '/api/v1/images/broken', { body: { yaml: 'id: broken\nbase: missing.png\n' } });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /missing\.png/);
    await putYaml(server, 'templates', 'pic', `id: pic\nchannel: email\nsubject: hi\nhtml: "<img src=\\"{{ 'welcome-hero' | image_url: 'png' }}\\">"\n`);
    const prev = await server.admin('POST', '/api/v1/templates/pic/preview', { body: { user_id: 'ada' } });
    assert.equal(prev.status, 200, prev.text);
    const url = /src="([^"]+)"/.exec(prev.json.html)[1];
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/i\/welcome-hero\/[^/]+\.png$/);
    const img = await fetch(url);
    assert.equal(img.status, 200);
    assert.equal(img.headers.get('content-type'), 'image/png');
    assert.equal(img.headers.get('x-nudge-image'), null, 'drawn, not the fallback');
    const bytes = Buffer.from(await img.arrayBuffer());
    assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
    const webp = await fetch(url.replace(/\.png$/, '.webp'));
    assert.equal(webp.headers.get('content-type'), 'image/webp');
    const forged = await fetch(url.replace(/\.([A-Za-z0-9_-]{4})([^.]*)\.png$/, '.AAAA$2.png'));
    assert.equal(forged.status, 403);
    const other = await fetch(url.replace('/i/welcome-hero/', '/i/pic/'));
    assert.equal(other.status, 403, 'a link made for one image does not draw another');
    // Without a format the URL names none, and the template's own format is served.
    await putYaml(server, 'templates', 'pic2', `id: pic2\nchannel: email\nsubject: hi\nhtml: "<img src=\\"{{ 'welcome-hero' | image_url }}\\">"\n`);
    const prev2 = await server.admin('POST', '/api/v1/templates/pic2/preview', { body: { user_id: 'ada' } });
    const bare = /src="([^"]+)"/.exec(prev2.json.html)[1];
    assert.match(bare, /\/i\/welcome-hero\/[A-Za-z0-9_.-]+$/);
    assert.doesNotMatch(bare, /\.(png|jpg|webp)$/);
    assert.equal((await fetch(`${bare}.gif`)).status, 400, 'another extension is no link of ours');
    const served = await fetch(bare);
    assert.equal(served.status, 200);
    assert.equal(served.headers.get('content-type'), `image/${put.json.format === 'jpg' ? 'jpeg' : put.json.format}`);
    // An id that is no id names no files: '..' removes nothing, of no workspace.
    const dots = await server.admin('DELETE', '/api/v1/images/%2E%2E');
    assert.equal(dots.status, 404);
    assert.equal((await fetch(url)).status, 200, 'the image still draws from its files');
    const long = await server.admin('PUT', `/api/v1/images/${'a'.repeat(300)}`, { body: { yaml: 'id: x\n' } });
    assert.equal(long.status, 400, long.text);
    assert.match(long.text, /1 to 100/);
    // A new version replaces the files of the one before: one directory of assets stays.
    const versions = () => fs.readdirSync(path.join(server.dataDir, 'images')).flatMap((ws) => {
      const dir = path.join(server.dataDir, 'images', ws, 'welcome-hero');
      return fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    });
    const before = versions();
    assert.equal(before.length, 1, before.join(' '));
    const again = await server.admin('PUT', '/api/v1/images/welcome-hero', {
      body: {
        yaml: fs.readFileSync(path.join(demo, 'welcome-hero.yaml'), 'utf8') + '\n# version 2\n',
        assets: { 'hero.png': fs.readFileSync(path.join(demo, 'hero.png')).toString('base64') },
      },
    });
    assert.equal(again.status, 200, again.text);
    const after = versions();
    assert.equal(after.length, 1, after.join(' '));
    assert.notEqual(after[0], before[0]);
    assert.equal((await fetch(bare)).status, 200, 'the new version draws');
    // A format no image is served in is refused when the template is saved, with its place.
    const gif = await request(`${server.url}/api/v1/templates/gif`, {
      method: 'PUT',
      headers: { Authorization: `Bearer ${server.adminKey}`, 'Content-Type': 'application/yaml' },
      body: `id: gif\nchannel: email\nsubject: hi\nhtml: "<img src=\\"{{ 'welcome-hero' | image_url: 'gif' }}\\">"\n`,
    });
    assert.equal(gif.status, 400, gif.text);
    assert.match(gif.text, /png, jpg or webp, not 'gif'/);
  });

  test('the preference page keeps what stays ticked and unsubscribes what is unticked', async () => {
    await identify('gus', { email: 'gus@example.com', first_name: 'Gus' });
    await hello('gus');
    const [mail] = await waitFor('gus mailed', () => mailTo('gus@example.com').length && mailTo('gus@example.com'));
    const url = /(http:\/\/127\.0\.0\.1:\d+\/t\/p\/\S+)/.exec(mail.parsed.text)[1];
    const page = await (await fetch(url)).text();
    const boxes = [...page.matchAll(/<input type="checkbox" name="(\w+)" value="([^"]+)"( checked)?/g)].map((m) => [m[1], m[2], !!m[3]]);
    assert.deepEqual(boxes, [['on', 'email', true], ['all', 'off', false]]);
    // Saved as a browser sends the form with the box left ticked: nothing changes.
    const keep = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'on=email' });
    assert.equal(keep.status, 200);
    assert.match(await keep.text(), /name="on" value="email" checked/);
    assert.equal((await allEvents('gus')).filter((e) => e.event === 'Unsubscribed').length, 0);
    // Unticked: unsubscribed from email.
    const off = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: '' });
    assert.equal(off.status, 200);
    assert.doesNotMatch(await off.text(), /value="email" checked/);
    const ev = await waitFor('Unsubscribed', async () => (await allEvents('gus')).find((e) => e.event === 'Unsubscribed'));
    assert.equal(ev.properties.source, 'preference_page');
  });

  test('bounce webhooks (Amazon SES through SNS) suppress the address for the workspace of the key', async () => {
    const note = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests/feedback/ses_bounce.json'), 'utf8'));
    const inner = JSON.parse(note.Message);
    inner.bounce.bouncedRecipients[0].emailAddress = 'eve@example.com';
    inner.mail.destination = ['eve@example.com'];
    note.Message = JSON.stringify(inner);
    await identify('eve', { email: 'eve@example.com', first_name: 'Eve' });
    const wrong = await request(`${server.url}/hooks/ses?key=nope`, { method: 'POST', body: JSON.stringify(note), headers: { 'Content-Type': 'text/plain' } });
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /unknown write key/);
    const r = await request(`${server.url}/hooks/ses?key=${server.writeKey}`, { method: 'POST', body: JSON.stringify(note), headers: { 'Content-Type': 'text/plain' } });
    assert.equal(r.status, 200, r.text);
    const list = await server.get('/api/v1/suppressions?channel=email');
    assert.equal(list.suppressions.find((x) => x.address === 'eve@example.com')?.reason, 'hard_bounce', JSON.stringify(list));
    const broken = await request(`${server.url}/hooks/ses?key=${server.writeKey}`, { method: 'POST', body: '{"Type": ', headers: { 'Content-Type': 'text/plain' } });
    assert.equal(broken.status, 400);
  });

  // Last: double opt-in for email changes who counts as subscribed in the workspace.
  test('double opt-in: a new subscription waits for the signed confirmation link', async () => {
    await putYaml(server, 'templates', 'confirm', `id: confirm
channel: email
subject: "Please confirm your subscription"
transactional: true
html: '<p>Click to confirm: <a href="{{ message.confirm_url }}">confirm</a></p>'
`);
    await putYaml(server, 'policies', '', `topics: [{ id: news, name: News }]\ndouble_opt_in: { email: { template: confirm } }\n`);
    await identify('fay', { email: 'fay@example.com', first_name: 'Fay' });
    await hello('fay');
    const first = await waitFor('fay answered', async () => {
      const m = (await messages('fay')).find((x) => x.channel === 'email');
      return m && !['queued', 'sending'].includes(m.status) && m;
    });
    assert.equal(first.status, 'suppressed', 'not confirmed yet: nothing but the confirmation goes');
    // Without an address there is nowhere to send the confirmation: refused, nothing pending.
    await identify('noe', { first_name: 'Noe' });
    const none = await server.admin('PUT', '/api/v1/contacts/noe/subscriptions', { body: { channel: 'email', status: 'subscribed' } });
    assert.equal(none.status, 409, none.text);
    assert.match(none.text, /no email address/);
    const put = await server.admin('PUT', '/api/v1/contacts/fay/subscriptions', { body: { channel: 'email', status: 'subscribed', source: 'signup-form', ip: '203.0.113.9' } });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json.status, 'pending');
    const [mail] = await waitFor('the confirmation email', () => mailTo('fay@example.com').length && mailTo('fay@example.com'));
    assert.equal(mail.parsed.subject, 'Please confirm your subscription');
    const link = /href="(http:\/\/127\.0\.0\.1:\d+\/t\/[ck]\/[^"]+)"/.exec(mail.parsed.html);
    assert.ok(link, mail.parsed.html);
    const page = await fetch(link[1]);
    assert.equal(page.status, 200);
    await waitFor('Subscription Confirmed', async () => (await allEvents('fay')).some((e) => e.event === 'Subscription Confirmed'));
    const consent = await server.get('/api/v1/contacts/fay/consent');
    const history = JSON.stringify(consent);
    assert.match(history, /signup-form/);
    assert.match(history, /203\.0\.113\.9/);
    await hello('fay');
    await waitFor('the welcome email after confirming', () => mailTo('fay@example.com').some((m) => /Hello Fay/.test(m.parsed.subject)));
  });

  // After the double opt-in test: the workspace has the topic "news".
  test('the preference page: a topic left unticked stays off when its channel is ticked again', async () => {
    const mail = mailTo('fay@example.com').find((m) => /Hello Fay/.test(m.parsed.subject));
    const url = /(http:\/\/127\.0\.0\.1:\d+\/t\/p\/\S+)/.exec(mail.parsed.text)[1];
    const form = { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } };
    const boxes = async (r) => [...(await r.text()).matchAll(/name="on" value="([^"]+)"( checked)?/g)].map((m) => [m[1], !!m[2]]);
    assert.deepEqual(await boxes(await fetch(url)), [['email', true], ['email/news', true]]);
    // Unsubscribed from all email (as the one-click link of a message without a topic does):
    // both boxes show unticked.
    const off = await server.admin('PUT', '/api/v1/contacts/fay/subscriptions', { body: { channel: 'email', status: 'unsubscribed', source: 'crm' } });
    assert.equal(off.status, 200, off.text);
    const listed = await server.get('/api/v1/suppressions?channel=email');
    const entry = listed.suppressions.find((x) => x.address === 'fay@example.com');
    assert.equal(entry?.reason, 'unsubscribed', 'an unsubscribe through the API suppresses as the link does');
    assert.deepEqual(await boxes(await fetch(url)), [['email', false], ['email/news', false]]);
    // Email ticked again, News left unticked: News stays off.
    const saved = await boxes(await fetch(url, { ...form, body: 'on=email' }));
    assert.deepEqual(saved, [['email', true], ['email/news', false]]);
    const consent = await server.get('/api/v1/contacts/fay/consent');
    assert.equal(consent.effective.email.subscribed, true, JSON.stringify(consent));
    const lifted = await server.get('/api/v1/suppressions?channel=email');
    assert.equal(lifted.suppressions.find((x) => x.address === 'fay@example.com'), undefined, 'subscribing again lifts it');
    assert.equal(consent.effective.email.topics.news, false, JSON.stringify(consent));
  });
});
