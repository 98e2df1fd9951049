//! One test per attack on the ingress. Each asserts the answer and that Redis, the topic and
//! the ledger did not change (`Stack::footprint`), then that an honest request still works.

use std::io::{Read, Write};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::Stack;

const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "coupon-api";

fn keys_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Valid claims for `sub`, with the configured issuer and audience.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600})
}

fn hs256(claims: &Value) -> String {
    hs(Algorithm::HS256, claims, testkit::HS256_SECRET.as_bytes())
}

fn hs(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
    encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn signed(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => {
            let pem = std::fs::read(keys_dir().join("rsa-private.pem")).unwrap();
            EncodingKey::from_rsa_pem(&pem).unwrap()
        }
        _ => {
            let pem = std::fs::read(keys_dir().join("ec-private.pem")).unwrap();
            EncodingKey::from_ec_pem(&pem).unwrap()
        }
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &key).unwrap()
}

/// An operator token signed with the key set's RSA key.
fn rsa_operator_token() -> String {
    signed(
        Algorithm::RS256,
        Some("rsa-1"),
        &json!({"sub": "operator", "role": "admin", "iat": now(), "exp": now() + 600}),
    )
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with the given header, claims and signature, as an attacker would assemble it.
fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

async fn post_with(stack: &Stack, campaign: &str, token: &str) -> reqwest::Response {
    stack
        .http
        .post(format!("{}/v1/campaigns/{campaign}/issuances", stack.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_refused(stack: &Stack, campaign: &str, attack: &str, token: &str) {
    let response = post_with(stack, campaign, token).await;
    assert_eq!(response.status(), 401, "{attack}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{attack}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_misdirected_tokens_are_refused_and_change_nothing() {
    let mut stack = Stack::ingress_with(&[
        &format!("--jwt-issuer={ISSUER}"),
        &format!("--jwt-audience={AUDIENCE}"),
        "--jwt-leeway-secs=5",
    ])
    .await;
    let mut operator = claims("operator");
    operator["role"] = "admin".into();
    stack.admin_token = Some(hs256(&operator));
    let campaign = stack.open_campaign(5, 1).await;
    let before = stack.footprint().await;
    let good = claims("mallory");
    let mut attacks: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        for signature in ["", "c2lnbmF0dXJl"] {
            attacks.push((
                format!("alg {alg} with signature {signature:?}"),
                forged(&json!({"alg": alg, "typ": "JWT"}), &good, signature),
            ));
        }
    }
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        attacks.push((
            format!("{alg:?} outside the allow-list"),
            hs(alg, &good, testkit::HS256_SECRET.as_bytes()),
        ));
    }
    let rsa_public = std::fs::read(keys_dir().join("rsa-public.pem")).unwrap();
    attacks.push((
        "HS256 signed with the RSA public key".into(),
        hs(Algorithm::HS256, &good, &rsa_public),
    ));
    attacks.push((
        "RS256 where HS256 is configured".into(),
        signed(Algorithm::RS256, None, &good),
    ));
    let mut edit = |what: &str, change: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        change(&mut c);
        attacks.push((what.to_owned(), hs256(&c)));
    };
    edit("missing aud", &|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    edit("wrong aud", &|c| c["aud"] = "another-api".into());
    edit("missing iss", &|c| {
        c.as_object_mut().unwrap().remove("iss");
    });
    edit("wrong iss", &|c| c["iss"] = "https://evil.example".into());
    edit("expired", &|c| c["exp"] = (now() - 60).into());
    edit("missing exp", &|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    edit("missing sub", &|c| {
        c.as_object_mut().unwrap().remove("sub");
    });
    edit("not yet valid", &|c| c["nbf"] = (now() + 120).into());
    edit("issued in the far future", &|c| {
        c["iat"] = (now() + 3600).into()
    });
    edit("sub not a user id", &|c| c["sub"] = "a\u{0}b".into());
    for (attack, token) in &attacks {
        assert_refused(&stack, &campaign, attack, token).await;
    }
    assert_eq!(
        stack.footprint().await,
        before,
        "no attack changed anything"
    );

    // The honest caller with the same claims gets in.
    let response = post_with(&stack, &campaign, &hs256(&claims("alice"))).await;
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_tokens_resist_confusion_hostile_kids_and_kid_floods() {
    let jwks = keys_dir().join("jwks.json");
    let mut stack = Stack::ingress_with(&[
        &format!("--jwks-file={}", jwks.display()),
        "--jwks-refresh-min-interval-ms=60000",
    ])
    .await;
    stack.admin_token = Some(rsa_operator_token());
    let campaign = stack.open_campaign(5, 1).await;
    let before = stack.footprint().await;
    let c = json!({"sub": "mallory", "iat": now(), "exp": now() + 600});
    let rsa_public = std::fs::read(keys_dir().join("rsa-public.pem")).unwrap();
    let mut confused = Header::new(Algorithm::HS256);
    confused.kid = Some("rsa-1".into());
    let attacks = vec![
        (
            "HS256 signed with the RSA public key, kid rsa-1",
            encode(&confused, &c, &EncodingKey::from_secret(&rsa_public)).unwrap(),
        ),
        (
            "HS256 with the test secret",
            hs(Algorithm::HS256, &c, testkit::HS256_SECRET.as_bytes()),
        ),
        (
            "RS256 signature under the EC key's kid",
            signed(Algorithm::RS256, Some("ec-1"), &c),
        ),
        (
            "alg none under a known kid",
            forged(&json!({"alg": "none", "kid": "rsa-1"}), &c, ""),
        ),
    ];
    for (attack, token) in &attacks {
        assert_refused(&stack, &campaign, attack, token).await;
    }
    let long = "k".repeat(4_000);
    for kid in [
        "../../../../etc/passwd",
        "/dev/zero",
        "http://169.254.169.254/latest/meta-data/",
        "' OR '1'='1",
        "rsa-1\u{0}",
        long.as_str(),
    ] {
        let token = signed(Algorithm::RS256, Some(kid), &c);
        assert_refused(&stack, &campaign, &format!("kid {:.40}", kid), &token).await;
    }
    // A flood of unknown key ids: each would prompt a key set refresh; one per interval happens.
    let flood: Vec<String> = (0..200)
        .map(|n| signed(Algorithm::ES256, Some(&format!("unknown-{n}")), &c))
        .collect();
    let answers =
        futures_util::future::join_all(flood.iter().map(|t| post_with(&stack, &campaign, t))).await;
    assert!(answers.iter().all(|r| r.status() == 401));
    let refreshes = stack
        .app
        .keys
        .refreshes
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(refreshes, 1, "one key set read for the whole flood");
    assert_eq!(
        stack.footprint().await,
        before,
        "no attack changed anything"
    );

    for (alg, kid, user) in [
        (Algorithm::RS256, "rsa-1", "rita"),
        (Algorithm::ES256, "ec-1", "emil"),
    ] {
        let ok = json!({"sub": user, "iat": now(), "exp": now() + 600});
        let response = post_with(&stack, &campaign, &signed(alg, Some(kid), &ok)).await;
        assert_eq!(response.status(), 202, "{alg:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_names_the_user_not_the_body() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let response = stack
        .http
        .post(format!("{}/v1/campaigns/{campaign}/issuances", stack.base))
        .bearer_auth(testkit::token("alice", None, 600))
        .json(&json!({"user_id": "mallory", "sub": "mallory"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["issuance_id"].as_str().unwrap();
    assert_eq!(stack.status(id, "alice").await.status(), 200);
    assert_eq!(stack.status(id, "mallory").await.status(), 404);
    // Mallory's own first request is still open to her: the body did not spend her turn.
    assert_eq!(stack.request(&campaign, "mallory").await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused_and_change_nothing() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let before = stack.footprint().await;
    let url = format!("{}/v1/campaigns/{campaign}/issuances", stack.base);
    let token = testkit::token("olga", None, 600);
    let big_header = stack
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("x-padding", "p".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(big_header.status(), 431);
    let mut many = stack.http.post(&url).bearer_auth(&token);
    for n in 0..100 {
        many = many.header(format!("x-h{n}"), "v");
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
    let big_body = stack
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\":\"{}\"}}", "b".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(big_body.status(), 413);
    assert_eq!(stack.footprint().await, before);
    assert_eq!(stack.request(&campaign, "olga").await.status(), 202);
}

/// Slowloris: a connection that sends part of a head and stalls is closed after the header
/// read timeout, while other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_cut_off_while_others_are_served() {
    let stack = Stack::ingress_with(&["--header-read-timeout-ms=500"]).await;
    let campaign = stack.open_campaign(50, 1).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let stalled = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .write_all(b"POST /v1/campaigns/x/issuances HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 1024];
        // The server ends the connection: end of stream, a reset, or a 408 then end of stream.
        loop {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    });
    for n in 0..20 {
        let response = stack.request(&campaign, &format!("patient-{n}")).await;
        assert_eq!(response.status(), 202);
    }
    let cut_after = stalled.await.unwrap();
    assert!(
        cut_after < Duration::from_secs(20),
        "the stalled connection stayed open for {cut_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_change_nothing() {
    let stack = Stack::ingress_with(&[
        "--rate-limit-user-per-sec=1",
        "--rate-limit-user-burst=2",
        "--rate-limit-ip-per-sec=1",
        "--rate-limit-ip-burst=6",
        "--trusted-proxies=127.0.0.1/32,::1/128",
    ])
    .await;
    let campaign = stack.open_campaign(50, 1).await;
    let url = format!("{}/v1/campaigns/{campaign}/issuances", stack.base);
    let from = |client: &str, user: &str| {
        stack
            .http
            .post(&url)
            .bearer_auth(testkit::token(user, None, 600))
            .header("x-forwarded-for", format!("198.51.100.250, {client}"))
            .send()
    };
    // One user: past the burst of two, 429 (requests sent at once, so a slow machine cannot
    // refill the allowance between them).
    assert_eq!(from("192.0.2.1", "ursula").await.unwrap().status(), 202);
    let before = stack.footprint().await;
    let answers = futures_util::future::join_all(
        (0..6).map(|n| from(&format!("192.0.2.{}", 10 + n), "ursula")),
    )
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [409, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 3,
        "{statuses:?}"
    );
    for answer in answers
        .iter()
        .map(|a| a.as_ref().unwrap())
        .filter(|a| a.status() == 429)
    {
        let retry: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        stack.footprint().await,
        before,
        "refused requests changed nothing"
    );

    // One client address: past the burst of six, 429 for any user from it.
    let answers = futures_util::future::join_all(
        (0..12).map(|n| from("203.0.113.7", &format!("ip-user-{n}"))),
    )
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        statuses.iter().all(|s| [202, 429].contains(s)),
        "{statuses:?}"
    );
    assert!((6..=8).contains(&admitted), "{statuses:?}");
    let figures = stack.admin_campaign(&campaign).await;
    assert_eq!(
        figures["accepted"],
        1 + admitted,
        "only admitted requests reserved"
    );
    // Another address behind the same proxy is its own client.
    assert_eq!(
        from("203.0.113.8", "ip-user-7").await.unwrap().status(),
        202
    );
}

/// Load shedding: with every in-flight permit taken (a client dribbling its body), the next
/// request is answered 503 at once instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_are_shed_at_once() {
    let stack = Stack::ingress_with(&["--max-in-flight=1"]).await;
    let campaign = stack.open_campaign(5, 1).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let token = testkit::token("slow-body", None, 600);
    let head = format!(
        "POST /v1/campaigns/{campaign}/issuances HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    // The holder's request waits for its body while holding the only permit. It holds it once
    // the server has answered nothing for a while (had it lost a race for the permit, it would
    // have been answered 503 at once).
    let holder = testkit::eventually(
        Duration::from_secs(10),
        "a request holding the permit",
        || {
            let address = address.clone();
            let head = head.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut holder = std::net::TcpStream::connect(&address).ok()?;
                    holder.write_all(head.as_bytes()).ok()?;
                    holder
                        .set_read_timeout(Some(Duration::from_millis(300)))
                        .ok()?;
                    let mut buffer = [0u8; 64];
                    match holder.read(&mut buffer) {
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            Some(holder)
                        }
                        _ => None,
                    }
                })
                .await
                .ok()
                .flatten()
            }
        },
    )
    .await;
    let shed = testkit::eventually(Duration::from_secs(10), "a shed request", || async {
        let response = stack.request(&campaign, "impatient").await;
        (response.status() == 503).then_some(response)
    })
    .await;
    assert!(shed.headers().contains_key("retry-after"));
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["detail"], "overloaded; retry");
    drop(holder);
    // Once the permit is back, requests go through.
    testkit::eventually(Duration::from_secs(10), "service again", || async {
        (stack.request(&campaign, "patient").await.status() == 202).then_some(())
    })
    .await;
}

/// The connection limit: past it, a new connection is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let stack = Stack::ingress_with(&["--max-connections=2"]).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut extra = std::net::TcpStream::connect(&address).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut buffer = [0u8; 256];
        extra.read(&mut buffer)
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, Ok(0) | Err(_)),
        "the third connection was served: {outcome:?}"
    );
    drop(held);
    let refused = testkit::eventually(Duration::from_secs(10), "health again", || async {
        let response = stack
            .http
            .get(format!("{}/metrics", stack.base))
            .send()
            .await
            .ok()?;
        let text = response.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("coupon_connections_refused_total "))
            .and_then(|v| v.parse::<f64>().ok())
    })
    .await;
    assert!(refused >= 1.0);
}

/// Key rotation: a token naming a key id the loaded set lacks makes the ingress read the JWKS
/// file again, so a key added to the mounted file works without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_from_the_key_set_file() {
    let full: Value =
        serde_json::from_slice(&std::fs::read(keys_dir().join("jwks.json")).unwrap()).unwrap();
    let only_rsa = json!({"keys": [full["keys"][0].clone()]});
    let file = std::env::temp_dir().join(format!("coupon-jwks-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, only_rsa.to_string()).unwrap();
    let mut stack = Stack::ingress_with(&[
        &format!("--jwks-file={}", file.display()),
        "--jwks-refresh-min-interval-ms=1",
    ])
    .await;
    stack.admin_token = Some(rsa_operator_token());
    let campaign = stack.open_campaign(5, 1).await;
    let ec_token = signed(
        Algorithm::ES256,
        Some("ec-1"),
        &json!({"sub": "rotated", "iat": now(), "exp": now() + 600}),
    );
    assert_eq!(post_with(&stack, &campaign, &ec_token).await.status(), 401);
    std::fs::write(&file, full.to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(post_with(&stack, &campaign, &ec_token).await.status(), 202);
    std::fs::remove_file(&file).unwrap();
}

/// The identity provider's key set, served over HTTP from memory; `document` can change.
struct KeySetServer {
    url: String,
    document: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeySetServer {
    async fn start(document: &Value) -> KeySetServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let shared = std::sync::Arc::new(std::sync::Mutex::new(document.to_string()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (shared.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        KeySetServer {
            url,
            document: shared,
            fetches,
            task,
        }
    }

    fn serve(&self, document: &Value) {
        *self.document.lock().unwrap() = document.to_string();
    }
}

impl Drop for KeySetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keys from the identity provider's JWKS URL: fetched at start (the operator's RS256 token
/// works), again on an unknown key id (a rotated key works), and periodically (a withdrawn key
/// stops working). An ingress whose key set cannot be fetched does not start, and a plain
/// `http://` URL to another host is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_jwks_url_and_follow_it() {
    let full: Value =
        serde_json::from_slice(&std::fs::read(keys_dir().join("jwks.json")).unwrap()).unwrap();
    let only_rsa = json!({"keys": [full["keys"][0].clone()]});
    let idp = KeySetServer::start(&only_rsa).await;
    let mut stack = Stack::ingress_with(&[
        &format!("--jwks-url={}", idp.url),
        "--jwks-refresh-min-interval-ms=1",
        "--jwks-refresh-secs=1",
    ])
    .await;
    assert_eq!(idp.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    stack.admin_token = Some(rsa_operator_token());
    let campaign = stack.open_campaign(100, 1).await;
    let ec_token = |user: &str| {
        signed(
            Algorithm::ES256,
            Some("ec-1"),
            &json!({"sub": user, "iat": now(), "exp": now() + 600}),
        )
    };

    // Rotation: the EC key is unknown until the provider publishes it.
    assert_eq!(
        post_with(&stack, &campaign, &ec_token("ec-a"))
            .await
            .status(),
        401
    );
    idp.serve(&full);
    assert_eq!(
        post_with(&stack, &campaign, &ec_token("ec-b"))
            .await
            .status(),
        202
    );

    // Withdrawal: gone from the provider, refused within the refresh interval.
    idp.serve(&only_rsa);
    let mut n = 0;
    testkit::eventually(Duration::from_secs(10), "the withdrawn key refused", || {
        n += 1;
        let token = ec_token(&format!("ec-late-{n}"));
        let stack = &stack;
        let campaign = &campaign;
        async move { (post_with(stack, campaign, &token).await.status() == 401).then_some(()) }
    })
    .await;
    assert_eq!(
        post_with(
            &stack,
            &campaign,
            &signed(
                Algorithm::RS256,
                Some("rsa-1"),
                &json!({"sub": "still-rsa", "iat": now(), "exp": now() + 600}),
            )
        )
        .await
        .status(),
        202,
        "the remaining key still works"
    );

    // No key set, no ingress; and keys only over https unless local.
    let closed = crate::support::procs::free_port();
    let unreachable = ingress::Config::from_args([
        "coupon-ingress".to_owned(),
        format!("--jwks-url=http://127.0.0.1:{closed}/jwks.json"),
        format!("--redis-url={}", testkit::redis_url()),
        format!("--kafka-brokers={}", testkit::kafka_brokers()),
        format!("--topic-requested={}", stack.fixture.topic),
        format!("--database-url={}", stack.fixture.database_url),
    ])
    .unwrap();
    let Err(failed) = ingress::App::build(unreachable).await else {
        panic!("an ingress without its key set started");
    };
    assert!(format!("{failed:#}").contains("JWT_JWKS_URL"), "{failed:#}");
    let plain = ingress::Config::from_args([
        "coupon-ingress",
        "--jwks-url=http://idp.example.com/jwks.json",
    ])
    .expect_err("refused");
    assert!(plain.to_string().contains("JWT_JWKS_URL"), "{plain}");
}

/// The key-set URL over TLS: a server whose certificate no trusted authority signed (here a
/// throwaway self-signed one, served by `openssl s_server`) is refused, so the ingress does not
/// start; the error names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_server_with_an_untrusted_certificate_is_refused() {
    let dir = std::env::temp_dir().join(format!("coupon-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=coupon-test-untrusted"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (dev/test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = crate::support::procs::free_port();
    let server = crate::support::procs::Proc::spawn(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
    );
    crate::support::procs::wait_port(port, "openssl s_server").await;

    // The keys are loaded first: nothing else is reached when that fails.
    let config = ingress::Config::from_args([
        "coupon-ingress".to_owned(),
        format!("--jwks-url=https://127.0.0.1:{port}/jwks.json"),
    ])
    .unwrap();
    let Err(failed) = ingress::App::build(config).await else {
        panic!("keys from an untrusted server were accepted");
    };
    let message = format!("{failed:#}");
    eprintln!("start-up refused: {message}");
    assert!(message.contains("JWT_JWKS_URL"), "{message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
    server.kill();
    std::fs::remove_dir_all(&dir).unwrap();
}
