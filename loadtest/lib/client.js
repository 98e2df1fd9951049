// The drop as a phone sees it: tap (POST), honour Retry-After on 429/503 with jitter, then learn
// the outcome from the `Location` with a long-poll (`Prefer: wait=N`, RFC 7240).
//
// Metrics (all created here, in the init context):
//   time_to_outcome            Trend, ms from the tap (first POST's start) to reading `issued`
//   outcome_issued / _released / _rejected / _timeout / _error   Counters, one per accepted issuance
//   long_polls                 Counter, outcome reads sent
//   long_polls_per_issuance    Trend, outcome reads one accepted issuance needed (1 when healthy)
//   outcome_wait_applied       Counter, outcome reads answered with `Preference-Applied`
//   issuance_retries           Counter, POSTs repeated after a 429/503
//   issuance_gave_up           Counter, taps still answered 429/503 after MAX_RETRIES
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

export const timeToOutcome = new Trend('time_to_outcome', true);
const outcomes = {
  issued: new Counter('outcome_issued'),
  released: new Counter('outcome_released'),
  rejected: new Counter('outcome_rejected'),
};
const outcomeTimeout = new Counter('outcome_timeout');
const outcomeError = new Counter('outcome_error');
const longPolls = new Counter('long_polls');
const longPollsPerIssuance = new Trend('long_polls_per_issuance');
const waitApplied = new Counter('outcome_wait_applied');
const retries = new Counter('issuance_retries');
const gaveUp = new Counter('issuance_gave_up');

// Statuses a server sheds load with; the client comes back after Retry-After.
const SHED = { 429: true, 503: true };

// Seconds to wait before repeating a shed request: Retry-After (delta-seconds or an HTTP date;
// 1 s when absent or unreadable) stretched by a random 0..jitter share, so shed phones do not
// come back in lockstep.
export function backoffSeconds(response, jitter) {
  const header = response.headers['Retry-After'];
  let seconds = Number(header);
  if (header === undefined || header === '' || !Number.isFinite(seconds)) {
    const at = Date.parse(header || '');
    seconds = Number.isFinite(at) ? (at - Date.now()) / 1000 : 1;
  }
  return Math.max(0, seconds) * (1 + Math.random() * jitter);
}

// POST the issuance request; a 429 or 503 is repeated after its Retry-After, at most
// `cfg.maxRetries` times. 202, 409 `already-issued` and 410 `sold-out` are final answers.
// Returns the last response and the tap's start (ms since the epoch).
export function tap(url, token, cfg) {
  const started = Date.now();
  const params = { headers: { Authorization: `Bearer ${token}` }, tags: { name: 'issuance' } };
  let response = http.post(url, null, params);
  for (let attempt = 0; SHED[response.status] && attempt < cfg.maxRetries; attempt++) {
    retries.add(1);
    sleep(backoffSeconds(response, cfg.jitter));
    response = http.post(url, null, params);
  }
  if (SHED[response.status]) {
    gaveUp.add(1);
  }
  return { response, started };
}

// Absolute URL of a `Location` (the API answers a path).
export function resolve(base, location) {
  return /^https?:\/\//.test(location) ? location : `${base.replace(/\/$/, '')}${location}`;
}

// Reads the outcome of an accepted issuance: one GET with `Prefer: wait=N`; while it still answers
// `accepted`, another, until a final status or `cfg.deadlineMs` after the tap. A server that did
// not honour the wait (no `Preference-Applied`) answered at once: the client pauses
// `cfg.pollIntervalMs` before asking again, so it is not hammered.
// Returns the final status, or 'timeout' / 'error' (also for a 202 without a `Location`: url null).
export function follow(url, token, started, cfg) {
  const deadline = started + cfg.deadlineMs;
  let polls = 0;
  let outcome = url ? 'timeout' : 'error';
  while (url) {
    const remaining = (deadline - Date.now()) / 1000;
    if (remaining <= 0) {
      break;
    }
    const wait = Math.max(1, Math.min(cfg.waitSeconds, Math.ceil(remaining)));
    const response = http.get(url, {
      headers: { Authorization: `Bearer ${token}`, Prefer: `wait=${wait}` },
      tags: { name: 'outcome' },
      responseCallback: http.expectedStatuses(200),
      timeout: `${wait + 10}s`,
    });
    polls += 1;
    longPolls.add(1);
    if (response.status === 200) {
      const applied = appliedWait(response);
      if (applied !== null) {
        waitApplied.add(1);
      }
      const status = response.json('status');
      if (status !== 'accepted') {
        outcome = status;
        break;
      }
      // Still accepted: re-poll at once only after a wait the server applied and sat through
      // (not one cut short, e.g. by its shutdown).
      if (applied === null || response.timings.duration < 900 * applied) {
        sleep(cfg.pollIntervalMs / 1000);
      }
    } else if (SHED[response.status]) {
      sleep(Math.min(backoffSeconds(response, cfg.jitter), Math.max(0, remaining)));
    } else {
      console.error(`outcome read answered ${response.status}: ${response.body}`);
      outcome = 'error';
      break;
    }
  }
  record(outcome, started, polls);
  return outcome;
}

// Seconds of `Preference-Applied: wait=N`, or null when the server did not apply a wait.
function appliedWait(response) {
  const header = response.headers['Preference-Applied'];
  const match = /wait=(\d+)/.exec(header || '');
  return match ? Number(match[1]) : null;
}

function record(outcome, started, polls) {
  longPollsPerIssuance.add(polls);
  if (outcome === 'issued') {
    timeToOutcome.add(Date.now() - started);
  }
  if (outcomes[outcome]) {
    outcomes[outcome].add(1);
  } else if (outcome === 'timeout') {
    outcomeTimeout.add(1);
  } else {
    outcomeError.add(1);
  }
}
