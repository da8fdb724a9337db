// A recording SMTP relay for the email transport's end-to-end tests (tests/email/), built on
// Nodemailer's smtp-server and mailparser.
//
// Usage: node relay.mjs '<json config>'
//   {
//     "dir": "/tmp/x",              // where received messages and stats.json are written
//     "port": 0,                    // 0 = any free port; the port is printed as {"port": N}
//     "secure": false,              // implicit TLS from the first byte
//     "starttls": false,            // offer STARTTLS
//     "key": "key.pem", "cert": "cert.pem",
//     "auth": { "user": "u", "pass": "p", "methods": ["PLAIN", "LOGIN"] },   // require AUTH
//     "size": 0,                    // advertise SIZE (and refuse larger messages)
//     "delay_ms": { "slow.test": 200 },   // wait this long before answering the final dot
//     "rules": { "flaky@x.test": { "code": 421, "times": 2, "message": "try later" } }
//   }
// A rule answers RCPT for that recipient with `code` the first `times` times (always when
// times is absent); 421 also closes the connection.
//
// For each accepted message N (numbered in the order the relay answers 250), N.eml holds the
// raw bytes and N.json what mailparser made of them plus the session (id, TLS, AUTH user and
// method). stats.json counts sessions, RCPT attempts per recipient, messages being received
// at once per recipient domain (the most seen), and the order of recipients. Every file is
// written before the 250 is sent, so a client that has its 250 can read them.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { SMTPServer } = require('smtp-server');
const { simpleParser } = require('mailparser');

const config = JSON.parse(process.argv[2]);
const dir = config.dir;
fs.mkdirSync(dir, { recursive: true });

let seq = 0;
const stats = { sessions: 0, received: 0, attempts: {}, in_flight: {}, max_in_flight: {}, order: [] };

function writeJson(file, value) {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 1));
  fs.renameSync(tmp, file);
}
const writeStats = () => writeJson(path.join(dir, 'stats.json'), stats);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const refuse = (code, message) => Object.assign(new Error(message), { responseCode: code });

const tls = config.secure || config.starttls;
const disabled = [];
if (!tls) disabled.push('STARTTLS');
if (!config.auth) disabled.push('AUTH');

const server = new SMTPServer({
  secure: !!config.secure,
  key: tls ? fs.readFileSync(config.key) : undefined,
  cert: tls ? fs.readFileSync(config.cert) : undefined,
  name: 'relay.test',
  logger: false,
  disabledCommands: disabled,
  authMethods: config.auth?.methods ?? ['PLAIN', 'LOGIN'],
  authOptional: !config.auth,
  allowInsecureAuth: true,
  size: config.size || 0,
  onConnect(session, callback) {
    stats.sessions += 1;
    writeStats();
    callback();
  },
  onAuth(auth, session, callback) {
    if (auth.username === config.auth.user && auth.password === config.auth.pass) {
      return callback(null, { user: { name: auth.username, method: auth.method } });
    }
    return callback(refuse(535, 'Authentication failed'));
  },
  onRcptTo(address, session, callback) {
    const rcpt = address.address.toLowerCase();
    stats.attempts[rcpt] = (stats.attempts[rcpt] || 0) + 1;
    writeStats();
    const rule = config.rules?.[rcpt];
    if (rule && (rule.times === undefined || stats.attempts[rcpt] <= rule.times)) {
      return callback(refuse(rule.code, rule.message || `rule for ${rcpt}`));
    }
    return callback();
  },
  onData(stream, session, callback) {
    const rcpt = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
    const domain = rcpt[0].split('@')[1];
    stats.in_flight[domain] = (stats.in_flight[domain] || 0) + 1;
    stats.max_in_flight[domain] = Math.max(stats.max_in_flight[domain] || 0, stats.in_flight[domain]);
    const chunks = [];
    stream.on('data', (chunk) => chunks.push(chunk));
    stream.on('end', async () => {
      try {
        const raw = Buffer.concat(chunks);
        if (stream.sizeExceeded) {
          stats.in_flight[domain] -= 1;
          return callback(refuse(552, 'message exceeds the size limit'));
        }
        const delay = config.delay_ms?.[domain] || 0;
        if (delay) await sleep(delay);
        const parsed = await simpleParser(raw);
        stats.in_flight[domain] -= 1;
        const n = ++seq;
        const header = (name) => parsed.headerLines.find((h) => h.key === name)?.line ?? null;
        fs.writeFileSync(path.join(dir, `${n}.eml`), raw);
        writeJson(path.join(dir, `${n}.json`), {
          seq: n,
          session: session.id,
          secure: !!session.secure,
          user: session.user?.name ?? null,
          auth_method: session.user?.method ?? null,
          mail_from: session.envelope.mailFrom.address,
          rcpt_to: rcpt,
          subject: parsed.subject ?? null,
          from: parsed.from?.value ?? [],
          to: parsed.to?.value ?? [],
          reply_to: parsed.replyTo?.value ?? [],
          message_id: parsed.messageId ?? null,
          date: parsed.date ? parsed.date.toISOString() : null,
          text: parsed.text ?? null,
          html: parsed.html || null,
          list_unsubscribe: header('list-unsubscribe'),
          list_unsubscribe_post: header('list-unsubscribe-post'),
          feedback_id: header('feedback-id'),
          content_type: parsed.headers.get('content-type')?.value ?? null,
          size: raw.length,
        });
        stats.received += 1;
        stats.order.push(rcpt[0]);
        writeStats();
        return callback(null, `Ok: queued as Q${n}`);
      } catch (err) {
        return callback(refuse(451, `relay error: ${err.message}`));
      }
    });
  },
});

server.on('error', (err) => {
  if (err.code !== 'ECONNRESET') console.error(`relay: ${err.message}`);
});
writeStats();
server.listen(config.port || 0, '127.0.0.1', () => {
  console.log(JSON.stringify({ port: server.server.address().port }));
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
