// `nudge render` and `nudge apply` with message templates: offline rendering matches ruby-liquid,
// --html escapes, parts kept in .liquid files are inlined and their errors point into them.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NudgeServer, nudgeBin, runCli } from './lib/server.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

describe('templates from the command line', () => {
  let dir;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-templates-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('nudge render prints a .liquid file exactly as ruby-liquid renders it; --html escapes', async () => {
    const tpl = `{%- assign n = contact.traits.first_name | default: "friend" -%}
Hi {{ n | capitalize }}!
{% for item in event.properties.items %}{{ forloop.index }}. {{ item.name | upcase }} {{ item.price | times: 2 | round: 2 }}
{% endfor %}{{ "<b>" }} {{ contact.traits.missing }}|{% render 'sig', who: n %}`;
    fs.writeFileSync(path.join(dir, 'a.liquid'), tpl);
    fs.writeFileSync(path.join(dir, 'sig.liquid'), '-- {{ who }}');
    const ctx = { contact: { traits: { first_name: 'ada' } }, event: { properties: { items: [{ name: 'shoe', price: 1.25 }, { name: 'hat', price: 3 }] } } };
    fs.writeFileSync(path.join(dir, 'ctx.json'), JSON.stringify(ctx));
    const out = await runCli(nudgeBin(), ['render', path.join(dir, 'a.liquid'), '--context', path.join(dir, 'ctx.json')]);
    assert.equal(out.code, 0, out.stderr);
    const ruby = execFileSync(
      'ruby',
      ['-rliquid', '-rjson', '-e', `
        class FS; def initialize(d); @d = d; end; def read_template_file(n); File.read(File.join(@d, n + ".liquid")); end; end
        Liquid::Template.file_system = FS.new(ARGV[0])
        print Liquid::Template.parse(File.read(ARGV[1])).render(JSON.parse(File.read(ARGV[2])))`,
        dir, path.join(dir, 'a.liquid'), path.join(dir, 'ctx.json')],
      { env: { ...process.env, TZ: 'UTC' } },
    ).toString();
    assert.equal(out.stdout, ruby);
    assert.match(out.stdout, /Hi Ada!\n1\. SHOE 2\.5\n2\. HAT 6\n<b> \|-- ada/);
    const html = await runCli(nudgeBin(), ['render', path.join(dir, 'a.liquid'), '--context', path.join(dir, 'ctx.json'), '--html']);
    assert.equal(html.code, 0, html.stderr);
    assert.match(html.stdout, /&lt;b&gt;/);
  });

  test('nudge render of a template YAML prints every part; errors in a .liquid part point into it', async () => {
    const t = path.join(dir, 'templates');
    fs.mkdirSync(t);
    fs.writeFileSync(path.join(t, 'base.yaml'), 'id: base\nchannel: partial\nbody: "<html>{{ content }}</html>"\n');
    fs.writeFileSync(path.join(t, 'hi.yaml'), 'id: hi\nchannel: email\nsubject: "Hi {{ contact.traits.first_name }}"\nlayout: base\n');
    fs.writeFileSync(path.join(t, 'hi.html.liquid'), '<p>Hello {{ contact.traits.first_name }}</p>\n');
    fs.writeFileSync(path.join(dir, 'ctx2.json'), JSON.stringify({ contact: { traits: { first_name: 'Bo' } } }));
    const ok = await runCli(nudgeBin(), ['render', path.join(t, 'hi.yaml'), '--context', path.join(dir, 'ctx2.json')]);
    assert.equal(ok.code, 0, ok.stderr);
    const parts = JSON.parse(ok.stdout);
    assert.equal(parts.subject, 'Hi Bo');
    assert.equal(parts.html, '<html><p>Hello Bo</p>\n</html>');
    assert.match(parts.text, /Hello Bo/);

    fs.writeFileSync(path.join(t, 'hi.html.liquid'), '<p>Hello</p>\n<p>{{ contact.traits.first_name | shout }}</p>\n');
    const bad = await runCli(nudgeBin(), ['render', path.join(t, 'hi.yaml')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /hi\.html\.liquid:2:\d+: .*shout/);
    const v = await runCli(nudgeBin(), ['validate', dir]);
    assert.equal(v.code, 1);
    assert.match(v.stderr, /templates\/hi\.html\.liquid:2:\d+/);
  });

  test('nudge apply sends templates with their .liquid parts; a broken one is refused with its place', async () => {
    const server = await new NudgeServer({ env: { NUDGE_DELIVERY_HOLD: '1' } }).start();
    try {
      const out = await runCli(nudgeBin(), ['apply', '-f', dir, '--server', server.url, '--key', server.adminKey]);
      assert.equal(out.code, 1);
      assert.match(out.stdout, /templates\/base\.yaml: template base \(partial\)/);
      assert.match(out.stderr, /hi\.html\.liquid:2:\d+/);
      fs.writeFileSync(path.join(dir, 'templates', 'hi.html.liquid'), '<p>Hello {{ contact.traits.first_name }}</p>\n');
      const again = await runCli(nudgeBin(), ['apply', '-f', dir, '--server', server.url, '--key', server.adminKey]);
      assert.equal(again.code, 0, again.stderr);
      const got = await server.get('/api/v1/templates/hi');
      assert.match(got.source, /Hello \{\{ contact\.traits\.first_name \}\}/);
      assert.equal(got.layout, 'base');

      // The demo workspace applies whole, its image with its asset.
      const demo = await runCli(nudgeBin(), ['apply', '-f', path.join(ROOT, 'examples/demo'), '--server', server.url, '--key', server.adminKey]);
      assert.equal(demo.code, 0, demo.stderr);
      assert.match(demo.stdout, /images\/welcome-hero\.yaml: image welcome-hero \(1200x600\)/);
      const img = await server.get('/api/v1/images/welcome-hero');
      assert.deepEqual(img.assets, ['hero.png']);

      // An asset in a subfolder: validate refuses it as apply does, at its place.
      const w = fs.mkdtempSync(path.join(os.tmpdir(), 'nudge-img-'));
      fs.mkdirSync(path.join(w, 'images', 'sub'), { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'examples/demo/images/hero.png'), path.join(w, 'images', 'sub', 'hero.png'));
      fs.writeFileSync(path.join(w, 'images', 'deep.yaml'), 'id: deep\nbase: sub/hero.png\n');
      const v = await runCli(nudgeBin(), ['validate', w]);
      assert.equal(v.code, 1, v.stdout);
      assert.match(v.stderr, /images\/deep\.yaml:2:\d+: .*plain file names/);
      fs.rmSync(w, { recursive: true, force: true });
    } finally {
      await server.dispose();
    }
  });
});
