//! A webhook receiver for the notification tests: records every attempt (its body and
//! headers), answers as told (fail the first N attempts of every delivery, fail all, redirect
//! elsewhere, or accept), and has the attempts verified by the Standard Webhooks reference
//! verifier (PyPI `standardwebhooks` 1.1.0), not by code of ours.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The delivery id header, stable across a delivery's attempts.
const DELIVERY_HEADER: &str = "webhook-id";

/// The verifier's pinned version.
const VERIFIER: &str = "standardwebhooks==1.1.0";

/// Reads `{"secret": ..., "attempts": [{"body": ..., "headers": {...}}]}` from stdin and prints
/// one line per attempt: `ok`, or the verifier's refusal.
const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
request = json.load(sys.stdin)
hook = Webhook(request["secret"])
for attempt in request["attempts"]:
    try:
        hook.verify(attempt["body"], attempt["headers"])
        print("ok")
    except Exception as e:
        print(f"refused: {type(e).__name__}: {e}")
"#;

/// One attempt as the receiver got it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub body: String,
    pub headers: BTreeMap<String, String>,
}

/// What `standardwebhooks` says of each attempt, in order: `ok` or why it refused it.
pub fn standard_verdicts(secret: &str, attempts: &[Attempt]) -> Vec<String> {
    let installed = Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        let pip = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                VERIFIER,
            ])
            .status()
            .expect("python3 runs");
        assert!(pip.success(), "pip install {VERIFIER}");
    }
    let mut python = Command::new("python3")
        .args(["-c", VERIFY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let attempts: Vec<_> = attempts
        .iter()
        .map(|a| serde_json::json!({ "body": a.body, "headers": a.headers }))
        .collect();
    let request = serde_json::json!({ "secret": secret, "attempts": attempts });
    python
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "the verifier ran");
    let verdicts: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(verdicts.len(), attempts.len());
    verdicts
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
    pub body: Option<serde_json::Value>,
    /// Every attempt, as received.
    pub received: Vec<Attempt>,
}

impl Webhook {
    pub async fn start() -> Webhook {
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
                                let headers = request
                                    .headers()
                                    .iter()
                                    .map(|(name, value)| {
                                        let value = value.to_str().unwrap_or_default();
                                        (name.as_str().to_owned(), value.to_owned())
                                    })
                                    .collect();
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let mut seen = seen.lock().unwrap();
                                let entry = seen.entry(delivery).or_default();
                                entry.attempts += 1;
                                entry.received.push(Attempt {
                                    body: String::from_utf8_lossy(&body).into_owned(),
                                    headers,
                                });
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

    /// Every attempt received so far.
    pub fn received(&self) -> Vec<Attempt> {
        let seen = self.seen();
        seen.into_values().flat_map(|s| s.received).collect()
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
