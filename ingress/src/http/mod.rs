//! The HTTP edge: every request passes `handle`, which names its route once (for metrics and
//! traces), applies the API's limits (load shedding, the client address's rate, the request
//! deadline) and turns every outcome into a JSON or problem response.
//!
//! # Layout
//! - [`server`]: the accept loop and graceful shutdown (`run`).
//! - [`routes`]: the route table; [`dispatch`](self::dispatch): (route, method) to handler.
//! - [`auth`]: bearer tokens; [`limits`]: rates and the client address; [`paging`]: keyset
//!   pages; [`problem`]: RFC 9457 problems.
//! - [`long_poll`]: `GET /v1/issuances/{id}` with `Prefer: wait=N`.
//! - `body`: request bodies and JSON replies; `probes`: `/healthz`, `/readyz`.

pub mod auth;
mod body;
mod caching;
pub mod cors;
mod dispatch;
pub mod limits;
pub mod long_poll;
pub mod paging;
mod probes;
pub mod problem;
pub mod routes;
pub mod server;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::App;
use problem::Problem;
use routes::{Matched, Route};

pub type Reply = Response<Full<Bytes>>;

pub async fn handle(app: &App, request: Request<Incoming>, peer: std::net::SocketAddr) -> Reply {
    let started = std::time::Instant::now();
    let matched = routes::find(request.uri().path());
    let label = match matched.as_ref() {
        // Long-polls have a label of their own: their waits are not the read's latency.
        Some(m) if long_poll::asked(app, &request, m).is_some() => long_poll::LABEL,
        m => m.map_or("other", |m| m.route.label()),
    };
    let method = span_method(request.method());
    let template = matched.as_ref().map(|m| m.route.template());
    // Named and described by the OpenTelemetry HTTP server conventions.
    let span = tracing::info_span!(
        "http.request",
        otel.name = %SpanName(method, template),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = template,
        http.response.status_code = tracing::field::Empty,
        url.path = request.uri().path(),
        url.scheme = "http",
        error.type = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    service::tracing_context::set_parent(
        &span,
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    );
    if let Some(trace_id) = service::tracing_context::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    let reply = match guarded(app, request, peer, matched)
        .instrument(span.clone())
        .await
    {
        Ok(reply) => reply,
        Err(problem) => problem.into_response(),
    };
    span.record("http.response.status_code", reply.status().as_u16());
    if reply.status().is_server_error() {
        span.record("otel.status_code", "error");
        span.record("error.type", reply.status().as_str());
    }
    app.metrics.request(label, reply.status().as_u16(), started);
    reply
}

/// `http.request.method`: the method when it is a standard one, `_OTHER` otherwise.
fn span_method(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "_OTHER",
    }
}

/// A server span's name: `{method} {route template}`, the method alone when no route matched,
/// and `HTTP` for a method outside the standard ones.
struct SpanName(&'static str, Option<&'static str>);

impl std::fmt::Display for SpanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let method = if self.0 == "_OTHER" { "HTTP" } else { self.0 };
        match self.1 {
            Some(template) => write!(f, "{method} {template}"),
            None => f.write_str(method),
        }
    }
}

/// The limits around the API routes: load shedding, the client address's rate and the request
/// deadline. Probes answer regardless.
async fn guarded(
    app: &App,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
    matched: Option<Matched>,
) -> Result<Reply, Problem> {
    if let Some(m) = matched.as_ref().filter(|m| m.route.is_probe()) {
        return probes::answer(app, m.route, request.method()).await;
    }
    // Public campaign reads have a budget of their own: a flood of them (random ids) must
    // never take the permits issuance needs.
    let public = matched
        .as_ref()
        .is_some_and(|m| matches!(m.route, Route::PublicCampaigns | Route::PublicCampaign));
    let permit = if public {
        app.public.admit()
    } else {
        app.in_flight.try_acquire().ok()
    };
    let Some(permit) = permit else {
        app.metrics.shed.inc();
        return Err(Problem::unavailable("overloaded; retry"));
    };
    app.limits.address(limits::client_address(
        peer,
        request.headers(),
        &app.config.trusted_proxies,
    )?)?;
    let Some(matched) = matched else {
        return Err(Problem::NotFound("no such route"));
    };
    if let Some(wait) = long_poll::asked(app, &request, &matched) {
        // It gives the permit back while it waits, and bounds its reads itself.
        return long_poll::answer(app, request, &matched, wait, permit).await;
    }
    let label = matched.route.label();
    let deadline = std::time::Duration::from_millis(app.config.request_timeout_ms);
    let outcome = tokio::time::timeout(deadline, dispatch::dispatch(app, request, matched)).await;
    drop(permit);
    match outcome {
        Ok(outcome) => outcome,
        Err(_elapsed) => {
            tracing::warn!(route = label, "request deadline passed");
            Err(Problem::unavailable("the request took too long; retry"))
        }
    }
}
