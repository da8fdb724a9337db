// The relay of bench/delivery.sh: an SMTP server (Node's smtp-server) on 127.0.0.1 that accepts
// every message, discards it, and notes when it arrived. Started by delivery.mjs with fork();
// it answers over the IPC channel:
//   {cmd: 'stats'}             -> {messages, bytes, last_arrival_ns, cpu_ms, connections,
//                                  recorded, distinct_recipients, last_new_recipient_ns}
//   {cmd: 'record'}            -> starts a fresh record of arrivals (recipient, time,
//                                  Message-ID); {ok}
//   {cmd: 'arrivals'}          -> {arrivals: [[recipient, ns], ...], duplicates,
//                                  duplicate_examples: [{recipient, message_ids, ms_apart}]}
// Times are process.hrtime.bigint() values (CLOCK_MONOTONIC, the same clock in every process
// of the machine), sent as strings. "Arrived" = the end of DATA was read, just before the 250.
//
// Usage (from delivery.mjs): fork('sink.mjs', ['--port', '0']); the first IPC message is
// {port}. The process ends when its parent goes away.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { SMTPServer } = require('smtp-server');

const portArg = process.argv.indexOf('--port');
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;

let messages = 0;
let bytes = 0;
let lastArrival = 0n;
let connections = 0;
let recording = false;
let recipients = [];
let times = [];
let messageIds = [];
let distinct = new Set();
let lastNewRecipient = 0n;

const server = new SMTPServer({
  name: 'sink.bench.test',
  authOptional: true,
  disabledCommands: ['STARTTLS', 'AUTH'],
  logger: false,
  size: 0,
  onConnect(session, callback) {
    connections++;
    callback();
  },
  onData(stream, session, callback) {
    let size = 0;
    let head = '';
    stream.on('data', (chunk) => {
      size += chunk.length;
      if (recording && head.length < 8192) head += chunk.toString('latin1');
    });
    stream.on('end', () => {
      const now = process.hrtime.bigint();
      messages++;
      bytes += size;
      lastArrival = now;
      if (recording) {
        const id = /^message-id:\s*(\S+)/im.exec(head.split(/\r?\n\r?\n/, 1)[0]);
        for (const r of session.envelope.rcptTo) {
          const address = r.address.toLowerCase();
          if (!distinct.has(address)) {
            distinct.add(address);
            lastNewRecipient = now;
          }
          recipients.push(address);
          times.push(now);
          messageIds.push(id ? id[1] : '');
        }
      }
      callback(null, 'queued by the bench sink');
    });
  },
});
server.on('error', (err) => {
  process.send?.({ error: String(err.message || err) });
});

process.on('message', (m) => {
  if (m.cmd === 'stats') {
    const cpu = process.cpuUsage();
    process.send({
      messages,
      bytes,
      last_arrival_ns: String(lastArrival),
      cpu_ms: (cpu.user + cpu.system) / 1000,
      connections,
      recorded: recipients.length,
      distinct_recipients: distinct.size,
      last_new_recipient_ns: String(lastNewRecipient),
    });
  } else if (m.cmd === 'record') {
    recording = true;
    recipients = [];
    times = [];
    messageIds = [];
    distinct = new Set();
    lastNewRecipient = 0n;
    process.send({ ok: true });
  } else if (m.cmd === 'arrivals') {
    // A recipient seen twice: both arrivals, with their Message-IDs (the same one twice is a
    // resend; two different ones are two messages).
    const first = new Map();
    let duplicates = 0;
    const examples = [];
    const arrivals = recipients.map((r, i) => {
      if (first.has(r)) {
        duplicates++;
        const j = first.get(r);
        if (examples.length < 10) {
          examples.push({ recipient: r, message_ids: [messageIds[j], messageIds[i]],
            ms_apart: Number(times[i] - times[j]) / 1e6 });
        }
      } else {
        first.set(r, i);
      }
      return [r, String(times[i])];
    });
    process.send({ arrivals, duplicates, duplicate_examples: examples });
  }
});
process.on('disconnect', () => process.exit(0));

server.listen(port, '127.0.0.1', () => {
  process.send({ port: server.server.address().port });
});
