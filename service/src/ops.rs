//! The operations listener of every service (the consumer's `CONSUMER_HTTP_LISTEN`, the
//! ingress's `INGRESS_OPS_LISTEN`): `/healthz` (the process runs), `/readyz` (it does its job)
//! and `/metrics` (Prometheus). It belongs inside the cluster: nothing routes to it from outside.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// What the operations endpoints report.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when the process does its job; the reason otherwise. Cheap and local.
    fn ready(&self) -> Result<(), String>;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
}

/// Serves the operations endpoints on `listener` until `stop` completes.
pub async fn serve(listener: TcpListener, probe: Arc<dyn Probe>, stop: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let probe = probe.clone();
                let service = service_fn(move |request| {
                    let probe = probe.clone();
                    async move { Ok::<_, Infallible>(answer(probe.as_ref(), &request)) }
                });
                let connection = http.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut stop => return,
        }
    }
}

fn answer<B>(probe: &dyn Probe, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    match request.uri().path() {
        "/healthz" => text(
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_owned(),
        ),
        "/readyz" => match probe.ready() {
            Ok(()) => text(
                StatusCode::OK,
                "application/json",
                r#"{"status":"ready"}"#.to_owned(),
            ),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_like_json(&reason),
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            probe.metrics(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

/// `{"status":"not ready","reason":…}` with the reason escaped.
fn serde_like_json(reason: &str) -> String {
    let escaped: String = reason
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect();
    format!(r#"{{"status":"not ready","reason":"{escaped}"}}"#)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
