//! `GET /v1/issuances/{id}` with `Prefer: wait=N` (RFC 7240): the answer comes as soon as the
//! issuance leaves `accepted`, or after N seconds (at most `ISSUANCE_WAIT_MAX_SECS`) with the
//! current state, or at shutdown; `Preference-Applied: wait=N` names the wait honoured.
//!
//! The request is the plain read's until its first status read: the same limits, the same
//! owner check (404 for another user's issuance), within `INGRESS_REQUEST_TIMEOUT_MS`. It
//! registers its waiter before that read, so an outcome committed in between still wakes it.
//! While it waits it holds a permit of its own budget (`ISSUANCE_WAITERS_MAX`) and none of
//! `INGRESS_MAX_IN_FLIGHT`'s; the wait itself is exempt from the request deadline, and each
//! later read is bounded by it again. Past the budget the read answers at once, without
//! `Preference-Applied`.

use std::future::Future;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use schema::ids::IssuanceId;
use tokio::sync::SemaphorePermit;

use super::Reply;
use super::body::json;
use super::problem::Problem;
use super::routes::{Matched, Route};
use crate::App;
use crate::http::auth::Principal;
use crate::issue::handler::{IssuanceStatus, Status, status};

/// The metrics label of a long-poll, apart from the plain read's so its waits never count as
/// the issuance route's latency.
pub const LABEL: &str = "issuance_wait";

/// The wait a request asks for and this process grants, in seconds: `Some` only for
/// `GET /v1/issuances/{id}` with a valid `wait` preference while long-polling is on.
pub fn asked(app: &App, request: &Request<Incoming>, matched: &Matched) -> Option<u64> {
    let max = app.config.waits.issuance_wait_max_secs;
    if matched.route != Route::Issuance || request.method() != Method::GET || max == 0 {
        return None;
    }
    preferred_wait(request.headers()).map(|wait| wait.min(max))
}

/// The `wait` preference of the `Prefer` fields, if one is valid: preferences are
/// comma-separated (across fields too), their names case-insensitive, parameters after `;`
/// ignored; the first `wait` counts, and its value must be a non-negative integer (quoted or
/// not). A value too large for a number is as good as the largest.
pub fn preferred_wait(headers: &HeaderMap) -> Option<u64> {
    let wait = headers
        .get_all(http::header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            let head = preference.split(';').next().unwrap_or_default();
            let (name, value) = head.split_once('=').unwrap_or((head, ""));
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim())
        })
        .next()?;
    let digits = wait
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(wait);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// Answers a long-poll of `wait` seconds; `in_flight` is given back while it waits.
pub(super) async fn answer(
    app: &App,
    request: Request<Incoming>,
    matched: &Matched,
    wait: u64,
    in_flight: SemaphorePermit<'_>,
) -> Result<Reply, Problem> {
    let (caller, issuance, waiter, first) = bounded(app, async {
        let caller = super::dispatch::user(app, &request).await?;
        let issuance: IssuanceId = matched
            .id(request.uri().path())
            .parse()
            .map_err(|e: schema::ids::IdError| Problem::BadRequest(e.to_string()))?;
        // First the waiter, then the read: an outcome committed in between wakes it.
        let waiter = app.outcomes.register(issuance);
        let first = status(app, &caller, issuance).await?;
        Ok((caller, issuance, waiter, first))
    })
    .await?;
    let Some(waiter) = waiter else {
        // Past the waiters' budget (or shutting down): the plain read's answer.
        return Ok(json(StatusCode::OK, &first));
    };
    if first.status != IssuanceStatus::Accepted || wait == 0 {
        return Ok(applied(&first, wait));
    }
    drop(in_flight);
    let end = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        tokio::select! {
            () = waiter.woken() => {}
            () = tokio::time::sleep_until(end) => break,
            () = app.outcomes.stopped() => break,
        }
        // Woken: by this id's outcome, or by the listener's reconnection (maybe not settled).
        let now = read(app, &caller, issuance).await?;
        if now.status != IssuanceStatus::Accepted {
            return Ok(applied(&now, wait));
        }
    }
    let last = read(app, &caller, issuance).await?;
    drop(waiter);
    Ok(applied(&last, wait))
}

async fn read(app: &App, caller: &Principal, issuance: IssuanceId) -> Result<Status, Problem> {
    bounded(app, status(app, caller, issuance)).await
}

/// `work` within `INGRESS_REQUEST_TIMEOUT_MS`, or 503 as for any request.
async fn bounded<T>(
    app: &App,
    work: impl Future<Output = Result<T, Problem>>,
) -> Result<T, Problem> {
    let deadline = Duration::from_millis(app.config.request_timeout_ms);
    match tokio::time::timeout(deadline, work).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => {
            tracing::warn!(route = LABEL, "request deadline passed");
            Err(Problem::unavailable("the request took too long; retry"))
        }
    }
}

/// The status, with `Preference-Applied: wait=N`.
fn applied(status: &Status, wait: u64) -> Reply {
    let mut reply = json(StatusCode::OK, status);
    if let Ok(value) = HeaderValue::from_str(&format!("wait={wait}")) {
        reply.headers_mut().insert("preference-applied", value);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_of(fields: &[&str]) -> Option<u64> {
        let mut headers = HeaderMap::new();
        for field in fields {
            headers.append("prefer", HeaderValue::from_str(field).unwrap());
        }
        preferred_wait(&headers)
    }

    #[test]
    fn the_first_valid_looking_wait_counts_whatever_else_is_preferred() {
        assert_eq!(wait_of(&["wait=10"]), Some(10));
        assert_eq!(wait_of(&["respond-async, WAIT = 5"]), Some(5));
        assert_eq!(wait_of(&["return=minimal", "Wait=7;foo=bar"]), Some(7));
        assert_eq!(wait_of(&["wait=\"3\""]), Some(3));
        assert_eq!(wait_of(&["wait=0"]), Some(0));
        assert_eq!(wait_of(&["wait=2, wait=9"]), Some(2));
        assert_eq!(wait_of(&["wait=99999999999999999999999"]), Some(u64::MAX));
    }

    #[test]
    fn an_absent_or_invalid_wait_is_no_wait() {
        assert_eq!(wait_of(&[]), None);
        assert_eq!(wait_of(&["respond-async"]), None);
        assert_eq!(wait_of(&["wait"]), None);
        assert_eq!(wait_of(&["wait="]), None);
        assert_eq!(wait_of(&["wait=-1"]), None);
        assert_eq!(wait_of(&["wait=1.5"]), None);
        assert_eq!(wait_of(&["wait=abc"]), None);
        assert_eq!(wait_of(&["waiting=5"]), None);
    }
}
