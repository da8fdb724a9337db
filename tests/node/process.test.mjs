// The server process: `nudge serve` re-executes itself once at launch so that glibc's malloc
// puts contact state on transparent huge pages (docs/configuration.md, NUDGE_HUGE_PAGES). The
// process keeps its id (what supervisors and the crash tests signal), keeps the caller's other
// glibc tunables, and stays on small pages when told to or when the caller chose otherwise.
// /metrics says which (nudge_huge_pages_requested).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { NudgeServer } from './lib/server.mjs';

async function gauge(server, name) {
  const r = await fetch(`${server.url}/metrics`);
  assert.equal(r.status, 200);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await r.text());
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

async function withServer(env, fn) {
  const server = new NudgeServer({ env });
  try {
    await server.start();
    const pid = server.proc.pid;
    await fn(server, pid);
    const { code } = await server.stop();
    assert.equal(code, 0, server.log);
  } finally {
    await server.dispose();
  }
}

describe('nudge serve process', () => {
  test('asks for huge pages once, under the process id it was started with', async () => {
    await withServer({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }, async (server, pid) => {
      assert.equal(await gauge(server, 'nudge_huge_pages_requested'), 1);
      assert.ok((await gauge(server, 'nudge_anon_huge_page_bytes')) >= 0);
      // The process spawned is the one serving, still `nudge serve`.
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
      assert.equal(cmdline[1], 'serve');
      // ... and named as before (ps, top, pgrep), not after /proc/self/exe.
      const comm = fs.readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
      assert.equal(comm, path.basename(server.bin).slice(0, 15));
      const r = await fetch(`${server.url}/healthz`);
      assert.equal(r.status, 200);
    });
  });

  test('NUDGE_HUGE_PAGES=0 keeps small pages', async () => {
    await withServer({ NUDGE_HUGE_PAGES: '0', GLIBC_TUNABLES: '' }, async (server) => {
      assert.equal(await gauge(server, 'nudge_huge_pages_requested'), 0);
    });
  });

  test('a choice the caller made in GLIBC_TUNABLES is kept', async () => {
    await withServer({ GLIBC_TUNABLES: 'glibc.malloc.hugetlb=0' }, async (server) => {
      assert.equal(await gauge(server, 'nudge_huge_pages_requested'), 0);
    });
  });
});

describe('one server per data directory', () => {
  test('a second nudge serve on the same data directory stops at start, naming the first', async () => {
    const { spawnSync } = await import('node:child_process');
    await withServer({}, async (server, pid) => {
      const second = spawnSync(server.bin, ['serve', '--listen', '127.0.0.1:0', '--data', server.dataDir], {
        encoding: 'utf8', timeout: 20000, env: { ...process.env, NUDGE_LOG_LEVEL: 'info' },
      });
      assert.equal(second.status, 1, second.stdout + second.stderr);
      assert.match(second.stdout + second.stderr, new RegExp(`another nudge serve \\(pid ${pid}\\) is using the data directory`));
      // The first one serves on, alone.
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    });
  });
});
