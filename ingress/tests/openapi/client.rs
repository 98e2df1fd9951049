//! A client that checks every answer of the ingress against the document and records which
//! documented answers it has seen.

use std::collections::BTreeSet;
use std::sync::Mutex;

use http::HeaderMap;
use serde_json::Value;
use testkit::token;

use super::contract::{Answer, Document};
use crate::support::Stack;

/// The document and the answers seen so far, across every stack of the test.
pub struct Conformance {
    pub document: Document,
    seen: Mutex<BTreeSet<Answer>>,
}

impl Conformance {
    pub fn new() -> Conformance {
        Conformance {
            document: Document::load(),
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// The ingress of `stack`, seen through the document.
    pub fn api<'a>(&'a self, stack: &'a Stack) -> Api<'a> {
        Api {
            stack,
            conformance: self,
        }
    }

    /// Every documented answer was seen, and nothing else was.
    pub fn assert_all_seen(&self) {
        let seen = self.seen.lock().unwrap();
        let documented = self.document.answers();
        let mut failures = Vec::new();
        for answer in documented.difference(&seen) {
            failures.push(format!("documented, never answered: {answer}"));
        }
        for answer in seen.difference(&documented) {
            failures.push(format!("answered, not documented: {answer}"));
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }
}

#[derive(Clone, Copy)]
pub struct Api<'a> {
    pub stack: &'a Stack,
    conformance: &'a Conformance,
}

impl<'a> Api<'a> {
    pub fn get(&self, path: &str) -> Call<'a> {
        self.call(self.stack.http.get(self.url(path)))
    }

    pub fn post(&self, path: &str) -> Call<'a> {
        self.call(self.stack.http.post(self.url(path)))
    }

    pub fn patch(&self, path: &str) -> Call<'a> {
        self.call(self.stack.http.patch(self.url(path)))
    }

    /// Any request, e.g. one built from the document's operations.
    pub fn request(&self, method: http::Method, path: &str) -> Call<'a> {
        self.call(self.stack.http.request(method, self.url(path)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.stack.base)
    }

    fn call(&self, request: reqwest::RequestBuilder) -> Call<'a> {
        Call {
            api: *self,
            request,
        }
    }
}

/// A request on its way; [`Call::send`] checks and records the answer.
pub struct Call<'a> {
    api: Api<'a>,
    request: reqwest::RequestBuilder,
}

impl Call<'_> {
    /// As the user `sub`.
    pub fn user(self, sub: &str) -> Self {
        self.with(|r| r.bearer_auth(token(sub, None, 600)))
    }

    /// As the order service (redeem and refund).
    pub fn service(self) -> Self {
        self.with(|r| r.bearer_auth(token("order-service", Some("service"), 600)))
    }

    /// As an operator.
    pub fn admin(self) -> Self {
        let admin = self.api.stack.admin_token();
        self.with(|r| r.bearer_auth(admin))
    }

    pub fn json(self, body: &Value) -> Self {
        self.with(|r| r.json(body))
    }

    pub fn body(self, content_type: &str, body: impl Into<reqwest::Body>) -> Self {
        self.with(|r| r.header("content-type", content_type).body(body))
    }

    pub fn with(self, f: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder) -> Self {
        Call {
            api: self.api,
            request: f(self.request),
        }
    }

    /// Sends it; panics unless the answer is one the document lists for the operation.
    pub async fn send(self) -> Reply {
        let (client, request) = self.request.build_split();
        let request = request.unwrap();
        let method = request.method().clone();
        let path = request.url().path().to_owned();
        let response = client.execute(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let conformance = self.api.conformance;
        match conformance
            .document
            .check(&method, &path, status, &headers, &bytes)
        {
            Ok((answer, body)) => {
                conformance.seen.lock().unwrap().insert(answer);
                Reply {
                    status,
                    headers,
                    body,
                }
            }
            Err(errors) => panic!(
                "{method} {path} answered {status}, not as documented:\n  {}\nbody: {}",
                errors.join("\n  "),
                String::from_utf8_lossy(&bytes)
            ),
        }
    }

    /// Sends it and expects `status`.
    pub async fn expect(self, status: u16) -> Reply {
        let reply = self.send().await;
        assert_eq!(reply.status, status, "{}", reply.body);
        reply
    }
}

/// A checked answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    /// The JSON body, or the text of a text body.
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }

    /// A string field of the body.
    pub fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {}", self.body))
            .to_owned()
    }
}
