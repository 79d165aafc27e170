// Runs deploy/load/k6-checkout.js under Node, without k6: `k6`, `k6/http` and `k6/metrics` are
// replaced by small stand-ins (HTTP through synchronous `curl`), then setup() and N iterations
// of the default function run against a real gateway. A smoke check of the script's logic and
// payloads, not a load test.
//
//   node deploy/load/check/k6-smoke.mjs http://127.0.0.1:8080 [iterations]
//   node deploy/load/check/k6-smoke.mjs --offline      # pure checks, no gateway needed

import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import assert from 'node:assert/strict';

const here = dirname(fileURLToPath(import.meta.url));
const offline = process.argv[2] === '--offline';
const baseUrl = offline ? 'http://127.0.0.1:9' : (process.argv[2] || 'http://127.0.0.1:8080');
const iterations = Number(process.argv[3] || 50);

const dir = mkdtempSync(join(tmpdir(), 'k6-smoke-'));
const k6 = join(dir, 'node_modules', 'k6');
mkdirSync(k6, { recursive: true });
writeFileSync(join(k6, 'package.json'), JSON.stringify({
  name: 'k6', type: 'module',
  exports: { '.': './index.js', './http': './http.js', './metrics': './metrics.js' },
}));
writeFileSync(join(k6, 'index.js'), `
export const checks = [];
export function check(value, sets) {
  let all = true;
  for (const [name, fn] of Object.entries(sets)) { const ok = !!fn(value); checks.push([name, ok]); all = all && ok; }
  return all;
}
export function sleep() {}
export function randomSeed() {}
`);
writeFileSync(join(k6, 'metrics.js'), `
export const added = [];
export class Counter { constructor(name) { this.name = name; } add(v, tags) { added.push([this.name, v, tags]); } }
`);
writeFileSync(join(k6, 'http.js'), `
import { execFileSync } from 'node:child_process';
export const calls = [];
function get(obj, path) { return path.split('.').reduce((o, k) => (o == null ? o : o[k]), obj); }
function request(method, url, body, params) {
  const args = ['-s', '-i', '-X', method, url];
  for (const [k, v] of Object.entries((params && params.headers) || {})) args.push('-H', k + ': ' + v);
  if (body != null) args.push('--data-binary', body);
  const start = Date.now();
  let out = '';
  try { out = execFileSync('curl', args, { encoding: 'utf8' }); } catch (e) { out = ''; }
  const duration = Date.now() - start;
  const split = out.indexOf('\\r\\n\\r\\n');
  const head = split < 0 ? '' : out.slice(0, split);
  const text = split < 0 ? '' : out.slice(split + 4);
  const lines = head.split('\\r\\n');
  const status = lines[0] ? Number(lines[0].split(' ')[1]) : 0;
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    const name = l.slice(0, i).split('-').map((p) => p[0].toUpperCase() + p.slice(1).toLowerCase()).join('-');
    headers[name] = l.slice(i + 1).trim();
  }
  const res = { status, headers, body: text, timings: { duration },
    json(path) { const v = JSON.parse(text); return path ? get(v, path) : v; } };
  calls.push({ method, url, body: body == null ? null : JSON.parse(body), params, res });
  return res;
}
export default {
  get: (url, params) => request('GET', url, null, params),
  post: (url, body, params) => request('POST', url, body, params),
  expectedStatuses: (...s) => ({ expected: s }),
};
`);
copyFileSync(join(here, '..', 'k6-checkout.js'), join(dir, 'script.js'));

globalThis.__ENV = { BASE_URL: baseUrl, DECLINE_RATE: '0.2', SEED: '7' };
globalThis.__VU = 1;
const script = await import(pathToFileURL(join(dir, 'script.js')).href);
const { calls } = await import(pathToFileURL(join(k6, 'http.js')).href);

// Pure checks.
assert.deepEqual(script.parseMix('checkout=70,products=20,order=10'),
  [['checkout', 70], ['products', 20], ['order', 10]]);
assert.throws(() => script.parseMix('refund=1'));
assert.throws(() => script.parseMix('checkout=0'));
assert.equal(script.pick([['checkout', 1], ['order', 1]], 0.25), 'checkout');
assert.equal(script.pick([['checkout', 1], ['order', 1]], 0.75), 'order');
assert.match(script.randomUuid(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
for (let i = 0; i < 200; i++) {
  const b = script.checkoutBody(script.KNOWN_SKUS, i % 2 === 0);
  assert.ok(b.items.length >= 1 && b.items.length <= 4);
  assert.equal(new Set(b.items.map((x) => x.sku)).size, b.items.length);
  assert.ok(b.items.every((x) => x.quantity >= 1 && x.quantity <= 3));
  assert.match(b.customer_email, /^[^@\s]+@[^@\s]+\.[a-z]+$/);
  assert.equal(b.card_number, i % 2 === 0 ? script.CARD_DECLINED : script.CARD_OK);
}
assert.equal(script.options.scenarios.open.executor, 'constant-arrival-rate');

if (!offline) {
  const data = script.setup();
  assert.ok(data.skus.length > 0);
  for (let i = 0; i < iterations; i++) script.default(data);
  const sent = calls.slice(1);
  const unexpected = sent.filter((c) => !c.params.responseCallback.expected.includes(c.res.status));
  const byName = {};
  for (const c of sent) byName[c.params.tags.name] = (byName[c.params.tags.name] || 0) + 1;
  const traced = sent.filter((c) => /^[0-9a-f]{32}$/.test(c.res.headers['X-Trace-Id'] || ''));
  console.log(`k6 smoke: ${sent.length} requests ${JSON.stringify(byName)}, ` +
    `${traced.length} with x-trace-id, ${unexpected.length} unexpected statuses`);
  assert.equal(sent.length, iterations);
  assert.equal(traced.length, sent.length);
  assert.deepEqual(unexpected.map((c) => [c.url, c.res.status]), []);
}
rmSync(dir, { recursive: true, force: true });
console.log('k6 script checks passed');
