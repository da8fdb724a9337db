// Admin API bodies with fields of the wrong type get a 400 naming the field, never a crash:
// after every such request the server still answers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { NudgeServer, request, uid } from './lib/server.mjs';

let server;
let ws;

before(async () => {
  server = new NudgeServer();
  await server.start();
  ws = await server.createWorkspace();
  const user = 'bad-input-user';
  const r = await ws.send('/v1/identify', { userId: user, traits: { email: 'bad@example.com' } });
  assert.equal(r.status, 200, r.text);
  const t = await ws.admin('PUT', '/api/v1/templates/hello', {
    body: { channel: 'email', subject: 'Hi', html: '<p>Hi {{ contact.traits.email }}</p>' },
  });
  assert.equal(t.status, 200, t.text);
});

after(async () => {
  await server?.dispose();
});

async function healthy() {
  const h = await request(`${server.url}/healthz`);
  assert.equal(h.status, 200, 'the server still answers /healthz');
}

describe('a field of the wrong type is a 400 naming it', () => {
  const cases = [
    ['POST', '/api/v1/segments/preview', { condition: 'true', sample: 'ten' }, 'sample'],
    ['POST', '/api/v1/segments/preview', { condition: 'true', sample: -3 }, 'sample'],
    ['POST', '/api/v1/suppressions', { channel: 5, address: 'x@example.com' }, 'channel'],
    ['POST', '/api/v1/suppressions', { address: 'x@example.com', reason: ['manual'] }, 'reason'],
    ['POST', '/api/v1/suppressions', { address: 'x@example.com', detail: { a: 1 } }, 'detail'],
    ['PUT', '/api/v1/contacts/bad-input-user/subscriptions',
      { channel: 'email', status: 'subscribed', confirmed: 'yes' }, 'confirmed'],
    ['POST', '/api/v1/contacts/import',
      { import_id: uid('imp'), contacts: [{ email: 'row@example.com', line: 'one' }] }, 'contacts[0].line'],
  ];
  for (const [method, pathname, body, field] of cases) {
    test(`${method} ${pathname} ${JSON.stringify(body)}`, async () => {
      const r = await ws.admin(method, pathname, { body });
      assert.equal(r.status, 400, r.text);
      assert.equal(r.json?.field, field, r.text);
      await healthy();
    });
  }
});

test('no admin body, whatever its field types, brings the server down', async () => {
  // Each route's fields, one at a time, replaced by a value of every other JSON type.
  const routes = [
    ['POST', '/api/v1/segments/preview', { condition: 'true', sample: 3 }],
    ['PUT', `/api/v1/segments/${uid('seg')}`, { id: 'x', name: 'X', condition: 'true' }],
    ['POST', '/api/v1/suppressions', { channel: 'email', address: 'y@example.com', reason: 'manual', detail: 'd' }],
    ['PUT', '/api/v1/contacts/bad-input-user/subscriptions',
      { channel: 'email', topic: null, status: 'subscribed', confirmed: true, source: 'form' }],
    ['POST', '/api/v1/contacts/bad-input-user/consent', { channel: 'email', status: 'subscribed', source: 'form' }],
    ['POST', '/api/v1/templates/hello/preview', { context: { contact: { id: 1, traits: {} } }, user_id: 'bad-input-user' }],
    ['POST', '/api/v1/contacts/import', { import_id: 'i', contacts: [{ email: 'z@example.com', line: 1, traits: {} }] }],
    ['POST', '/api/v1/workspaces', { name: 'n' }],
    ['POST', '/api/v1/journeys/none/trigger', { user_id: 'bad-input-user', data: {} }],
  ];
  const others = [5, -1.5, true, null, 'text', [1, 'a'], { k: 'v' }];
  let sent = 0;
  for (const [method, pathname, valid] of routes) {
    for (const field of Object.keys(valid)) {
      for (const v of others) {
        const body = { ...valid, [field]: v };
        const r = await ws.admin(method, pathname, { body });
        assert.ok(r.status < 500, `${method} ${pathname} ${JSON.stringify(body)}: ${r.status} ${r.text}`);
        sent++;
      }
      await healthy();
    }
  }
  assert.ok(sent > 100);
});

