// Every text key the UI uses exists in every dictionary, and the
// dictionaries have the same keys (no half-translated language).
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repo } from './lib.js';

const ui = join(repo, 'ui');
const load = async (lang) => (await import(join(ui, 'i18n', `${lang}.js`))).default;

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.js') ? [join(dir, e.name)] : []));
}

it('dictionaries cover every key the code uses', async () => {
  const en = await load('en');
  const zh = await load('zh');
  assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
  const used = new Set();
  for (const f of sources(join(ui, 'js'))) {
    for (const m of readFileSync(f, 'utf8').matchAll(/\bt\('([a-z_]+\.[a-z_0-9]+)'/g)) used.add(m[1]);
  }
  const missing = [...used].filter((k) => !(k in en));
  assert.deepEqual(missing, []);
});
