//! A webhook receiver for the notification tests: verifies each delivery's signature as a
//! receiver would, from the contract in docs/TOPICS.md, answers as told (fail the first N
//! attempts of every delivery, fail all, redirect elsewhere, or accept), and records what it
//! saw.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::Sha256;

/// Header names of a delivery.
const DELIVERY_HEADER: &str = "x-coupon-delivery-id";
const TIMESTAMP_HEADER: &str = "x-coupon-timestamp";
const SIGNATURE_HEADER: &str = "x-coupon-signature";

/// The signature a delivery must carry: `sha256=` and the hex HMAC-SHA256 of
/// `<timestamp>.<body>` under the shared secret.
fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Fail every delivery this many times before accepting it; `u32::MAX` fails all.
pub struct Webhook {
    pub port: u16,
    failures_first: Arc<AtomicU32>,
    /// Answer every delivery with a 307 to this URL instead.
    redirect: Arc<Mutex<Option<String>>>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub attempts: u32,
    pub accepted: u32,
    pub bad_signatures: u32,
    pub body: Option<serde_json::Value>,
}

impl Webhook {
    pub async fn start(secret: &'static str) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let failures_first = Arc::new(AtomicU32::new(0));
        let redirect: Arc<Mutex<Option<String>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let task = tokio::spawn({
            let failures_first = failures_first.clone();
            let redirect = redirect.clone();
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let failures_first = failures_first.clone();
                    let redirect = redirect.clone();
                    let seen = seen.clone();
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let failures_first = failures_first.clone();
                            let redirect = redirect.lock().unwrap().clone();
                            let seen = seen.clone();
                            async move {
                                let header = |name: &str| {
                                    request
                                        .headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_owned()
                                };
                                let delivery = header(DELIVERY_HEADER);
                                let timestamp = header(TIMESTAMP_HEADER);
                                let signed = header(SIGNATURE_HEADER);
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let valid =
                                    signed == signature(secret.as_bytes(), &timestamp, &body);
                                let mut seen = seen.lock().unwrap();
                                let entry = seen.entry(delivery).or_default();
                                entry.attempts += 1;
                                if !valid {
                                    entry.bad_signatures += 1;
                                }
                                let fail = entry.attempts <= failures_first.load(Ordering::SeqCst);
                                let status = match &redirect {
                                    Some(_) => 307,
                                    None if fail => 500,
                                    None => 204,
                                };
                                if status == 204 {
                                    entry.accepted += 1;
                                    entry.body = serde_json::from_slice(&body).ok();
                                }
                                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                if let Some(location) = redirect {
                                    response
                                        .headers_mut()
                                        .insert(hyper::header::LOCATION, location.parse().unwrap());
                                }
                                Ok::<_, Infallible>(response)
                            }
                        });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Webhook {
            port,
            failures_first,
            redirect,
            seen,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/coupons", self.port)
    }

    /// Every delivery is answered with a 307 to `url`.
    pub fn redirect_to(&self, url: String) {
        *self.redirect.lock().unwrap() = Some(url);
    }

    /// Every delivery fails its first `n` attempts (`u32::MAX`: all of them).
    pub fn fail_first(&self, n: u32) {
        self.failures_first.store(n, Ordering::SeqCst);
    }

    pub fn seen(&self) -> HashMap<String, Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Delivery ids accepted at least once.
    pub fn accepted(&self) -> usize {
        self.seen().values().filter(|s| s.accepted > 0).count()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
