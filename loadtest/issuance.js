// k6 load test of the coupon issuance API: the drop, a spike and a soak.
//
//   k6 run loadtest/issuance.js                              # the drop at 3,000 requests/s
//   SCENARIO=spike SPIKE_RATE=8000 k6 run loadtest/issuance.js
//   SCENARIO=soak SOAK_RATE=500 SOAK_DURATION=30m k6 run loadtest/issuance.js
//
// Settings (environment): BASE_URL, SCENARIO (drop|spike|soak), RATE, DURATION, SPIKE_RATE,
// SOAK_RATE, SOAK_DURATION, USERS (distinct users, one token each), STOCK, CAMPAIGN_ID (use an
// existing campaign instead of creating one), JWT_HS256_SECRET (mints user and admin tokens,
// with `iss`/`aud` from JWT_ISSUER/JWT_AUDIENCE when set),
// ADMIN_TOKEN and TOKENS_FILE (pre-issued tokens, one per line, for RS256/ES256 deployments),
// P99_MS (latency threshold), SUMMARY_FILE (JSON summary, default loadtest/results/summary.json),
// ADMIN_URL (where the operator API is reached, default BASE_URL), CHECK_INVARIANTS (default 1),
// INVARIANT_WAIT (seconds teardown waits for the ledger to catch up, default 120).
// Every request uses a different token, so users are distinct until USERS wrap around.
// teardown() checks the invariants through the admin view, over HTTP only: issued == accepted -
// released, rejected == 0, issued <= total_stock. A breach fails the `invariant_violations`
// threshold, so k6 exits non-zero.
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { bound, mintHs256, userTokens } from './lib/jwt.js';

const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080');
const ADMIN_URL = env('ADMIN_URL', BASE_URL);
const CHECK_INVARIANTS = env('CHECK_INVARIANTS', '1') !== '0';
const INVARIANT_WAIT = Number(env('INVARIANT_WAIT', 120));
const SCENARIO = env('SCENARIO', 'drop');
const RATE = Number(env('RATE', 3000));
const DURATION = env('DURATION', '60s');
const SPIKE_RATE = Number(env('SPIKE_RATE', 4 * RATE));
const SOAK_RATE = Number(env('SOAK_RATE', Math.max(1, Math.floor(RATE / 6))));
const SOAK_DURATION = env('SOAK_DURATION', '30m');
const SECRET = env('JWT_HS256_SECRET', 'dev-secret');
const P99_MS = Number(env('P99_MS', 100));
const SUMMARY_FILE = env('SUMMARY_FILE', 'loadtest/results/summary.json');
const USERS = Number(env('USERS', RATE * 61));
// Fewer coupons than requests, so sold-out answers dominate the end of the drop.
const STOCK = Number(env('STOCK', Math.floor(USERS / 3)));
const RUN_ID = env('RUN_ID', `${Date.now()}`);

const tokens = new SharedArray('user tokens', () => {
  const file = env('TOKENS_FILE', '');
  if (file) {
    return open(file).split('\n').map((t) => t.trim()).filter((t) => t.length > 0);
  }
  return userTokens(SECRET, `k6-${RUN_ID}`, USERS, 4 * 3600);
});

function vus(rate) {
  return { preAllocatedVUs: Math.max(10, Math.ceil(rate / 20)), maxVUs: Math.max(50, Math.ceil(rate / 2)) };
}

const scenarios = {
  drop: {
    executor: 'ramping-arrival-rate',
    startRate: 0,
    timeUnit: '1s',
    stages: [
      { target: RATE, duration: '1s' },
      { target: RATE, duration: DURATION },
    ],
    ...vus(RATE),
  },
  spike: {
    executor: 'ramping-arrival-rate',
    startRate: Math.floor(RATE / 10),
    timeUnit: '1s',
    stages: [
      { target: SPIKE_RATE, duration: '2s' },
      { target: SPIKE_RATE, duration: DURATION },
      { target: Math.floor(RATE / 10), duration: '5s' },
    ],
    ...vus(SPIKE_RATE),
  },
  soak: {
    executor: 'constant-arrival-rate',
    rate: SOAK_RATE,
    timeUnit: '1s',
    duration: SOAK_DURATION,
    ...vus(SOAK_RATE),
  },
};

