//! What shared caches (a CDN in front of the load balancer) and browsers may keep.
//!
//! - Public campaign reads (`GET /v1/campaigns`, `GET /v1/campaigns/{campaign_id}`) are the same
//!   for everyone and at most `campaigns::public::TTL` old: a 200 carries `Cache-Control:
//!   public, max-age=<TTL in seconds>` and a strong `ETag` (a hash of the body's bytes); a
//!   request whose `If-None-Match` matches it (weak comparison, `*` and lists included, RFC 9110
//!   13.1.2) is answered 304 with both and no body. Their failures (400, 404, 429, 503) are
//!   `no-store`: a campaign created a moment later must not read as unknown from a cache.
//! - Every other answer (the caller's issuances and coupons, the operator and order-service
//!   routes, the probes) is `private, no-store`.
//!
//! An answer that already says `Cache-Control` keeps it.

use std::hash::Hasher as _;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use super::Reply;
use super::routes::{self, Route};
use crate::campaigns::public::TTL;

/// What a request's answer may be cached as.
pub struct Caching {
    /// A public campaign read.
    public: bool,
    /// Its `If-None-Match` fields.
    if_none_match: Vec<HeaderValue>,
}

impl Caching {
    pub fn of<B>(request: &Request<B>) -> Caching {
        let public = request.method() == Method::GET
            && routes::find(request.uri().path())
                .is_some_and(|m| matches!(m.route, Route::PublicCampaigns | Route::PublicCampaign));
        let if_none_match = if public {
            let fields = request.headers().get_all(header::IF_NONE_MATCH);
            fields.iter().cloned().collect()
        } else {
            Vec::new()
        };
        Caching {
            public,
            if_none_match,
        }
    }

    /// The answer with its caching headers; a public read the client holds becomes a 304.
    pub async fn apply(self, mut reply: Reply) -> Reply {
        if reply.headers().contains_key(header::CACHE_CONTROL) {
            return reply;
        }
        if !self.public || reply.status() != StatusCode::OK {
            let policy = if self.public {
                "no-store"
            } else {
                "private, no-store"
            };
            (reply.headers_mut()).insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
            return reply;
        }
        let (mut parts, body) = reply.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let tag = etag(&bytes);
        if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={}", TTL.as_secs())) {
            parts.headers.insert(header::CACHE_CONTROL, value);
        }
        let held = self.if_none_match.iter().any(|field| {
            field
                .to_str()
                .is_ok_and(|list| matches_any(list, &tag[1..tag.len() - 1]))
        });
        if let Ok(value) = HeaderValue::from_str(&tag) {
            parts.headers.insert(header::ETAG, value);
        }
        if held {
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(header::CONTENT_TYPE);
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, Full::new(Bytes::new()));
        }
        Response::from_parts(parts, Full::new(bytes))
    }
}

/// A strong entity tag for `body`: its length and a 64-bit hash of its bytes, quoted. The hash
/// has fixed keys, so every ingress process of a release tags the same body alike.
fn etag(body: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(body);
    format!("\"{:x}-{:016x}\"", body.len(), hasher.finish())
}

/// Whether an `If-None-Match` field value (`*`, or a list of entity tags, weak or strong) names
/// the tag whose opaque part (between the quotes) is `opaque`. A malformed list matches nothing
/// past the malformed point.
fn matches_any(list: &str, opaque: &str) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return false;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(inner) = tag.strip_prefix('"') else {
            return false;
        };
        let Some(end) = inner.find('"') else {
            return false;
        };
        if &inner[..end] == opaque {
            return true;
        }
        rest = &inner[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_reads_lists_and_any() {
        let tag = etag(b"{\"items\":[]}");
        let opaque = &tag[1..tag.len() - 1];
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_eq!(tag, etag(b"{\"items\":[]}"), "the same body, the same tag");
        assert_ne!(tag, etag(b"{\"items\":[1]}"));
        for list in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"other\", {tag}"),
            format!("W/\"a\",W/{tag} , \"b\""),
            "*".to_owned(),
            " * ".to_owned(),
        ] {
            assert!(matches_any(&list, opaque), "{list}");
        }
        for list in [
            String::new(),
            "\"other\"".to_owned(),
            opaque.to_owned(),
            format!("\"x\" garbage, {tag}"),
            format!("w/{tag}"),
            format!("\"{opaque}"),
        ] {
            assert!(!matches_any(&list, opaque), "{list}");
        }
    }

    fn reply(status: StatusCode, body: &'static str) -> Reply {
        let mut reply = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *reply.status_mut() = status;
        reply
    }

    fn caching(method: Method, path: &str, if_none_match: Option<&str>) -> Caching {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(value) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, value);
        }
        Caching::of(&request.body(()).unwrap())
    }

    #[tokio::test]
    async fn public_reads_are_tagged_and_answered_304_when_held_the_rest_is_not_stored() {
        let fresh = caching(Method::GET, "/v1/campaigns", None)
            .apply(reply(StatusCode::OK, "{}"))
            .await;
        let tag = fresh.headers()[header::ETAG].to_str().unwrap().to_owned();
        let max_age = format!("public, max-age={}", TTL.as_secs());
        assert_eq!(fresh.headers()[header::CACHE_CONTROL], max_age.as_str());
        let held = caching(Method::GET, "/v1/campaigns", Some(&tag))
            .apply(reply(StatusCode::OK, "{}"))
            .await;
        assert_eq!(held.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(held.headers()[header::ETAG], tag.as_str());
        assert_eq!(held.headers()[header::CACHE_CONTROL], max_age.as_str());
        assert!(
            held.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
        let missing = caching(Method::GET, "/v1/campaigns/x", Some("*"))
            .apply(reply(StatusCode::NOT_FOUND, "{}"))
            .await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(missing.headers()[header::CACHE_CONTROL], "no-store");
        let mine = caching(Method::GET, "/v1/me/coupons", Some(&tag))
            .apply(reply(StatusCode::OK, "{}"))
            .await;
        assert_eq!(mine.status(), StatusCode::OK);
        assert_eq!(mine.headers()[header::CACHE_CONTROL], "private, no-store");
        assert!(!mine.headers().contains_key(header::ETAG));
    }
}
