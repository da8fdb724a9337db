// A developer points the SDKs they already use at nudge: @segment/analytics-node (JSON bodies,
// writeKey in the body) and @rudderstack/rudder-sdk-node (gzip bodies, Basic auth). Everything
// they send is read back through the admin API the way a user would check it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

import { NudgeServer, uid } from './lib/server.mjs';

const CAMPAIGN = {
  source: 'newsletter',
  medium: 'email',
  name: 'spring_sale',
  term: 'shoes',
  content: 'banner',
};
const IP = '203.0.113.7';
const USER_AGENT = 'Mozilla/5.0 (X11; Linux x86_64) nudge-e2e/1.0';

function byMessageId(events) {
  return new Map(events.map((e) => [e.message_id, e]));
}

function assertRecent(iso, what) {
  const t = Date.parse(iso);
  assert.ok(Number.isFinite(t), `${what}: '${iso}' is not a timestamp`);
  assert.ok(Math.abs(Date.now() - t) < 10 * 60_000, `${what}: ${iso} is not within 10 minutes of now`);
}

describe('@segment/analytics-node against nudge', { timeout: 60_000 }, () => {
  let server;
  let analytics;
  const errors = [];

  before(async () => {
    server = await new NudgeServer().start();
    analytics = new Analytics({
      writeKey: server.writeKey,
      host: server.url, // the SDK posts to new URL('/v1/batch', host)
      flushAt: 20,
      flushInterval: 30_000, // batches leave on flush() and closeAndFlush() below
      maxRetries: 0,
      httpRequestTimeout: 10_000,
    });
    analytics.on('error', (e) => errors.push(e));
  });

  after(async () => {
    await analytics?.closeAndFlush({ timeout: 5000 });
    await server?.dispose();
  });

  // Flushes the calls just made and resolves with their events once all are acknowledged.
  async function flushed(calls) {
    await analytics.flush({ timeout: 20_000 });
    return Promise.all(calls);
  }

  // Sends one call and resolves with its delivered context (messageId and all) once the
  // server acknowledged the batch holding it.
  function call(method, message) {
    return new Promise((resolve, reject) => {
      analytics[method](message, (err, ctx) => (err ? reject(err) : resolve(ctx.event)));
    });
  }

  test('an anonymous visitor who signs up, buys and joins a company ends as one contact', async () => {
    const anon = uid('anon');
    const otherDevice = uid('anon-phone');
    const user = uid('user');
    const pastTimestamp = new Date(Date.now() - 3 * 3600_000); // happened three hours ago

    // Phase 1: the visitor browses anonymously, on two devices.
    const phase1 = await flushed([
      call('page', {
        anonymousId: anon,
        name: 'Pricing',
        properties: { plan_shown: 'pro' },
        context: {
          ip: IP,
          userAgent: USER_AGENT,
          campaign: CAMPAIGN,
          page: {
            path: '/pricing',
            url: 'https://shop.example/pricing?utm_source=newsletter',
            title: 'Pricing - Shop',
            referrer: 'https://search.example/?q=shop',
            search: '?utm_source=newsletter',
          },
        },
      }),
      call('track', {
        anonymousId: anon,
        event: 'Product Viewed',
        properties: { sku: 'SKU-1', price: 19.99 },
        timestamp: pastTimestamp,
      }),
      call('track', { anonymousId: otherDevice, event: 'App Opened', properties: { build: 42 } }),
    ]);

    // Phase 2: they sign up; traits come with messy email and phone formats.
    const phase2 = await flushed([
      call('identify', {
        userId: user,
        anonymousId: anon,
        traits: {
          email: '  Jane.Doe@ExAmple.COM ',
          phone: '(415) 555-2671',
          plan: 'trial',
          nickname: 'jd',
          first_name: 'Jane',
        },
      }),
      call('track', {
        userId: user,
        event: 'Order Completed',
        properties: {
          order_id: 'o-1001',
          revenue: 42.5,
          currency: 'EUR',
          products: [{ sku: 'SKU-1', quantity: 2, price: 21.25 }],
          coupon: null,
        },
        context: { ip: IP, userAgent: USER_AGENT, campaign: CAMPAIGN, locale: 'de-DE' },
      }),
      call('group', { userId: user, groupId: 'acme', traits: { name: 'Acme Inc', employees: 120 } }),
    ]);

    // Phase 3: a trait is removed (null) and another changes; the phone app is tied to the user.
    const pending = [
      call('identify', { userId: user, traits: { nickname: null, plan: 'pro' } }),
      call('alias', { previousId: otherDevice, userId: user }),
    ];
    await analytics.closeAndFlush({ timeout: 20_000 });
    const phase3 = await Promise.all(pending);
    assert.deepEqual(errors, []);

    const contact = await server.contact(user);
    assert.equal(contact.user_id, user);
    assert.deepEqual([...contact.anonymous_ids].sort(), [anon, otherDevice].sort());
    // Normalized, beside the originals.
    assert.equal(contact.email, 'Jane.Doe@example.com');
    assert.equal(contact.phone, '+14155552671');
    assert.equal(contact.traits.email, '  Jane.Doe@ExAmple.COM ');
    assert.equal(contact.traits.phone, '(415) 555-2671');
    assert.equal(contact.traits.plan, 'pro');
    assert.equal(contact.traits.first_name, 'Jane');
    assert.ok(
      !('nickname' in contact.traits),
      `nickname should be removed: ${JSON.stringify(contact.traits)}`,
    );

    // Every key that names the person leads to the same contact.
    for (const key of [anon, otherDevice, 'jane.doe@EXAMPLE.com', '+14155552671']) {
      const c = await server.contact(key);
      assert.equal(c.id, contact.id, `GET /api/v1/contacts/${key}`);
    }

    // All eight calls are on this contact, each exactly once, newest first.
    const sent = [...phase1, ...phase2, ...phase3];
    const events = await server.events(user);
    assert.equal(events.length, sent.length);
    assert.deepEqual(events.map((e) => e.message_id).sort(), sent.map((e) => e.messageId).sort());
    for (let i = 1; i < events.length; i++) {
      assert.ok(events[i - 1].timestamp >= events[i].timestamp, 'events are listed newest first');
    }
    const ws = await server.get('/api/v1/workspace');
    assert.deepEqual({ contacts: ws.contacts, events: ws.events }, { contacts: 1, events: sent.length });

    const got = byMessageId(events);
    const [page, viewed, opened] = phase1.map((e) => got.get(e.messageId));
    const [identify, order, group] = phase2.map((e) => got.get(e.messageId));
    const [unset, alias] = phase3.map((e) => got.get(e.messageId));

    // The page view: stored as "Page Viewed", its properties completed from context.page.
    assert.equal(page.type, 'page');
    assert.equal(page.event, 'Page Viewed');
    assert.equal(page.anonymous_id, anon);
    assert.equal(page.properties.name, 'Pricing');
    assert.equal(page.properties.plan_shown, 'pro');
    assert.equal(page.properties.path, '/pricing');
    assert.equal(page.properties.url, 'https://shop.example/pricing?utm_source=newsletter');
    assert.equal(page.properties.title, 'Pricing - Shop');
    assert.equal(page.properties.referrer, 'https://search.example/?q=shop');
    assert.equal(page.context.ip, IP);
    assert.equal(page.context.userAgent, USER_AGENT);
    assert.deepEqual(page.context.campaign, CAMPAIGN);
    assert.equal(page.context.page.path, '/pricing');

    // Anonymous history keeps its anonymous id and its own time.
    assert.equal(viewed.event, 'Product Viewed');
    assert.equal(viewed.anonymous_id, anon);
    assert.deepEqual(viewed.properties, { sku: 'SKU-1', price: 19.99 });
    const skew = Math.abs(Date.parse(viewed.timestamp) - pastTimestamp.getTime());
    assert.ok(skew < 60_000, `a past timestamp is kept (off by ${skew} ms)`);
    assert.equal(opened.event, 'App Opened');
    assert.equal(opened.anonymous_id, otherDevice);

    assert.equal(identify.type, 'identify');
    assert.equal(identify.user_id, user);
    assert.equal(identify.traits.email, '  Jane.Doe@ExAmple.COM ');

    // Properties and context exactly as sent (the SDK adds its library to context).
    assert.equal(order.type, 'track');
    assert.equal(order.event, 'Order Completed');
    assert.deepEqual(order.properties, {
      order_id: 'o-1001',
      revenue: 42.5,
      currency: 'EUR',
      products: [{ sku: 'SKU-1', quantity: 2, price: 21.25 }],
      coupon: null,
    });
    assert.equal(order.context.ip, IP);
    assert.equal(order.context.userAgent, USER_AGENT);
    assert.equal(order.context.locale, 'de-DE');
    assert.deepEqual(order.context.campaign, CAMPAIGN);
    assert.equal(order.context.library?.name, '@segment/analytics-node');
    assertRecent(order.timestamp, 'order.timestamp');
    assertRecent(order.received_at, 'order.received_at');

    assert.equal(group.type, 'group');
    assert.equal(group.group_id, 'acme');
    assert.deepEqual(group.traits, { name: 'Acme Inc', employees: 120 });
    assert.equal(unset.type, 'identify');
    assert.equal(alias.type, 'alias');
    assert.equal(alias.previous_id, otherDevice);
  });
});

