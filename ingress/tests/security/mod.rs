//! One test per attack on the ingress. Each asserts the answer and that Redis, the topic and
//! the ledger did not change (`Fixture::footprint`), then that an honest request still works.
//!
//! Here: forged and misdirected tokens. `limits`: oversized, slow and too many requests and
//! connections. `key_sources`: keys from a key-set file and from the identity provider's URL.

mod key_sources;
mod limits;

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
    let before = stack.fixture.footprint().await;
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
        stack.fixture.footprint().await,
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
    let before = stack.fixture.footprint().await;
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
        stack.fixture.footprint().await,
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
