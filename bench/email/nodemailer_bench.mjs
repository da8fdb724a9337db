// The reference for bench/email/run.sh: the same personalized messages as email_bench, sent
// with nodemailer's pooled SMTP transport (nodemailer builds the MIME itself, as BuildMessage
// does for nudge), at most --window outstanding. Prints one JSON object like email_bench.
//
// Usage: node nodemailer_bench.mjs --port N [--count 100000] [--pool 8] [--window 64]
//                                  [--dkim key.pem] [--label nodemailer]
//                                  [--modules DIR/package.json]
// --modules: the package whose node_modules hold nodemailer (default tests/node/package.json;
// bench/delivery.sh passes bench/delivery/package.json).
import { createRequire } from 'node:module';
import fs from 'node:fs';

const args = {
  host: '127.0.0.1', port: 0, count: 100000, pool: 8, window: 64, dkim: '', label: 'nodemailer',
  modules: new URL('../../tests/node/package.json', import.meta.url).pathname,
};
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--/, '');
  const value = process.argv[i + 1];
  args[key] = typeof args[key] === 'number' ? Number(value) : value;
}
const require = createRequire(args.modules);
const nodemailer = require('nodemailer');

const FIRST = ['Anna', 'Jürgen', 'Sofia', 'Liam', 'Mei', 'Olivia', 'Noah', 'Zoë', 'Mateo', 'Aiko',
  'Chloé', 'Ivan', 'Priya', 'Lucas', 'Emma', 'Björn', 'Fatma', 'Hiroshi', 'Elena', 'Tomás'];
const LAST = ['Schmidt', 'García', 'Rossi', 'Nguyen', 'Müller', 'Smith', 'Kowalski', 'Dubois',
  'Tanaka', 'Silva', 'Novák', 'Jensen'];
const TOPICS = ['integrations', 'pricing', 'webinar', 'case study', 'release notes'];

function body(first, topic, i, html) {
  let out = '';
  const link = `https://acme.test/r/${(i * 7919) % 1000003}/`;
  for (let p = 0; p < 6; p++) {
    const para = `Hi ${first}, here is paragraph ${p + 1} about our ${topic}: teams like yours cut ` +
      'their onboarding time in half last quarter, and we picked three stories you might like.';
    out += html
      ? `<p style="font-family:Arial,sans-serif;font-size:15px;line-height:22px">${para} <a href="${link}${p}">Read more</a></p>\n`
      : `${para}\n${link}${p}\n\n`;
  }
  return out;
}

function personalized(i) {
  const first = FIRST[i % 20];
  const last = LAST[Math.floor(i / 20) % 12];
  const topic = TOPICS[i % 5];
  const token = String((1000000007n * BigInt(i + 1)) % 998244353n);
  return {
    from: '"Acme" <hello@acme.test>',
    to: { name: `${first} ${last}`, address: `user${i}@example${i % 50}.test` },
    subject: `${first}, your ${topic} picks for this week (#${i})`,
    text: `${body(first, topic, i, false)}\nAcme Inc, 1 Main St, Springfield\n`,
    html: `<html><body><div style="display:none">Three stories picked for ${first}</div>${body(first, topic, i, true)}` +
      '<p style="color:#888">Acme Inc, 1 Main St, Springfield</p></body></html>',
    messageId: `<b${i}.${token}@acme.test>`,
    envelope: { from: 'bounce@acme.test', to: `user${i}@example${i % 50}.test` },
    list: { unsubscribe: [`https://acme.test/u/${token}`, `mailto:unsubscribe+${token}@acme.test`] },
    headers: { 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click', 'Feedback-ID': 'digest:journey-7:acme' },
  };
}

const transport = nodemailer.createTransport({
  pool: true,
  host: args.host,
  port: args.port,
  secure: false,
  ignoreTLS: true,
  maxConnections: args.pool,
  maxMessages: Infinity,
  name: 'bench.acme.test',
  ...(args.dkim ? { dkim: { domainName: 'acme.test', keySelector: 's1', privateKey: fs.readFileSync(args.dkim, 'utf8') } } : {}),
});

const latencies = new Float64Array(args.count);
let sent = 0;
let failed = 0;
let firstError = null;
let next = 0;
const start = process.hrtime.bigint();

await new Promise((resolve) => {
  let outstanding = 0;
  const pump = () => {
    while (outstanding < args.window && next < args.count) {
      const i = next++;
      outstanding++;
      const submitted = process.hrtime.bigint();
      transport.sendMail(personalized(i), (err) => {
        latencies[i] = Number(process.hrtime.bigint() - submitted) / 1e6;
        if (err) {
          failed++;
          firstError ??= err.message;
        } else {
          sent++;
        }
        outstanding--;
        if (sent + failed === args.count) resolve();
        else pump();
      });
    }
  };
  pump();
});
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
transport.close();

const sorted = Array.from(latencies).sort((a, b) => a - b);
const pct = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
console.log(JSON.stringify({
  label: args.label,
  nodemailer_version: require('nodemailer/package.json').version,
  messages: args.count,
  sent,
  failed,
  seconds: Number(seconds.toFixed(3)),
  messages_per_second: Math.round(args.count / seconds),
  latency_ms: { p50: Number(pct(0.5).toFixed(2)), p99: Number(pct(0.99).toFixed(2)), max: Number(sorted[sorted.length - 1].toFixed(2)) },
  peak_rss_mb: Number((process.resourceUsage().maxRSS / 1024).toFixed(1)),
  pool: args.pool,
  window: args.window,
  dkim: !!args.dkim,
  ...(firstError ? { first_error: firstError } : {}),
}));
process.exit(failed === 0 ? 0 : 1);
