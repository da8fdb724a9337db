// docs/openapi.yaml describes every route the server registers, and nothing else.
//
// The routes are read from the C++ sources under src/http and src/app (test files excluded):
// every string literal outside comments that is a whole path under /v1/, /api/v1/, /t/, /i/,
// /hooks/, or is /healthz or /metrics, counts as a route. Example URLs belong in comments or
// tests; a path with a query string or a trailing '/' (a prefix being concatenated) is not one.
// Route parameters must carry the same names in the document as in the code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const docPath = path.join(root, 'docs/openapi.yaml');
const sourceDirs = ['src/http', 'src/app'].map((d) => path.join(root, d));
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

// A route: /healthz, /metrics, or a prefix followed by segments of letters, digits, '-', '_',
// '.', or a whole {name}; never a query string or a trailing '/'.
const SEGMENT = String.raw`(?:[A-Za-z0-9_.-]+|\{[A-Za-z_][A-Za-z0-9_]*\})`;
const ROUTE = new RegExp(
  String.raw`^(?:/healthz|/metrics|/(?:api/v1|v1|t|i|hooks)(?:/${SEGMENT})+)$`,
);

function loadDoc() {
  let text;
  try {
    text = fs.readFileSync(docPath, 'utf8');
  } catch (e) {
    assert.fail(`cannot read ${docPath}: ${e.message}`);
  }
  const parsed = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (parsed.errors.length)
    assert.fail(`docs/openapi.yaml does not parse:\n${parsed.errors.map((e) => e.message).join('\n')}`);
  const doc = parsed.toJS();
  assert.ok(doc && typeof doc === 'object' && !Array.isArray(doc), 'docs/openapi.yaml: not a mapping');
  for (const key of ['openapi', 'info', 'paths'])
    assert.ok(key in doc, `docs/openapi.yaml: no top-level "${key}"`);
  assert.match(String(doc.openapi), /^3\./, 'docs/openapi.yaml: "openapi" is not 3.x');
  assert.ok(doc.paths && typeof doc.paths === 'object', 'docs/openapi.yaml: "paths" is not a mapping');
  return doc;
}

function sourceFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(full));
    else if (/\.(cc|h)$/.test(entry.name) && !/_test\.cc$/.test(entry.name)) out.push(full);
  }
  return out;
}

// The string literals of a C++ source, outside comments and character literals, each with its
// line number and the text just before it (to recognise `.Add("GET", "/path"`).
function stringLiterals(text) {
  const token =
    /R"([^()\\\s]{0,16})\(([\s\S]*?)\)\1"|"((?:[^"\\\n]|\\.)*)"|'(?:[^'\\\n]|\\.)+'|\/\/[^\n]*|\/\*[\s\S]*?\*\//g;
  const out = [];
  for (const m of text.matchAll(token)) {
    const value = m[2] ?? m[3];
    if (value === undefined) continue; // a comment or a character literal
    out.push({ value, index: m.index, line: text.slice(0, m.index).split('\n').length });
  }
  return out;
}