if (!scenarios[SCENARIO]) {
  throw new Error(`SCENARIO must be one of ${Object.keys(scenarios).join(', ')}`);
}

export const options = {
  scenarios: { [SCENARIO]: scenarios[SCENARIO] },
  thresholds: {
    // 202 accepted, 409 already issued and 410 sold out are the expected answers of a drop.
    http_req_failed: ['rate<0.01'],
    'http_req_duration{name:issuance}': [`p(99)<${P99_MS}`],
    dropped_iterations: ['count==0'],
    checks: ['rate>0.99'],
    invariant_violations: ['count==0'],
  },
  teardownTimeout: `${INVARIANT_WAIT + 30}s`,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

const answers = {
  202: new Counter('issuance_accepted'),
  409: new Counter('issuance_duplicate'),
  410: new Counter('issuance_sold_out'),
};
const unexpected = new Counter('issuance_unexpected');
// Teardown's verdict: one sample per invariant checked, valued 1 when it is breached.
const violations = new Counter('invariant_violations');
const invariantsChecked = new Counter('invariants_checked');

http.setResponseCallback(http.expectedStatuses(202, 409, 410));

function adminToken() {
  const now = Math.floor(Date.now() / 1000);
  return env('ADMIN_TOKEN', '') || mintHs256(SECRET, bound({ sub: 'k6-operator', role: 'admin', iat: now, exp: now + 3600 }));
}

export function setup() {
  const given = env('CAMPAIGN_ID', '');
  if (given) {
    return { campaign_id: given, stock: null };
  }
  const now = Math.floor(Date.now() / 1000);
  const response = http.post(
    `${ADMIN_URL}/v1/admin/campaigns`,
    JSON.stringify({
      name: `k6 ${SCENARIO} ${RUN_ID}`,
      total_stock: STOCK,
      starts_at: new Date((now - 5) * 1000).toISOString(),
      ends_at: new Date((now + 6 * 3600) * 1000).toISOString(),
      discount: { kind: 'percent', value: 10 },
      coupon_valid_days: 30,
    }),
    {
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${adminToken()}` },
      // The campaign's 201 is this request's success (the global callback expects the drop's answers).
      responseCallback: http.expectedStatuses(201),
      tags: { name: 'setup' },
    },
  );
  if (response.status !== 201) {
    throw new Error(`creating the campaign answered ${response.status}: ${response.body}`);
  }
  return { campaign_id: response.json('id'), stock: STOCK };
}

export default function (data) {
  const token = tokens[exec.scenario.iterationInTest % tokens.length];
  const response = http.post(`${BASE_URL}/v1/campaigns/${data.campaign_id}/issuances`, null, {
    headers: { Authorization: `Bearer ${token}` },
    tags: { name: 'issuance' },
  });
  const counter = answers[response.status];
  if (counter) {
    counter.add(1);
  } else {
    unexpected.add(1);
  }
  check(response, { 'answered 202, 409 or 410': (r) => r.status in answers });
}

// The invariants, read from the admin view once the ledger has caught up with what was accepted
// (or INVARIANT_WAIT has passed, in which case the unfinished figures are reported as a breach).
export function teardown(data) {
  if (!CHECK_INVARIANTS) {
    return;
  }
  const url = `${ADMIN_URL}/v1/admin/campaigns/${data.campaign_id}`;
  const params = {
    headers: { Authorization: `Bearer ${adminToken()}` },
    responseCallback: http.expectedStatuses(200),
    tags: { name: 'teardown' },
  };
  const deadline = Date.now() + INVARIANT_WAIT * 1000;
  let view = null;
  for (;;) {
    const response = http.get(url, params);
    if (response.status !== 200) {
      throw new Error(`the admin view answered ${response.status}: ${response.body}`);
    }
    view = response.json();
    const settled = view.issued + view.released >= view.accepted && !(view.consumer_lag > 0);
    if (settled || Date.now() > deadline) {
      break;
    }
    sleep(1);
  }
  const invariants = {
    'issued == accepted - released': view.issued === view.accepted - view.released,
    'rejected == 0': view.rejected === 0,
    'issued <= total_stock': view.issued <= view.total_stock,
  };
  for (const [name, held] of Object.entries(invariants)) {
    invariantsChecked.add(1, { invariant: name });
    violations.add(held ? 0 : 1, { invariant: name });
    if (!held) {
      console.error(`invariant breached: ${name} (admin view ${JSON.stringify(view)})`);
    }
  }
  check(view, Object.fromEntries(Object.entries(invariants).map(([name, held]) => [name, () => held])));
}

function metric(data, name, field) {
  const m = data.metrics[name];
  return m && m.values ? m.values[field] : undefined;
}

export function handleSummary(data) {
  const summary = {
    scenario: SCENARIO,
    base_url: BASE_URL,
    campaign_id: data.setup_data ? data.setup_data.campaign_id : null,
    stock: data.setup_data ? data.setup_data.stock : null,
    // Iterations: one issuance request each (setup's campaign creation is not counted).
    requests: metric(data, 'iterations', 'count') || 0,
    requests_per_second: metric(data, 'iterations', 'rate') || 0,
    accepted: metric(data, 'issuance_accepted', 'count') || 0,
    duplicate: metric(data, 'issuance_duplicate', 'count') || 0,
    sold_out: metric(data, 'issuance_sold_out', 'count') || 0,
    unexpected: metric(data, 'issuance_unexpected', 'count') || 0,
    dropped_iterations: metric(data, 'dropped_iterations', 'count') || 0,
    // Requests k6 counted as failed: setup's and teardown's own answers are expected ones.
    failed_requests: metric(data, 'http_req_failed', 'passes') || 0,
    invariants_checked: metric(data, 'invariants_checked', 'count') || 0,
    invariant_violations: metric(data, 'invariant_violations', 'count') || 0,
    latency_ms: {
      p50: metric(data, 'http_req_duration{name:issuance}', 'med'),
      p99: metric(data, 'http_req_duration{name:issuance}', 'p(99)'),
      p999: metric(data, 'http_req_duration{name:issuance}', 'p(99.9)'),
      max: metric(data, 'http_req_duration{name:issuance}', 'max'),
    },
    thresholds_passed: Object.values(data.metrics).every(
      (m) => !m.thresholds || Object.values(m.thresholds).every((t) => t.ok),
    ),
  };
  const text = [
    `scenario ${summary.scenario} against ${summary.base_url}, campaign ${summary.campaign_id}`,
    `requests ${summary.requests} (${summary.requests_per_second.toFixed(0)}/s), dropped iterations ${summary.dropped_iterations}`,
    `accepted ${summary.accepted}, duplicate ${summary.duplicate}, sold out ${summary.sold_out}, unexpected ${summary.unexpected}`,
    `invariants checked ${summary.invariants_checked}, breached ${summary.invariant_violations}`,
    `latency p50 ${fmt(summary.latency_ms.p50)} ms, p99 ${fmt(summary.latency_ms.p99)} ms, p99.9 ${fmt(summary.latency_ms.p999)} ms`,
    `thresholds ${summary.thresholds_passed ? 'passed' : 'FAILED'}`,
    '',
  ].join('\n');
  return { stdout: text, [SUMMARY_FILE]: JSON.stringify(summary, null, 2) };
}

function fmt(value) {
  return value === undefined ? '-' : value.toFixed(1);
}