test('bounce webhooks with any field of another type answer without bringing the server down', async () => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../feedback');
  // Every leaf (and every object/array) of a sample, replaced in turn by values of other types.
  function* variants(doc) {
    const others = [7, true, null, 'text', [], { k: 1 }];
    function* walk(node, set) {
      for (const v of others) yield set(v);
      if (node && typeof node === 'object') {
        for (const k of Object.keys(node)) {
          yield* walk(node[k], (v) => set(Array.isArray(node) ? node.map((x, i) => (String(i) === k ? v : x)) : { ...node, [k]: v }));
        }
      }
    }
    yield* walk(doc, (v) => v);
  }
  const samples = [
    ['/hooks/sendgrid', JSON.parse(fs.readFileSync(path.join(dir, 'sendgrid_events.json'), 'utf8'))],
    ['/hooks/postmark', JSON.parse(fs.readFileSync(path.join(dir, 'postmark_bounce.json'), 'utf8'))],
    ['/hooks/postmark', JSON.parse(fs.readFileSync(path.join(dir, 'postmark_spam_complaint.json'), 'utf8'))],
  ];
  // SES arrives through SNS with the notification as a JSON string: vary both levels.
  const ses = JSON.parse(fs.readFileSync(path.join(dir, 'ses_bounce.json'), 'utf8'));
  const sesInner = JSON.parse(ses.Message);
  const sesDocs = [...variants(ses)];
  for (const inner of variants(sesInner)) sesDocs.push({ ...ses, Message: JSON.stringify(inner) });
  let sent = 0;
  const post = async (hook, doc) => {
    const r = await request(`${server.url}${hook}?key=${ws.writeKey}`, {
      method: 'POST', body: JSON.stringify(doc), headers: { 'Content-Type': 'application/json' },
    });
    assert.ok(r.status < 500, `${hook} ${JSON.stringify(doc).slice(0, 300)}: ${r.status} ${r.text}`);
    if (++sent % 100 === 0) await healthy();
  };
  for (const doc of sesDocs.slice(0, 1500)) await post('/hooks/ses', doc);
  for (const [hook, sample] of samples) {
    for (const doc of [...variants(sample)].slice(0, 1500)) await post(hook, doc);
  }
  await healthy();
  assert.ok(sent > 200, `${sent} requests`);
});

test('malformed JSON sent to an admin route is a 400 with the line and column where it breaks', async () => {
  const routes = [
    ['POST', '/api/v1/segments/preview'],
    ['POST', '/api/v1/suppressions'],
    ['PUT', '/api/v1/contacts/bad-input-user/subscriptions'],
    ['POST', '/api/v1/templates/hello/preview'],
    ['POST', '/api/v1/contacts/import'],
    ['POST', '/api/v1/journeys/none/trigger'],
    ['PUT', `/api/v1/images/${uid('img')}`],
  ];
  // Breaks at line 3, column 8 (the comma): a value is missing after the colon.
  const broken = '{\n  "channel": "email",\n  "x": ,\n}';
  for (const [method, pathname] of routes) {
    const r = await request(`${server.url}${pathname}`, {
      method,
      headers: { Authorization: `Bearer ${ws.adminKey}`, 'Content-Type': 'application/json' },
      body: broken,
    });
    assert.equal(r.status, 400, `${method} ${pathname}: ${r.text}`);
    assert.equal(r.json.line, 3, `${method} ${pathname}: ${r.text}`);
    assert.equal(r.json.column, 8, `${method} ${pathname}: ${r.text}`);
    assert.match(r.json.error, /^request body:3:8: malformed JSON/, `${method} ${pathname}`);
  }
  // A document that is not an object says what it is.
  const r = await ws.admin('POST', '/api/v1/suppressions', { body: ['x'] });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error, /must be a JSON object, not array/);
  // A query parameter with a value the API does not know is named too.
  const fax = await ws.admin('GET', '/api/v1/suppressions?channel=fax');
  assert.equal(fax.status, 400, fax.text);
  assert.equal(fax.json.field, 'channel');
  await healthy();
});

