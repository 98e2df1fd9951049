// k6 load test of the coupon issuance API: the drop, a spike and a soak, each iteration a phone.
//
//   k6 run loadtest/issuance.js                              # the drop at 3,000 taps/s
//   SCENARIO=spike SPIKE_RATE=8000 k6 run loadtest/issuance.js
//   SCENARIO=soak SOAK_RATE=500 SOAK_DURATION=30m k6 run loadtest/issuance.js
//
// One iteration is one user's tap: POST /v1/campaigns/{id}/issuances (repeated after Retry-After
// plus jitter on 429/503, at most MAX_RETRIES times); on 202 it follows the `Location` with one
// GET carrying `Prefer: wait=WAIT_SECONDS` and the same token, and long-polls again only while
// the answer is still `accepted`, until OUTCOME_DEADLINE after the tap. `time_to_outcome` is the
// time from the tap to reading `issued` (lib/client.js).
//
// Settings (environment): BASE_URL, SCENARIO (drop|spike|soak), RATE, DURATION, SPIKE_RATE,
// SOAK_RATE, SOAK_DURATION, USERS (distinct users, one token each), STOCK, CAMPAIGN_ID (use an
// existing campaign instead of creating one), JWT_HS256_SECRET (mints user and admin tokens,
// with `iss`/`aud` from JWT_ISSUER/JWT_AUDIENCE when set),
// ADMIN_TOKEN and TOKENS_FILE (pre-issued tokens, one per line, for RS256/ES256 deployments),
// P99_MS (the POST's latency threshold), SUMMARY_FILE (JSON summary, default
// loadtest/results/summary.json), ADMIN_URL (where the operator API is reached, default
// BASE_URL), CHECK_INVARIANTS (default 1), INVARIANT_WAIT (seconds teardown waits for the ledger
// to catch up, default 120); the client flow: WAIT_SECONDS (10), OUTCOME_DEADLINE (30 s),
// OUTCOME_P99_MS (2000), POLL_INTERVAL_MS (250, between reads a server answered without
// waiting), MAX_RETRIES (3), RETRY_JITTER (0.5); VU sizing: VU_HOLD (2 s), PRE_VUS, MAX_VUS.
// Every iteration uses a different token, so users are distinct until USERS wrap around.
// teardown() checks the invariants through the admin view, over HTTP only: issued == accepted -
// released, rejected == 0, issued <= total_stock. A breach fails the `invariant_violations`
// threshold, so k6 exits non-zero.
import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { SharedArray } from 'k6/data';
import { bound, mintHs256, userTokens } from './lib/jwt.js';
import { follow, resolve, tap } from './lib/client.js';
import { summarize, text } from './lib/summary.js';

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
// The phone's side of the flow.
const CLIENT = {
  waitSeconds: Number(env('WAIT_SECONDS', 10)),
  deadlineMs: 1000 * Number(env('OUTCOME_DEADLINE', 30)),
  pollIntervalMs: Number(env('POLL_INTERVAL_MS', 250)),
  maxRetries: Number(env('MAX_RETRIES', 3)),
  jitter: Number(env('RETRY_JITTER', 0.5)),
};
const OUTCOME_P99_MS = Number(env('OUTCOME_P99_MS', 2000));
// Seconds one iteration may hold its VU: the tap plus the parked long-poll until the outcome.
const VU_HOLD = Number(env('VU_HOLD', 2));

const tokens = new SharedArray('user tokens', () => {
  const file = env('TOKENS_FILE', '');
  if (file) {
    return open(file).split('\n').map((t) => t.trim()).filter((t) => t.length > 0);
  }
  return userTokens(SECRET, `k6-${RUN_ID}`, USERS, 4 * 3600);
});

// An arrival-rate executor starts `rate` iterations a second whatever the server does, and each
// holds a VU while its long-poll is parked: concurrency is rate x time to outcome. maxVUs covers
// rate x VU_HOLD; an outcome slower than that shows as dropped_iterations. Half of it is
// pre-allocated, since k6 drops an iteration while it starts a VU mid-test. Iterations in flight
// at the end get OUTCOME_DEADLINE (plus a margin) to finish.
function vus(rate) {
  return {
    preAllocatedVUs: Number(env('PRE_VUS', Math.max(10, Math.ceil((rate * VU_HOLD) / 2)))),
    maxVUs: Number(env('MAX_VUS', Math.max(50, Math.ceil(rate * VU_HOLD)))),
    gracefulStop: `${Math.ceil(CLIENT.deadlineMs / 1000) + 15}s`,
  };
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
    // 202 accepted, 409 already issued and 410 sold out are the expected answers of a drop's
    // POST, 200 of an outcome read.
    http_req_failed: ['rate<0.01'],
    // The POST alone: a parked long-poll (`name: outcome`) is not issuance latency.
    'http_req_duration{name:issuance}': [`p(99)<${P99_MS}`],
    time_to_outcome: [`p(99)<${OUTCOME_P99_MS}`],
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
  const { response, started } = tap(`${BASE_URL}/v1/campaigns/${data.campaign_id}/issuances`, token, CLIENT);
  const counter = answers[response.status];
  if (counter) {
    counter.add(1);
  } else {
    unexpected.add(1);
  }
  check(response, { 'answered 202, 409 or 410': (r) => r.status in answers });
  if (response.status !== 202) {
    return;
  }
  const location = response.headers.Location;
  const outcome = follow(location ? resolve(BASE_URL, location) : null, token, started, CLIENT);
  check(outcome, { 'outcome read before the deadline': (o) => o !== 'timeout' && o !== 'error' });
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

export function handleSummary(data) {
  const summary = summarize(data, { scenario: SCENARIO, baseUrl: BASE_URL });
  return { stdout: text(summary), [SUMMARY_FILE]: JSON.stringify(summary, null, 2) };
}
