//! `/healthz` (the process runs), `/readyz` (it can take traffic: not shutting down, Redis and
//! Kafka answer) and `/metrics`, outside the API's limits.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

use super::Reply;
use super::body::json;
use super::problem::Problem;
use super::routes::Route;
use crate::App;

pub(super) async fn answer(app: &App, route: Route, method: &Method) -> Result<Reply, Problem> {
    if !route.methods().contains(method) {
        return Err(Problem::MethodNotAllowed);
    }
    match route {
        Route::Readyz => readyz(app).await,
        Route::Metrics => Ok(metrics(app)),
        _ => Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
    }
}

async fn readyz(app: &App) -> Result<Reply, Problem> {
    if !app.ready.load(Ordering::SeqCst) {
        return Err(Problem::unavailable("shutting down"));
    }
    app.gate.ping().await?;
    app.publisher
        .check(std::time::Duration::from_secs(2))
        .await
        .map_err(|_| Problem::unavailable("kafka is unreachable"))?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready"}),
    ))
}

fn metrics(app: &App) -> Reply {
    service::metrics::set_count(&app.metrics.producer_queue, app.publisher.queued());
    app.metrics
        .jwks_refreshes
        .set(i64::try_from(app.keys.refreshes.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    let mut reply = Response::new(Full::new(Bytes::from(app.metrics.render())));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(service::metrics::CONTENT_TYPE),
    );
    reply
}