describe('@rudderstack/rudder-sdk-node against nudge (gzip bodies)', { timeout: 60_000 }, () => {
  let server;
  let client;
  const wire = [];

  before(async () => {
    server = await new NudgeServer().start();
    client = new RudderAnalytics(server.writeKey, {
      dataPlaneUrl: server.url, // posts to `${dataPlaneUrl}/v1/batch`
      flushAt: 50,
      flushInterval: 60_000, // only explicit flushes
      retryCount: 0,
      logLevel: 'error',
      axiosConfig: { proxy: false, timeout: 10_000 },
    });
    // Record what goes over the wire, to be sure the bodies really are gzip.
    client.axiosInstance.interceptors.request.use((config) => {
      const body = config.data;
      wire.push({
        url: config.url,
        encoding: config.headers?.['Content-Encoding'] ?? config.headers?.get?.('Content-Encoding'),
        gzipMagic: Buffer.isBuffer(body) && body[0] === 0x1f && body[1] === 0x8b,
      });
      return config;
    });
  });

  after(async () => {
    await server?.dispose();
  });

  test('gzip batches: identify, track, page, screen, group and alias land on the right contacts', async () => {
    const anon = uid('r-anon');
    const user = uid('r-user');
    const oldLogin = uid('r-old-login');
    const bystander = uid('r-bystander');
    const ids = {};
    const mid = (name) => (ids[name] = uid(name));

    // The SDK sends its first call at once and queues the rest until flush().
    client.page({
      anonymousId: anon,
      messageId: mid('page'),
      name: 'Docs',
      category: 'Help',
      context: {
        ip: IP,
        userAgent: USER_AGENT,
        campaign: CAMPAIGN,
        page: { path: '/docs/start', url: 'https://shop.example/docs/start', title: 'Start' },
      },
    });
    client.track({
      anonymousId: anon,
      messageId: mid('download'),
      event: 'Whitepaper Downloaded',
      properties: { title: 'Journeys 101', pages: 12 },
      context: { ip: IP, campaign: CAMPAIGN },
    });
    client.screen({
      anonymousId: anon,
      messageId: mid('screen'),
      name: 'Settings',
      properties: { tab: 'privacy' },
    });
    client.identify({ userId: oldLogin, messageId: mid('old'), traits: { legacy: true, plan: 'free' } });
    client.track({ userId: bystander, messageId: mid('bystander'), event: 'Logged In' });
    await client.flush();

    // The visitor signs up: alias ties the anonymous id to the new user id, a second alias
    // folds the old login's contact in, then traits arrive.
    client.alias({ previousId: anon, userId: user, messageId: mid('alias') });
    client.alias({ previousId: oldLogin, userId: user, messageId: mid('alias-old') });
    client.identify({
      userId: user,
      messageId: mid('identify'),
      traits: {
        email: 'Bob.Smith@Example.ORG  ',
        phone: '030 1234567',
        country: 'DE',
        plan: 'trial',
        temp: 'x',
      },
    });
    client.group({
      userId: user,
      messageId: mid('group'),
      groupId: 'globex',
      traits: { industry: 'energy' },
    });
    await client.flush();

    client.identify({ userId: user, messageId: mid('identify-2'), traits: { temp: null, plan: 'pro' } });
    client.track({
      userId: user,
      messageId: mid('order'),
      event: 'Order Completed',
      properties: { order_id: 'r-77', revenue: 99.9, currency: 'USD' },
      context: { ip: IP, userAgent: USER_AGENT, campaign: CAMPAIGN },
    });
    await client.flush();

    const contact = await server.contact(user);
    assert.equal(contact.user_id, user);
    assert.ok(contact.anonymous_ids.includes(anon), `anonymous_ids ${JSON.stringify(contact.anonymous_ids)}`);
    assert.ok(contact.aliases.includes(oldLogin), `aliases ${JSON.stringify(contact.aliases)}`);
    assert.equal(contact.email, 'Bob.Smith@example.org');
    assert.equal(contact.phone, '+49301234567');
    assert.equal(contact.traits.email, 'Bob.Smith@Example.ORG  ');
    assert.equal(contact.traits.phone, '030 1234567');
    assert.equal(contact.traits.plan, 'pro');
    assert.equal(contact.traits.legacy, true, "the old login contact's traits fill the gaps");
    assert.ok(!('temp' in contact.traits));
    for (const key of [anon, oldLogin, 'bob.smith@example.org', '+49301234567']) {
      assert.equal((await server.contact(key)).id, contact.id, `GET /api/v1/contacts/${key}`);
    }

    const events = await server.events(user);
    const expected = Object.entries(ids).filter(([name]) => name !== 'bystander');
    assert.equal(events.length, expected.length);
    assert.deepEqual(events.map((e) => e.message_id).sort(), expected.map(([, id]) => id).sort());
    const got = byMessageId(events);
    const ev = (name) => got.get(ids[name]);

    assert.equal(ev('page').event, 'Page Viewed');
    assert.equal(ev('page').properties.path, '/docs/start');
    assert.equal(ev('page').properties.name, 'Docs');
    assert.equal(ev('page').properties.title, 'Start');
    assert.equal(ev('page').anonymous_id, anon);
    assert.deepEqual(ev('page').context.campaign, CAMPAIGN);
    assert.equal(ev('page').context.userAgent, USER_AGENT);
    assert.equal(ev('screen').type, 'screen');
    assert.equal(ev('screen').event, 'Screen Viewed');
    assert.equal(ev('screen').properties.tab, 'privacy');
    assert.equal(ev('download').event, 'Whitepaper Downloaded');
    assert.deepEqual(ev('download').properties, { title: 'Journeys 101', pages: 12 });
    assert.equal(ev('download').context.ip, IP);
    assert.equal(ev('old').type, 'identify');
    assert.equal(ev('old').user_id, oldLogin);
    assert.equal(ev('alias').previous_id, anon);
    assert.equal(ev('group').group_id, 'globex');
    assert.deepEqual(ev('order').properties, { order_id: 'r-77', revenue: 99.9, currency: 'USD' });
    assert.equal(ev('order').context.ip, IP);
    assert.equal(ev('order').context.userAgent, USER_AGENT);
    assert.deepEqual(ev('order').context.campaign, CAMPAIGN);
    assert.equal(ev('order').context.library?.name, 'analytics-node');
    assertRecent(ev('order').timestamp, 'order.timestamp');

    // Someone else's event stays theirs.
    const other = await server.events(bystander);
    assert.deepEqual(
      other.map((e) => e.message_id),
      [ids.bystander],
    );
    const ws = await server.get('/api/v1/workspace');
    assert.deepEqual(
      { contacts: ws.contacts, events: ws.events },
      { contacts: 2, events: Object.keys(ids).length },
    );

    // The bodies really were gzip, posted to /v1/batch.
    assert.ok(wire.length >= 3, `requests seen: ${JSON.stringify(wire)}`);
    for (const w of wire) {
      assert.equal(w.url, `${server.url}/v1/batch`);
      assert.equal(w.encoding, 'gzip');
      assert.ok(w.gzipMagic, 'the body starts with the gzip magic bytes');
    }
    const m = await server.metrics();
    assert.equal(m.get('nudge_events_accepted_total'), Object.keys(ids).length);
  });
});
