// LiquidJS's side of bench/liquid/run.sh: the same cases, the same measurements as
// liquid_bench (parses/s, then renders/s of pre-parsed templates with pre-built contexts, each
// for SECONDS seconds), the first render of each case written to OUT.jsonl.
//
// Usage: node bench.mjs SECONDS OUT.jsonl FILE.jsonl...
import { readFileSync, writeFileSync } from 'node:fs';
import { Liquid } from 'liquidjs';

const [seconds, outFile, ...files] = process.argv.slice(2);
const limit = Number(seconds) * 1e9;
const cases = [];
let skipped = 0;
for (const f of files) {
  for (const line of readFileSync(f, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const c = JSON.parse(line);
    // Partials from the case only, as nudge and the Ruby oracle get them.
    const engine = new Liquid({ templates: c.partials || {}, relativeReference: false });
    try {
      cases.push({ ...c, engine, tpl: engine.parse(c.template), ctx: c.context || {} });
    } catch (e) {
      skipped++;
    }
  }
}

const outputs = cases.map((c) => {
  try {
    return JSON.stringify({ name: c.name, output: c.engine.renderSync(c.tpl, structuredClone(c.ctx)) });
  } catch (e) {
    return JSON.stringify({ name: c.name, error: String(e.message || e) });
  }
});
writeFileSync(outFile, outputs.join('\n') + '\n');

let parses = 0;
let start = process.hrtime.bigint();
let elapsed = 0n;
do {
  for (const c of cases) {
    c.engine.parse(c.template);
    parses++;
  }
  elapsed = process.hrtime.bigint() - start;
} while (elapsed < BigInt(limit));
const parseRate = parses / (Number(elapsed) / 1e9);

let renders = 0;
let bytes = 0;
start = process.hrtime.bigint();
do {
  for (const c of cases) {
    try {
      bytes += c.engine.renderSync(c.tpl, c.ctx).length;
    } catch (e) {
      // an error is a render too: Ruby and nudge write it into the output
    }
    renders++;
  }
  elapsed = process.hrtime.bigint() - start;
} while (elapsed < BigInt(limit));
const renderRate = renders / (Number(elapsed) / 1e9);

console.log(JSON.stringify({
  engine: 'liquidjs',
  version: JSON.parse(readFileSync(new URL('./node_modules/liquidjs/package.json', import.meta.url))).version,
  cases: cases.length,
  skipped,
  parses_per_s: Math.floor(parseRate),
  renders_per_s: Math.floor(renderRate),
  output_bytes: bytes,
}));
