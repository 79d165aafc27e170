// k6 load for the fleet: the same traffic as `fleet load` (see docs/load.md).
//
//   BASE_URL=http://127.0.0.1:8080 k6 run deploy/load/k6-checkout.js
//   BASE_URL=... RATE=40 DURATION=1m k6 run deploy/load/k6-checkout.js         # open model
//   BASE_URL=... MODEL=closed VUS=4 ITERATIONS=40 k6 run deploy/load/k6-checkout.js
//
// Environment (all optional): BASE_URL (http://127.0.0.1:8080), MODEL (open | closed),
// RATE (20 req/s), DURATION (30s), MAX_VUS (1000: the open model's in-flight cap), VUS (4),
// ITERATIONS (closed model: stop after this many in all), THINK_TIME (closed model, seconds),
// MIX (checkout=70,products=20,order=10), DECLINE_RATE (0.05), SEED, SLOW_MS (1000: log the
// trace id of any request slower than this), TEMPO_URL (http://127.0.0.1:3200, for the hints).
//
// Every gateway answer carries `x-trace-id`; unexpected failures and slow requests are logged
// with it, so `fleet trace <id>` or Grafana's Tempo data source shows what happened.

import http from 'k6/http';
import { check, sleep, randomSeed } from 'k6';
import { Counter } from 'k6/metrics';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TEMPO_URL = (__ENV.TEMPO_URL || 'http://127.0.0.1:3200').replace(/\/+$/, '');
const MODEL = (__ENV.MODEL || 'open').toLowerCase();
const RATE = Number(__ENV.RATE || 20);
const DURATION = __ENV.DURATION || '30s';
const MAX_VUS = Number(__ENV.MAX_VUS || 1000);
const VUS = Number(__ENV.VUS || 4);
const ITERATIONS = __ENV.ITERATIONS ? Number(__ENV.ITERATIONS) : 0;
const THINK_TIME = Number(__ENV.THINK_TIME || 0);
const DECLINE_RATE = Number(__ENV.DECLINE_RATE || 0.05);
const SLOW_MS = Number(__ENV.SLOW_MS || 1000);

export const CARD_OK = '4242424242424242';
export const CARD_DECLINED = '4000000000009995';
export const KNOWN_SKUS = [
  'COFFEE-250G', 'GRINDER-HAND', 'KETTLE-GOOSE', 'MUG-CERAMIC',
  'FILTER-V60', 'DRIPPER-V60', 'SCALE-01', 'TEA-SENCHA',
];
const FIRST = ['ada', 'alan', 'grace', 'linus', 'margaret', 'ken', 'barbara', 'dennis',
  'frances', 'edsger', 'radia', 'tim', 'hedy', 'john', 'katherine', 'leslie'];
const LAST = ['lovelace', 'turing', 'hopper', 'torvalds', 'hamilton', 'thompson', 'liskov',
  'ritchie', 'allen', 'dijkstra', 'perlman', 'lamport'];
const DOMAINS = ['example.com', 'example.org', 'example.net', 'mail.example.com'];

// `checkout=70,products=20,order=10` → [['checkout', 70], …]; unknown names are an error.
export function parseMix(spec) {
  const mix = [];
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p)) {
    const [name, weight] = part.split('=').map((s) => (s || '').trim());
    const w = Number(weight);
    if (!['checkout', 'products', 'order'].includes(name) || !Number.isInteger(w) || w < 0) {
      throw new Error(`bad MIX entry ${JSON.stringify(part)}: use checkout|products|order=WEIGHT`);
    }
    mix.push([name, w]);
  }
  if (mix.reduce((s, [, w]) => s + w, 0) === 0) {
    throw new Error('MIX needs at least one weight above 0');
  }
  return mix;
}

const MIX = parseMix(__ENV.MIX || 'checkout=70,products=20,order=10');

export function pick(mix, draw) {
  const total = mix.reduce((s, [, w]) => s + w, 0);
  let x = draw * total;
  for (const [name, w] of mix) {
    if (x < w) return name;
    x -= w;
  }
  return mix.filter(([, w]) => w > 0).pop()[0];
}

const int = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
const oneOf = (list) => list[Math.floor(Math.random() * list.length)];

export function randomEmail() {
  const first = oneOf(FIRST);
  const last = oneOf(LAST);
  const domain = oneOf(DOMAINS);
  switch (int(0, 2)) {
    case 0: return `${first}.${last}@${domain}`;
    case 1: return `${first}${int(1, 999)}@${domain}`;
    default: return `${first[0]}${last}+shop@${domain}`;
  }
}