// Every route the sources register: path -> where it appears; and, for routes registered as
// `.Add("METHOD", "/path", ...)`, the methods per path.
function serverRoutes() {
  const routes = new Map();
  const methods = new Map();
  for (const file of sourceDirs.flatMap(sourceFiles)) {
    const text = fs.readFileSync(file, 'utf8');
    const literals = stringLiterals(text);
    for (let i = 0; i < literals.length; i++) {
      const { value, line, index } = literals[i];
      if (!ROUTE.test(value)) continue;
      const where = `${path.relative(root, file)}:${line}`;
      if (!routes.has(value)) routes.set(value, where);
      const prev = literals[i - 1];
      if (prev && /^[A-Z]+$/.test(prev.value)) {
        const between = text.slice(prev.index + prev.value.length + 2, index);
        const before = text.slice(Math.max(0, prev.index - 40), prev.index);
        if (/^\s*,\s*$/.test(between) && /\bAdd\s*\(\s*$/.test(before)) {
          if (!methods.has(value)) methods.set(value, new Map());
          methods.get(value).set(prev.value.toLowerCase(), where);
        }
      }
    }
  }
  return { routes, methods };
}

// Resolves a local reference ("#/components/schemas/Error"); undefined when it does not.
function resolveRef(doc, ref) {
  if (typeof ref !== 'string' || !ref.startsWith('#/')) return undefined;
  let node = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

function collectRefs(node, at, out) {
  if (Array.isArray(node)) node.forEach((v, i) => collectRefs(v, `${at}/${i}`, out));
  else if (node && typeof node === 'object')
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref') out.push({ ref: v, at });
      else collectRefs(v, `${at}/${k}`, out);
    }
  return out;
}

function operations(doc) {
  const out = [];
  for (const [p, item] of Object.entries(doc.paths))
    for (const m of METHODS) if (item && item[m]) out.push({ path: p, method: m, op: item[m], item });
  return out;
}

let doc;
let docError;
try {
  doc = loadDoc();
} catch (e) {
  docError = e;
}
const { routes, methods } = serverRoutes();
// The tests that read the document are skipped when it does not load; the first test says why.
const needsDoc = { skip: docError ? 'docs/openapi.yaml does not load' : false };

test('docs/openapi.yaml parses and has openapi, info and paths', () => {
  if (docError) throw docError;
});

test('the route scan finds the server routes', () => {
  // Guards the scan itself: were it to find nothing, the comparisons below would prove nothing.
  for (const known of ['/healthz', '/metrics', '/v1/track', '/api/v1/contacts/{id}', '/t/o/{token}'])
    assert.ok(routes.has(known), `the scan of src/http and src/app did not find ${known}`);
  assert.ok(routes.size >= 40, `only ${routes.size} routes found`);
});

test('every route the server registers is documented', needsDoc, () => {
  const missing = [...routes].filter(([p]) => !Object.hasOwn(doc.paths, p)).map(([p, w]) => `${p} (${w})`);
  assert.deepEqual(missing, [], `docs/openapi.yaml lacks these paths:\n  ${missing.join('\n  ')}`);
});

test('every method registered with Router::Add is documented on its path', needsDoc, () => {
  const missing = [];
  for (const [p, byMethod] of methods)
    for (const [m, where] of byMethod)
      if (!doc.paths[p]?.[m]) missing.push(`${m.toUpperCase()} ${p} (${where})`);
  assert.deepEqual(missing, [], `docs/openapi.yaml lacks these operations:\n  ${missing.join('\n  ')}`);
});

test('every documented path is one the server registers', needsDoc, () => {
  const stale = Object.keys(doc.paths).filter((p) => !routes.has(p));
  assert.deepEqual(stale, [], `docs/openapi.yaml documents paths the server does not serve:\n  ${stale.join('\n  ')}`);
});

test('every documented operation is one the server registers', needsDoc, () => {
  const stale = [];
  for (const { path: p, method: m } of operations(doc))
    if (methods.has(p) && !methods.get(p).has(m)) stale.push(`${m.toUpperCase()} ${p}`);
  assert.deepEqual(stale, [], `docs/openapi.yaml documents methods the server does not accept:\n  ${stale.join('\n  ')}`);
});

test('every operation has a response, and declares its path parameters', needsDoc, () => {
  const ops = operations(doc);
  assert.ok(ops.length > 0, 'docs/openapi.yaml has no operations');
  const problems = [];
  for (const { path: p, method: m, op, item } of ops) {
    const name = `${m.toUpperCase()} ${p}`;
    if (!op.responses || typeof op.responses !== 'object' || Object.keys(op.responses).length === 0)
      problems.push(`${name}: no responses`);
    const declared = new Set(
      [...(item.parameters ?? []), ...(op.parameters ?? [])]
        .map((prm) => (prm && prm.$ref ? resolveRef(doc, prm.$ref) : prm))
        .filter((prm) => prm && prm.in === 'path')
        .map((prm) => prm.name),
    );
    for (const [, param] of p.matchAll(/\{([^}]+)\}/g))
      if (!declared.has(param)) problems.push(`${name}: no path parameter named "${param}"`);
    for (const param of declared)
      if (!p.includes(`{${param}}`)) problems.push(`${name}: path parameter "${param}" is not in the path`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

test('every $ref resolves inside the document', needsDoc, () => {
  const refs = collectRefs(doc, '#', []);
  assert.ok(refs.length > 0, 'docs/openapi.yaml has no $ref at all');
  const broken = refs.filter(({ ref }) => resolveRef(doc, ref) === undefined).map(({ ref, at }) => `${at}: ${ref}`);
  assert.deepEqual(broken, [], `unresolved $ref:\n  ${broken.join('\n  ')}`);
});
