// The published JSON Schema of journey files (docs/journey.schema.json) accepts every journey
// nudge ships and tests with, and refuses what nudge refuses: the schema and the parser agree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const schema = JSON.parse(fs.readFileSync(path.join(root, 'docs/journey.schema.json'), 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);

function journeysIn(dir) {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.yaml')).map((f) => path.join(dir, f));
}

test('every demo journey matches the schema', () => {
  const files = journeysIn(path.join(root, 'examples/demo/journeys'));
  assert.ok(files.length >= 5);
  for (const file of files) {
    const doc = YAML.parse(fs.readFileSync(file, 'utf8'));
    assert.ok(validate(doc), `${file}: ${JSON.stringify(validate.errors)}`);
  }
});

test('every journey of the scenario tests matches the schema', () => {
  let count = 0;
  for (const file of fs.readdirSync(path.join(root, 'tests/scenarios'))) {
    const scenario = YAML.parse(fs.readFileSync(path.join(root, 'tests/scenarios', file), 'utf8'));
    const texts = [];
    for (const [name, text] of Object.entries(scenario.files ?? {})) if (name.startsWith('journeys/')) texts.push(text);
    for (const action of scenario.do ?? [])
      for (const [name, text] of Object.entries(action.put ?? {})) if (name.startsWith('journeys/')) texts.push(text);
    for (const text of texts) {
      const doc = YAML.parse(text);
      assert.ok(validate(doc), `${file} ${doc.id}: ${JSON.stringify(validate.errors)}`);
      count++;
    }
  }
  assert.ok(count >= 10, `${count} journeys checked`);
});

test('the schema refuses what nudge refuses', () => {
  const base = { id: 'x', trigger: { event: 'A' }, steps: [{ id: 'a', wait: '1d' }] };
  assert.ok(validate(base));
  const bad = [
    { ...base, colour: 'red' },
    { ...base, trigger: { event: 'A', segment_entered: 's' } },
    { ...base, entry: 'sometimes' },
    { ...base, steps: [{ id: 'a', wait: 'forever' }] },
    { ...base, steps: [{ id: 'a', wait: '1d', send: { template: 't' } }] },
    { ...base, steps: [{ id: 'a', wait_for: { event: 'B' } }] },
    { ...base, steps: [{ id: 'end', exit: true }] },
    { ...base, steps: [] },
  ];
  for (const doc of bad) assert.equal(validate(doc), false, JSON.stringify(doc));
});
