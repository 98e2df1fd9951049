//! Browsers and caches in front of the real ingress: CORS for configured origins (preflights,
//! and the headers on every answer, problems included) and the caching headers of the public
//! and the per-user reads.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use crate::support::Stack;

const PAGE: &str = "http://localhost:3000";

/// A preflight from `origin` for `method` on `path`.
async fn preflight(stack: &Stack, path: &str, origin: &str, method: &str) -> Response {
    (stack.http)
        .request(Method::OPTIONS, format!("{}{path}", stack.base))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// What a page on `origin` may read of an answer: the origin echoed, the headers it needs
/// exposed, and `Vary: Origin`.
#[track_caller]
fn readable_by(headers: &HeaderMap, origin: &str) {
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        Some(origin),
        "{headers:?}"
    );
    let exposed = header(headers, "access-control-expose-headers").unwrap_or_default();
    for name in ["Location", "Retry-After", "Preference-Applied", "ETag"] {
        assert!(exposed.contains(name), "{name} not exposed: {headers:?}");
    }
    assert_eq!(header(headers, "vary"), Some("Origin"));
    assert!(!headers.contains_key("access-control-allow-credentials"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_a_configured_origin_is_allowed_without_a_token_or_a_limit() {
    // One request per second from an address: preflights must not spend it.
    let stack = Stack::ingress_with(&[
        &format!("--cors-allowed-origins={PAGE},https://shop.example"),
        "--rate-limit-ip-per-sec=1",
        "--rate-limit-ip-burst=1",
    ])
    .await;
    let issuances = format!("/v1/campaigns/{}/issuances", uuid::Uuid::now_v7());
    for _ in 0..20 {
        let allowed = preflight(&stack, &issuances, PAGE, "POST").await;
        assert_eq!(allowed.status(), 204);
        let headers = allowed.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), Some(PAGE));
        assert_eq!(
            header(headers, "access-control-allow-methods"),
            Some("POST")
        );
        assert_eq!(
            header(headers, "access-control-allow-headers"),
            Some("authorization, content-type, prefer, if-none-match")
        );
        assert_eq!(header(headers, "access-control-max-age"), Some("600"));
        assert_eq!(header(headers, "vary"), Some("Origin"));
        assert!(!headers.contains_key("access-control-allow-credentials"));
        assert!(allowed.bytes().await.unwrap().is_empty());
    }
    let operator = preflight(
        &stack,
        "/v1/admin/campaigns/x",
        "https://shop.example",
        "PATCH",
    )
    .await;
    assert_eq!(operator.status(), 204);
    assert_eq!(
        header(operator.headers(), "access-control-allow-methods"),
        Some("GET, PATCH")
    );

    // Another origin: refused, nothing a browser would accept.
    for origin in ["http://localhost:3001", "https://shop.example.evil", "null"] {
        let refused = preflight(&stack, &issuances, origin, "POST").await;
        assert_eq!(refused.status(), 403, "{origin}");
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
    }
    // The address's one request is still there for the real call.
    let real = (stack.http)
        .post(format!("{}{issuances}", stack.base))
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(real.status(), 401, "not 429: preflights spent nothing");
    readable_by(real.headers(), PAGE);

    // OPTIONS without the preflight headers is no preflight: the route's 405 (over the rate
    // first, as any request).
    let plain = (stack.http)
        .request(Method::OPTIONS, format!("{}{issuances}", stack.base))
        .send()
        .await
        .unwrap();
    assert!(
        matches!(plain.status().as_u16(), 405 | 429),
        "{}",
        plain.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_origins_there_are_no_cors_headers() {
    let stack = Stack::ingress_only().await;
    let refused = preflight(&stack, "/v1/campaigns", PAGE, "GET").await;
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let list = (stack.http)
        .get(format!("{}/v1/campaigns", stack.base))
        .header("origin", PAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let headers = list.headers();
    assert!(
        !headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-")),
        "{headers:?}"
    );
    assert!(!headers.contains_key("vary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_an_allowed_origin_is_readable_problems_included() {
    let stack = Stack::ingress_with(&[
        "--cors-allowed-origins=*",
        "--rate-limit-user-per-sec=1",
        "--rate-limit-user-burst=1",
        "--max-public-reads=1",
    ])
    .await;
    let campaign = stack.open_campaign(5, 1).await;
    let get = |path: String| {
        (stack.http)
            .get(format!("{}{path}", stack.base))
            .header("origin", PAGE)
    };
    let post = |path: String| {
        (stack.http)
            .post(format!("{}{path}", stack.base))
            .header("origin", PAGE)
    };
    let issuances = format!("/v1/campaigns/{campaign}/issuances");
    let amy = stack.token_for("amy", None);

    let accepted = post(issuances.clone())
        .bearer_auth(&amy)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    readable_by(accepted.headers(), PAGE);
    assert!(accepted.headers().contains_key("location"));
    // Amy's one request a second is spent: 429 with Retry-After, readable.
    let limited = get(format!("/v1/issuances/{}", "a".repeat(64)))
        .bearer_auth(&amy)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    readable_by(limited.headers(), PAGE);
    assert!(limited.headers().contains_key("retry-after"));
    let problem = |response: &Response, status: u16| {
        assert_eq!(response.status(), status);
        assert_eq!(
            header(response.headers(), "content-type"),
            Some("application/problem+json")
        );
        readable_by(response.headers(), PAGE);
    };
    problem(&post(issuances.clone()).send().await.unwrap(), 401);
    problem(
        &get(format!("/v1/campaigns/{}", uuid::Uuid::now_v7()))
            .send()
            .await
            .unwrap(),
        404,
    );
    problem(&get("/nowhere".to_owned()).send().await.unwrap(), 404);
    // The public read budget spent: 503 with Retry-After, readable.
    let held = stack.app.public.admit().unwrap();
    let shed = get("/v1/campaigns".to_owned()).send().await.unwrap();
    problem(&shed, 503);
    assert!(shed.headers().contains_key("retry-after"));
    drop(held);
}

/// `GET /v1/campaigns/{id}` (or the list) with an optional `If-None-Match`.
async fn public_read(stack: &Stack, path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = (stack.http)
        .get(format!("{}{path}", stack.base))
        .header("origin", PAGE);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_carry_their_cache_age_and_an_etag_and_answer_304() {
    let stack = Stack::ingress_with(&[&format!("--cors-allowed-origins={PAGE}")]).await;
    let campaign = stack.open_campaign(5, 1).await;
    let max_age = format!(
        "public, max-age={}",
        ingress::campaigns::public::TTL.as_secs()
    );
    let one = format!("/v1/campaigns/{campaign}");
    for path in [one.as_str(), "/v1/campaigns"] {
        let fresh = public_read(&stack, path, None).await;
        assert_eq!(fresh.status(), 200);
        assert_eq!(
            header(fresh.headers(), "cache-control"),
            Some(max_age.as_str())
        );
        let tag = header(fresh.headers(), "etag").unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
        readable_by(fresh.headers(), PAGE);
        let weak = format!("W/{tag}");
        for held in [tag.as_str(), "*", &format!("\"other\", {weak}")] {
            let again = public_read(&stack, path, Some(held)).await;
            assert_eq!(again.status(), 304, "{path} {held}");
            assert_eq!(header(again.headers(), "etag"), Some(tag.as_str()));
            assert_eq!(
                header(again.headers(), "cache-control"),
                Some(max_age.as_str())
            );
            readable_by(again.headers(), PAGE);
            assert!(again.bytes().await.unwrap().is_empty());
        }
        let other = public_read(&stack, path, Some("\"other\"")).await;
        assert_eq!(other.status(), 200);
        assert!(!other.bytes().await.unwrap().is_empty());
    }
    // Failures of public reads are not kept by a cache.
    let unknown = public_read(
        &stack,
        &format!("/v1/campaigns/{}", uuid::Uuid::now_v7()),
        Some("*"),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(header(unknown.headers(), "cache-control"), Some("no-store"));
    assert!(!unknown.headers().contains_key("etag"));

    // A changed campaign reads with a new tag once the cache has it; the old tag no longer
    // matches.
    let before = header(public_read(&stack, &one, None).await.headers(), "etag")
        .unwrap()
        .to_owned();
    let grown = stack
        .patch_campaign(&campaign, &json!({"total_stock": 9}))
        .await;
    assert_eq!(grown.status(), 200);
    let after = changed_tag(&stack, &one, &before, |body| body["total_stock"] == 9).await;
    let stale = public_read(&stack, &one, Some(&before)).await;
    assert_eq!(stale.status(), 200);
    assert_eq!(header(stale.headers(), "etag"), Some(after.as_str()));
    assert_eq!(stack.close_campaign(&campaign).await.status(), 200);
    changed_tag(&stack, &one, &after, |body| body["status"] == "closed").await;
}

/// Waits until `path` reads as `done` says (the cache refreshed), and returns its new tag.
async fn changed_tag(stack: &Stack, path: &str, old: &str, done: fn(&Value) -> bool) -> String {
    testkit::eventually(Duration::from_secs(10), "the change read", || async {
        let response = public_read(stack, path, Some(old)).await;
        let tag = header(response.headers(), "etag")?.to_owned();
        let body: Value = response.json().await.ok()?;
        assert_ne!(tag, old, "a changed body under the old tag");
        done(&body).then_some(tag)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_reads_are_private_and_never_stored() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let accepted: Value = stack.request(&campaign, "amy").await.json().await.unwrap();
    let issuance = accepted["issuance_id"].as_str().unwrap();
    let mine = stack.status(issuance, "amy").await;
    assert_eq!(mine.status(), 200);
    let theirs = stack.status(issuance, "mallory").await;
    assert_eq!(theirs.status(), 404);
    let coupons = (stack.http)
        .get(format!("{}/v1/me/coupons", stack.base))
        .bearer_auth(stack.token_for("amy", None))
        .send()
        .await
        .unwrap();
    assert_eq!(coupons.status(), 200);
    let anonymous = (stack.http)
        .get(format!("{}/v1/me/coupons", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    for response in [&mine, &theirs, &coupons, &anonymous] {
        let headers = response.headers();
        assert_eq!(header(headers, "cache-control"), Some("private, no-store"));
        assert!(!headers.contains_key("etag"));
    }
}
