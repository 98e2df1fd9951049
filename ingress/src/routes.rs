//! Routing: path and method to handler, body limits, and the conversion of every outcome to a
//! JSON or problem response.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use schema::ids::{CampaignId, IssuanceId};
use serde::Serialize;
use tracing::Instrument as _;

use crate::auth::Principal;
use crate::problem::Problem;
use crate::{App, campaigns, coupons, issuances};

type Reply = Response<Full<Bytes>>;

pub async fn handle(app: &App, request: Request<Incoming>, peer: std::net::SocketAddr) -> Reply {
    let started = std::time::Instant::now();
    let label = route_label(request.uri().path());
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.method = %request.method(),
        http.route = label,
        http.status = tracing::field::Empty,
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
    let reply = match guarded(app, request, peer, label)
        .instrument(span.clone())
        .await
    {
        Ok(reply) => reply,
        Err(problem) => problem.into_response(),
    };
    span.record("http.status", reply.status().as_u16());
    app.metrics.request(label, reply.status().as_u16(), started);
    reply
}

/// The limits around the API routes: load shedding, the client address's rate and the request
/// deadline. Probes and metrics answer regardless.
async fn guarded(
    app: &App,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
    label: &'static str,
) -> Result<Reply, Problem> {
    if matches!(label, "healthz" | "readyz" | "metrics") {
        return route(app, request).await;
    }
    let Ok(_permit) = app.in_flight.try_acquire() else {
        app.metrics.shed.inc();
        return Err(Problem::Unavailable {
            detail: "overloaded; retry",
            retry_after_secs: 1,
        });
    };
    app.limits.address(crate::limits::client_address(
        peer,
        request.headers(),
        &app.config.trusted_proxies,
    ))?;
    let deadline = std::time::Duration::from_millis(app.config.request_timeout_ms);
    match tokio::time::timeout(deadline, route(app, request)).await {
        Ok(outcome) => outcome,
        Err(_elapsed) => {
            tracing::warn!(route = label, "request deadline passed");
            Err(Problem::Unavailable {
                detail: "the request took too long; retry",
                retry_after_secs: 1,
            })
        }
    }
}

/// The route's name in metrics: one of a fixed set, whatever the path holds.
fn route_label(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => "healthz",
        ["readyz"] => "readyz",
        ["metrics"] => "metrics",
        ["v1", "campaigns", _, "issuances"] => "issuances",
        ["v1", "campaigns"] => "public_campaigns",
        ["v1", "campaigns", _] => "public_campaign",
        ["v1", "issuances", _] => "issuance",
        ["v1", "admin", "campaigns"] => "admin_campaigns",
        ["v1", "admin", "campaigns", _] => "admin_campaign",
        ["v1", "admin", "campaigns", _, "close"] => "admin_campaign_close",
        ["v1", "me", "coupons"] => "my_coupons",
        ["v1", "coupons", _, "redeem"] => "redeem",
        ["v1", "coupons", _, "refund"] => "refund",
        ["v1", "admin", "coupons", _, "cancel"] => "admin_coupon_cancel",
        _ => "other",
    }
}

async fn route(app: &App, request: Request<Incoming>) -> Result<Reply, Problem> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = request.method().clone();
    match (segments.as_slice(), &method) {
        (["healthz"], &Method::GET) => {
            Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
        }
        (["readyz"], &Method::GET) => readyz(app).await,
        (["metrics"], &Method::GET) => Ok(metrics(app)),
        (["v1", "campaigns", id, "issuances"], &Method::POST) => {
            let caller = user(app, &request).await?;
            let campaign = parse_campaign(id)?;
            read_body(app, request).await?;
            let accepted = issuances::request(app, &caller, campaign).await?;
            let mut reply = json(StatusCode::ACCEPTED, &accepted);
            let location = format!("/v1/issuances/{}", accepted.issuance_id);
            if let Ok(value) = HeaderValue::from_str(&location) {
                reply.headers_mut().insert(header::LOCATION, value);
            }
            Ok(reply)
        }
        (["v1", "issuances", id], &Method::GET) => {
            let caller = user(app, &request).await?;
            let issuance: IssuanceId = id
                .parse()
                .map_err(|e: schema::ids::IdError| Problem::BadRequest(e.to_string()))?;
            let status = issuances::status(app, &caller, issuance).await?;
            Ok(json(StatusCode::OK, &status))
        }
        (["v1", "admin", "campaigns", id], &Method::PATCH) => {
            admin(app, &request).await?;
            let campaign = parse_campaign(id)?;
            let body = read_body(app, request).await?;
            Ok(json(
                StatusCode::OK,
                &campaigns::update(app, &campaign, &body).await?,
            ))
        }
        (["v1", "admin", "campaigns", id, "close"], &Method::POST) => {
            admin(app, &request).await?;
            let campaign = parse_campaign(id)?;
            Ok(json(
                StatusCode::OK,
                &campaigns::close(app, &campaign).await?,
            ))
        }
        (["v1", "campaigns"], &Method::GET) => {
            let list = crate::public::list(app).await?;
            Ok(json(StatusCode::OK, &json_list(&list)))
        }
        (["v1", "campaigns", id], &Method::GET) => {
            let campaign = parse_campaign(id)?;
            Ok(json(
                StatusCode::OK,
                crate::public::campaign(app, &campaign).await?.as_ref(),
            ))
        }
        (["v1", "me", "coupons"], &Method::GET) => {
            let caller = user(app, &request).await?;
            let page = coupons::mine(app, &caller, request.uri().query()).await?;
            Ok(json(StatusCode::OK, &page))
        }
        (["v1", "coupons", id, "redeem"], &Method::POST) => {
            let caller = user(app, &request).await?;
            let coupon = parse_coupon(id)?;
            let body = read_body(app, request).await?;
            let view = coupons::redeem(app, &caller, coupon, &body).await?;
            Ok(json(StatusCode::OK, &view))
        }
        (["v1", "coupons", id, "refund"], &Method::POST) => {
            let caller = user(app, &request).await?;
            let coupon = parse_coupon(id)?;
            let body = read_body(app, request).await?;
            let view = coupons::refund(app, &caller, coupon, &body).await?;
            Ok(json(StatusCode::OK, &view))
        }
        (["v1", "admin", "coupons", id, "cancel"], &Method::POST) => {
            admin(app, &request).await?;
            let coupon = parse_coupon(id)?;
            Ok(json(StatusCode::OK, &coupons::cancel(app, coupon).await?))
        }
        (["v1", "admin", "campaigns"], &Method::GET) => {
            admin(app, &request).await?;
            let page = campaigns::list(app, request.uri().query()).await?;
            Ok(json(StatusCode::OK, &page))
        }
        (["v1", "admin", "campaigns"], &Method::POST) => {
            admin(app, &request).await?;
            let body = read_body(app, request).await?;
            let view = campaigns::create(app, &body).await?;
            let mut reply = json(StatusCode::CREATED, &view);
            if let Ok(value) = HeaderValue::from_str(&format!("/v1/admin/campaigns/{}", view.id)) {
                reply.headers_mut().insert(header::LOCATION, value);
            }
            Ok(reply)
        }
        (["v1", "admin", "campaigns", id], &Method::GET) => {
            admin(app, &request).await?;
            let campaign = parse_campaign(id)?;
            let view = campaigns::detail(app, &campaign)
                .await?
                .ok_or(Problem::NotFound("unknown campaign"))?;
            Ok(json(StatusCode::OK, &view))
        }
        (
            ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["v1", "campaigns", _, "issuances"]
            | ["v1", "issuances", _]
            | ["v1", "admin", "campaigns"]
            | ["v1", "admin", "campaigns", _]
            | ["v1", "admin", "campaigns", _, "close"]
            | ["v1", "me", "coupons"]
            | ["v1", "campaigns"]
            | ["v1", "campaigns", _]
            | ["v1", "coupons", _, "redeem" | "refund"]
            | ["v1", "admin", "coupons", _, "cancel"],
            _,
        ) => Err(Problem::MethodNotAllowed),
        _ => Err(Problem::NotFound("no such route")),
    }
}

