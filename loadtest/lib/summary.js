// The run's summary: a JSON document (SUMMARY_FILE) and a short text on stdout.

function metric(data, name, field) {
  const m = data.metrics[name];
  return m && m.values ? m.values[field] : undefined;
}

function count(data, name) {
  return metric(data, name, 'count') || 0;
}

function fmt(value, digits = 1) {
  return value === undefined ? '-' : value.toFixed(digits);
}

export function summarize(data, ctx) {
  const post = 'http_req_duration{name:issuance}';
  return {
    scenario: ctx.scenario,
    base_url: ctx.baseUrl,
    campaign_id: data.setup_data ? data.setup_data.campaign_id : null,
    stock: data.setup_data ? data.setup_data.stock : null,
    // Iterations: one tap each (setup's campaign creation is not counted; retries are below).
    requests: count(data, 'iterations'),
    requests_per_second: metric(data, 'iterations', 'rate') || 0,
    accepted: count(data, 'issuance_accepted'),
    duplicate: count(data, 'issuance_duplicate'),
    sold_out: count(data, 'issuance_sold_out'),
    unexpected: count(data, 'issuance_unexpected'),
    // POSTs repeated after a 429/503 (Retry-After plus jitter), and taps still shed after MAX_RETRIES.
    retries: count(data, 'issuance_retries'),
    gave_up: count(data, 'issuance_gave_up'),
    dropped_iterations: count(data, 'dropped_iterations'),
    // Requests k6 counted as failed: setup's and teardown's own answers are expected ones.
    failed_requests: metric(data, 'http_req_failed', 'passes') || 0,
    invariants_checked: count(data, 'invariants_checked'),
    invariant_violations: count(data, 'invariant_violations'),
    // The POST alone (`name: issuance`); outcome reads are tagged `name: outcome`.
    latency_ms: {
      p50: metric(data, post, 'med'),
      p99: metric(data, post, 'p(99)'),
      p999: metric(data, post, 'p(99.9)'),
      max: metric(data, post, 'max'),
    },
    // What happened to each accepted issuance, as its owner read it from the Location.
    outcomes: {
      issued: count(data, 'outcome_issued'),
      released: count(data, 'outcome_released'),
      rejected: count(data, 'outcome_rejected'),
      timeout: count(data, 'outcome_timeout'),
      error: count(data, 'outcome_error'),
    },
    // From the tap (first POST's start) to reading `issued`.
    time_to_outcome_ms: {
      p50: metric(data, 'time_to_outcome', 'med'),
      p99: metric(data, 'time_to_outcome', 'p(99)'),
      max: metric(data, 'time_to_outcome', 'max'),
    },
    long_polls: count(data, 'long_polls'),
    long_polls_per_issuance: {
      avg: metric(data, 'long_polls_per_issuance', 'avg'),
      max: metric(data, 'long_polls_per_issuance', 'max'),
    },
    // Outcome reads answered with `Preference-Applied` (0: the server ignored `Prefer: wait`).
    wait_applied: count(data, 'outcome_wait_applied'),
    thresholds_passed: Object.values(data.metrics).every(
      (m) => !m.thresholds || Object.values(m.thresholds).every((t) => t.ok),
    ),
  };
}

export function text(s) {
  const o = s.outcomes;
  return [
    `scenario ${s.scenario} against ${s.base_url}, campaign ${s.campaign_id}`,
    `requests ${s.requests} (${s.requests_per_second.toFixed(0)}/s), dropped iterations ${s.dropped_iterations}`,
    `accepted ${s.accepted}, duplicate ${s.duplicate}, sold out ${s.sold_out}, unexpected ${s.unexpected}`,
    `retries after 429/503 ${s.retries}, gave up ${s.gave_up}`,
    `invariants checked ${s.invariants_checked}, breached ${s.invariant_violations}`,
    `issuance latency p50 ${fmt(s.latency_ms.p50)} ms, p99 ${fmt(s.latency_ms.p99)} ms, p99.9 ${fmt(s.latency_ms.p999)} ms`,
    `outcomes: issued ${o.issued}, released ${o.released}, rejected ${o.rejected}, timed out ${o.timeout}, errors ${o.error}`,
    `time to outcome p50 ${fmt(s.time_to_outcome_ms.p50)} ms, p99 ${fmt(s.time_to_outcome_ms.p99)} ms`,
    `long-polls ${s.long_polls} (${fmt(s.long_polls_per_issuance.avg, 2)} per issuance, max ${fmt(s.long_polls_per_issuance.max, 0)}), wait applied ${s.wait_applied}`,
    `thresholds ${s.thresholds_passed ? 'passed' : 'FAILED'}`,
    '',
  ].join('\n');
}
