//! Browsers on other origins (CORS, the Fetch standard). Off unless `CORS_ALLOWED_ORIGINS`
//! names origins: then a preflight (`OPTIONS` with `Origin` and
//! `Access-Control-Request-Method`) on a route of the table is answered here, before any limit,
//! token or permit, and every other answer to an allowed origin says the browser may read it.
//!
//! - Allowed origin: the preflight is 204 with the route's methods, the request headers the API
//!   reads and `CORS_MAX_AGE_SECS`; every answer (problems, 202, 304, 429 and 503 included)
//!   echoes the origin and exposes `Location`, `Retry-After`, `Preference-Applied` and `ETag`.
//!   Never `Access-Control-Allow-Credentials`: the API takes bearer tokens, not cookies.
//! - Any other origin, or CORS off: the preflight is 403 (a problem, no CORS headers), so the
//!   browser refuses the call; other answers carry no CORS headers.
//! - With CORS on, every answer carries `Vary: Origin`, so a shared cache never hands one
//!   origin's answer to another.
//!
//! An `OPTIONS` without the preflight headers is an ordinary request (405 with the route).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::Reply;
use super::problem::Problem;
use super::routes;
use crate::App;

/// The request headers a page may send: the token, JSON bodies, the long-poll's wait and the
/// public reads' validator.
const ALLOW_HEADERS: &str = "authorization, content-type, prefer, if-none-match";
/// The answer headers a page may read besides the CORS-safelisted ones.
const EXPOSE_HEADERS: &str = "Location, Retry-After, Preference-Applied, ETag";

/// The CORS settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CorsArgs {
    /// Origins whose pages may call the API from a browser: exact origins, comma-separated
    /// (`https://shop.example.com,http://localhost:3000`), or `*` for any. Unset or empty (the
    /// default): no CORS headers, and browsers refuse cross-origin calls.
    #[arg(
        long = "cors-allowed-origins",
        env = "CORS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// How long a browser may reuse a preflight's answer, in seconds (`Access-Control-Max-Age`;
    /// browsers cap it, Chromium at 7200).
    #[arg(
        long = "cors-max-age-secs",
        env = "CORS_MAX_AGE_SECS",
        default_value_t = 600
    )]
    pub max_age_secs: u32,
}

impl CorsArgs {
    /// Each entry is `*` (alone) or an origin as browsers send it; the max age is at most a day.
    pub fn problems(&self, problems: &mut Vec<String>) {
        let entries: Vec<&str> = self.entries().collect();
        for (n, entry) in entries.iter().enumerate() {
            if *entry == "*" {
                if entries.len() > 1 {
                    problems.push("CORS_ALLOWED_ORIGINS: `*` must be the only entry".to_owned());
                }
            } else if !is_origin(entry) {
                problems.push(format!(
                    "CORS_ALLOWED_ORIGINS: entry {} is not an origin (scheme://host[:port] with \
                     scheme http or https, lower case, no path or trailing slash), nor `*`",
                    n + 1
                ));
            }
        }
        if self.max_age_secs > 86_400 {
            problems.push("CORS_MAX_AGE_SECS must be at most 86400".to_owned());
        }
    }

    fn entries(&self) -> impl Iterator<Item = &str> {
        self.allowed_origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
    }

    /// Whether CORS is on at all.
    pub fn enabled(&self) -> bool {
        self.entries().next().is_some()
    }

    fn allows(&self, origin: &[u8]) -> bool {
        self.entries()
            .any(|entry| entry == "*" || entry.as_bytes() == origin)
    }
}

/// `scheme://host[:port]` as a browser serialises an origin: http or https, a lower-case host
/// without user info, path, query or fragment, a port of digits.
fn is_origin(entry: &str) -> bool {
    let Some((scheme, rest)) = entry.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal holds colons of its own: `[::1]` or `[::1]:3000`.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            ipv6.parse::<std::net::Ipv6Addr>().is_ok() && !ipv6.contains(char::is_uppercase)
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0) && !p.starts_with('0'));
    matches!(scheme, "http" | "https") && host_ok && port_ok
}