async fn authenticate(app: &App, request: &Request<Incoming>) -> Result<Principal, Problem> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    Ok(app.keys.verify_header(header).await?)
}

/// A user route's caller, counted against the per-user rate.
async fn user(app: &App, request: &Request<Incoming>) -> Result<Principal, Problem> {
    let caller = authenticate(app, request).await?;
    app.limits.user(caller.user.as_str())?;
    Ok(caller)
}

async fn admin(app: &App, request: &Request<Incoming>) -> Result<Principal, Problem> {
    let caller = authenticate(app, request).await?;
    if caller.admin {
        Ok(caller)
    } else {
        Err(Problem::Forbidden)
    }
}

fn parse_campaign(id: &str) -> Result<CampaignId, Problem> {
    id.parse()
        .map_err(|e: schema::ids::IdError| Problem::BadRequest(e.to_string()))
}

fn parse_coupon(id: &str) -> Result<uuid::Uuid, Problem> {
    id.parse()
        .map_err(|_| Problem::BadRequest("coupon id must be a UUID".to_owned()))
}

/// Reads the whole body within the size limit. A non-empty body must be a JSON object; fields
/// the route does not use are ignored (the token, not the body, names the user).
async fn read_body(app: &App, request: Request<Incoming>) -> Result<Bytes, Problem> {
    let limit = app.config.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Problem::PayloadTooLarge);
    }
    let json_content = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|_| Problem::PayloadTooLarge)?
        .to_bytes();
    if body.is_empty() {
        return Ok(body);
    }
    if !json_content {
        return Err(Problem::UnsupportedMediaType);
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(_)) => Ok(body),
        Ok(_) => Err(Problem::BadRequest("body must be a JSON object".to_owned())),
        Err(e) => Err(Problem::BadRequest(format!("body is not valid JSON: {e}"))),
    }
}

async fn readyz(app: &App) -> Result<Reply, Problem> {
    if !app.ready.load(Ordering::SeqCst) {
        return Err(Problem::Unavailable {
            detail: "shutting down",
            retry_after_secs: 1,
        });
    }
    app.gate
        .ping()
        .await
        .map_err(|_| crate::redis_unavailable())?;
    app.publisher
        .check(std::time::Duration::from_secs(2))
        .await
        .map_err(|_| Problem::Unavailable {
            detail: "kafka is unreachable",
            retry_after_secs: 1,
        })?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready"}),
    ))
}

fn json_list(list: &[crate::public::PublicCampaign]) -> serde_json::Value {
    serde_json::json!({ "items": list })
}

fn metrics(app: &App) -> Reply {
    service::metrics::set_count(&app.metrics.producer_queue, app.publisher.queued());
    app.metrics.jwks_refreshes.set(
        i64::try_from(
            app.keys
                .refreshes
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(i64::MAX),
    );
    let mut reply = Response::new(Full::new(Bytes::from(app.metrics.render())));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(service::metrics::CONTENT_TYPE),
    );
    reply
}

fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut reply = Response::new(Full::new(Bytes::from(bytes)));
            *reply.status_mut() = status;
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            reply
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialisation failed");
            Problem::Internal.into_response()
        }
    }
}