// 1–4 distinct skus, quantities 1–3.
export function checkoutBody(skus, declined) {
  const pool = skus.slice();
  const lines = Math.min(int(1, 4), pool.length);
  const items = [];
  for (let i = 0; i < lines; i++) {
    const [sku] = pool.splice(Math.floor(Math.random() * pool.length), 1);
    items.push({ sku, quantity: int(1, 3) });
  }
  return {
    customer_email: randomEmail(),
    items,
    card_number: declined ? CARD_DECLINED : CARD_OK,
  };
}

export function randomUuid() {
  const hex = '0123456789abcdef';
  let s = '';
  for (let i = 0; i < 32; i++) {
    let d = Math.floor(Math.random() * 16);
    if (i === 12) d = 4;
    if (i === 16) d = 8 + (d % 4);
    s += hex[d];
  }
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}

const scenarios = MODEL === 'closed'
  ? {
    closed: ITERATIONS > 0
      ? { executor: 'shared-iterations', vus: VUS, iterations: ITERATIONS, maxDuration: '1h' }
      : { executor: 'constant-vus', vus: VUS, duration: DURATION },
  }
  : {
    open: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.min(MAX_VUS, Math.max(10, Math.ceil(RATE))),
      maxVUs: MAX_VUS,
    },
  };

export const options = {
  scenarios,
  // Planned declines (402) and random-id look-ups (404) are not failures: see responseCallback.
  thresholds: { http_req_failed: ['rate<0.01'] },
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'max', 'count'],
};

const unexpected = new Counter('unexpected_status');

export function setup() {
  const res = http.get(`${BASE_URL}/products`, { tags: { name: 'GET /products' } });
  let skus = [];
  try {
    skus = (res.json('products') || []).map((p) => p.sku).filter((s) => s);
  } catch (e) {
    skus = [];
  }
  if (skus.length === 0) {
    console.warn(`cannot read ${BASE_URL}/products (status ${res.status}); using the known skus`);
    skus = KNOWN_SKUS;
  }
  return { skus };
}

// Orders this VU created (VUs share no memory), for GET /orders/{id}.
const orders = [];
let seeded = false;

function send(name, method, path, body, expected) {
  const params = {
    headers: body ? { 'content-type': 'application/json' } : {},
    tags: { name },
    responseCallback: http.expectedStatuses(expected),
  };
  const res = method === 'POST'
    ? http.post(`${BASE_URL}${path}`, JSON.stringify(body), params)
    : http.get(`${BASE_URL}${path}`, params);
  const traceId = res.headers['X-Trace-Id'] || res.headers['x-trace-id'] || '(none)';
  const ok = check(res, { [`${name} → ${expected}`]: (r) => r.status === expected });
  if (!ok) {
    unexpected.add(1, { name, status: String(res.status) });
    console.warn(`${name} answered ${res.status} (expected ${expected}) trace ${traceId}  → ${TEMPO_URL}/api/traces/${traceId}`);
  } else if (res.timings.duration > SLOW_MS) {
    console.log(`slow ${name} ${res.timings.duration.toFixed(1)} ms trace ${traceId}`);
  }
  return res;
}

export default function (data) {
  if (!seeded && __ENV.SEED) {
    randomSeed(Number(__ENV.SEED) + __VU);
    seeded = true;
  }
  const skus = (data && data.skus) || KNOWN_SKUS;
  const which = pick(MIX, Math.random());
  if (which === 'checkout') {
    const declined = Math.random() < DECLINE_RATE;
    const res = send('POST /checkout', 'POST', '/checkout', checkoutBody(skus, declined),
      declined ? 402 : 201);
    let id = null;
    try {
      id = res.status === 201 ? res.json('order_id') : res.json('error.details.order_id');
    } catch (e) {
      id = null;
    }
    if (id) {
      orders.push(id);
      if (orders.length > 1000) orders.shift();
    }
  } else if (which === 'products') {
    send('GET /products', 'GET', '/products', null, 200);
  } else if (orders.length > 0) {
    send('GET /orders/{id}', 'GET', `/orders/${oneOf(orders)}`, null, 200);
  } else {
    send('GET /orders/{id}', 'GET', `/orders/${randomUuid()}`, null, 404);
  }
  if (MODEL === 'closed' && THINK_TIME > 0) sleep(THINK_TIME);
}