/// What CORS means for one request: its `Origin`, when CORS is on and allows it.
pub struct Cors {
    enabled: bool,
    allowed: Option<HeaderValue>,
}

impl Cors {
    pub fn of<B>(args: &CorsArgs, request: &Request<B>) -> Cors {
        let enabled = args.enabled();
        let allowed = request
            .headers()
            .get(header::ORIGIN)
            .filter(|origin| enabled && args.allows(origin.as_bytes()))
            .cloned();
        Cors { enabled, allowed }
    }

    /// The answer to a preflight on a route of the table; `None` for any other request.
    pub fn preflight<B>(&self, app: &App, request: &Request<B>) -> Option<Reply> {
        let started = Instant::now();
        let headers = request.headers();
        if request.method() != Method::OPTIONS
            || !headers.contains_key(header::ORIGIN)
            || !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return None;
        }
        let route = routes::find(request.uri().path())?.route;
        let reply = match &self.allowed {
            Some(origin) => {
                let methods: Vec<&str> = route.methods().iter().map(Method::as_str).collect();
                let max_age = app.config.cors.max_age_secs.to_string();
                let mut reply = Response::new(Full::new(Bytes::new()));
                *reply.status_mut() = StatusCode::NO_CONTENT;
                let out = reply.headers_mut();
                out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                insert(
                    out,
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    &methods.join(", "),
                );
                insert(out, header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
                insert(out, header::ACCESS_CONTROL_MAX_AGE, &max_age);
                out.append(header::VARY, HeaderValue::from_static("Origin"));
                reply
            }
            None => Problem::Forbidden.into_response(),
        };
        app.metrics
            .request(route.label(), reply.status().as_u16(), started);
        Some(reply)
    }

    /// Adds to an actual answer what the browser needs to hand it to the page.
    pub fn apply(&self, mut reply: Reply) -> Reply {
        if !self.enabled {
            return reply;
        }
        let out = reply.headers_mut();
        out.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = &self.allowed {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            insert(out, header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
        }
        reply
    }
}

fn insert(headers: &mut http::HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(origins: &[&str]) -> CorsArgs {
        CorsArgs {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            max_age_secs: 600,
        }
    }

    fn problems(origins: &[&str]) -> Vec<String> {
        let mut problems = Vec::new();
        args(origins).problems(&mut problems);
        problems
    }

    #[test]
    fn origins_are_checked_as_browsers_send_them() {
        for good in [
            "http://localhost:3000",
            "https://shop.example.com",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
            "https://[::1]",
        ] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "localhost:3000",
            "ftp://example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://Example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://user@example.com",
            "https://",
            "null",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert!(problems(&["http://localhost:3000", " https://a.example "]).is_empty());
        assert!(problems(&["*"]).is_empty());
        assert!(problems(&[""]).is_empty(), "empty: off");
        assert_eq!(
            problems(&["*", "http://localhost:3000"]),
            ["CORS_ALLOWED_ORIGINS: `*` must be the only entry"; 1]
        );
        let wrong = problems(&["http://localhost:3000", "http://localhost:3000/"]);
        assert!(
            wrong.len() == 1 && wrong[0].starts_with("CORS_ALLOWED_ORIGINS: entry 2"),
            "{wrong:?}"
        );
    }

    #[test]
    fn only_listed_origins_are_allowed_and_empty_means_off() {
        let some = args(&["http://localhost:3000", "https://a.example"]);
        assert!(some.enabled());
        assert!(some.allows(b"http://localhost:3000"));
        assert!(some.allows(b"https://a.example"));
        assert!(!some.allows(b"http://localhost:3001"));
        assert!(!some.allows(b"https://a.example.evil"));
        assert!(args(&["*"]).allows(b"https://anything.example"));
        assert!(!args(&[]).enabled());
        assert!(!args(&["", " "]).enabled());
    }
}