test('data nested thousands deep is refused with where it gets too deep, and the server stays up', async () => {
  const raw = async (method, pathname, body, type = 'application/json') => request(`${server.url}${pathname}`, {
    method, body, headers: { Authorization: `Bearer ${ws.adminKey}`, 'Content-Type': type },
  });
  const deep = (n) => '['.repeat(n) + ']'.repeat(n);
  // A preview's context and an import's traits: rendering such data used to take the stack.
  const preview = await raw('POST', '/api/v1/templates/hello/preview', `{"context":{"contact":${deep(50000)}}}`);
  assert.equal(preview.status, 400, preview.text);
  assert.match(preview.json.error, /nested more than 64 deep/);
  assert.equal(preview.json.line, 1);
  assert.equal(preview.json.column, 22 + 63); // two objects, then the 63rd bracket is level 65
  const imp = await raw('POST', '/api/v1/contacts/import',
    `{"import_id":"${uid('imp')}","contacts":[{"email":"deep@example.com","traits":{"x":${deep(50000)}}}]}`);
  assert.equal(imp.status, 400, imp.text);
  assert.match(imp.json.error, /nested more than 64 deep/);
  // Brackets inside strings are text, not nesting.
  const text = await raw('POST', '/api/v1/templates/hello/preview',
    JSON.stringify({ context: { contact: { traits: { note: '['.repeat(5000) } } } }));
  assert.equal(text.status, 200, text.text);
  await healthy();
  // A condition nested thousands deep: parentheses, not, a chain of +.
  for (const condition of ['('.repeat(3000) + 'true' + ')'.repeat(3000), 'not '.repeat(15000) + 'true',
    'traits.a' + ' + 1'.repeat(10000) + ' > 3']) {
    const r = await ws.admin('POST', '/api/v1/segments/preview', { body: { condition } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /nested more than 100 levels deep/);
    const put = await raw('PUT', `/api/v1/segments/${uid('deep')}`, `name: Deep\ncondition: "${condition}"\n`, 'application/yaml');
    assert.equal(put.status, 400, put.text);
    await healthy();
  }
});

test('ids are taken from the path as written: %2F is part of one id, %00 is refused', async () => {
  assert.equal((await ws.send('/v1/identify', { userId: 'org/42', traits: { plan: 'pro' } })).status, 200);
  assert.equal((await ws.send('/v1/identify', { userId: 'victim', traits: { email: 'v@example.com' } })).status, 200);
  const got = await ws.admin('GET', '/api/v1/contacts/org%2F42');
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.user_id, 'org/42');
  // Cut at %00, this named (and erased) the contact "victim".
  const cut = await ws.admin('DELETE', '/api/v1/contacts/victim%00someone-else');
  assert.equal(cut.status, 400, cut.text);
  assert.match(cut.json.error, /%00/);
  assert.equal((await ws.admin('GET', '/api/v1/contacts/victim')).status, 200, 'victim is still there');
  const erased = await ws.admin('DELETE', '/api/v1/contacts/org%2F42');
  assert.equal(erased.status, 200, erased.text);
  assert.equal((await ws.admin('GET', '/api/v1/contacts/org%2F42')).status, 404);
  // A suppressed address with a '/' (valid in an email's local part) can be lifted.
  const add = await ws.admin('POST', '/api/v1/suppressions', { body: { channel: 'email', address: 'a/b@example.com' } });
  assert.ok(add.status === 200 || add.status === 201, add.text);
  const lift = await ws.admin('DELETE', '/api/v1/suppressions/email/a%2Fb@example.com');
  assert.equal(lift.status, 200, lift.text);
  await healthy();
});
