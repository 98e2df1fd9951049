//! TLS to Redis as a managed service offers it: a `rediss://` server verified against
//! `REDIS_CA_FILE`. A wrong CA, a wrong host, plaintext against a TLS-only server and settings
//! that do not fit together each fail at connect, with an error that names the cause and never
//! the URL.

use gate::{Endpoint, Reservation, Seed};
use schema::ids::{CampaignId, UserId};
use testkit::certs::Authority;
use testkit::redis_servers::TlsRedis;

use super::connect;

const PREFIX: &str = "coupon-test:";

async fn refused(endpoint: &Endpoint) -> String {
    match connect(endpoint, PREFIX).await {
        Ok(_) => panic!("connected to {}", endpoint.url),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_works_over_tls_verified_against_a_private_ca() {
    let redis = TlsRedis::start().await;
    for host in ["localhost", "127.0.0.1"] {
        let endpoint = Endpoint {
            url: redis.url_on(host),
            ..redis.endpoint()
        };
        let gate = connect(&endpoint, PREFIX).await.unwrap();
        gate.ping().await.unwrap();
        let campaign = CampaignId(uuid::Uuid::now_v7());
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let seed = Seed {
            total_stock: 1,
            per_user_limit: 1,
            starts_ms: now_ms - 60_000,
            ends_ms: now_ms + 60_000,
        };
        gate.seed(&campaign, seed).await.unwrap();
        let user = UserId::parse("u1").unwrap();
        let got = gate
            .reserve(&campaign, &user, &uuid::Uuid::now_v7())
            .await
            .unwrap();
        assert!(
            matches!(got, Reservation::Accepted { seq: 1, .. }),
            "{got:?}"
        );
        let got = gate
            .reserve(
                &campaign,
                &UserId::parse("u2").unwrap(),
                &uuid::Uuid::now_v7(),
            )
            .await
            .unwrap();
        assert_eq!(got, Reservation::SoldOut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_host_is_refused_at_connect() {
    let redis = TlsRedis::start().await;
    let other = Authority::new("coupon-other-ca");
    let error = refused(&Endpoint {
        ca_file: Some(other.ca()),
        ..redis.endpoint()
    })
    .await;
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    // Without REDIS_CA_FILE the system's roots apply, and they do not know a private CA.
    let error = refused(&Endpoint {
        ca_file: None,
        ..redis.endpoint()
    })
    .await;
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    // The server listens on 127.0.0.2 too, which its certificate does not name.
    let error = refused(&Endpoint {
        url: redis.url_on("127.0.0.2"),
        ..redis.endpoint()
    })
    .await;
    assert!(error.contains("not valid for name"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_against_a_tls_only_redis_fails_with_a_clear_error() {
    let redis = TlsRedis::start().await;
    let error = refused(&Endpoint {
        url: format!("redis://127.0.0.1:{}/0", redis.port),
        ..Endpoint::default()
    })
    .await;
    assert!(error.contains("rediss://"), "{error}");
}

/// Settings that cannot work are refused before connecting, naming the setting; a password in
/// the URL is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_do_not_fit_together_are_refused() {
    let authority = Authority::new("coupon-settings-ca");
    let cases = [
        (
            "redis://:s3cret@127.0.0.1:1/0",
            Some(authority.ca()),
            false,
            "REDIS_CA_FILE is set but REDIS_URL is not a TLS",
        ),
        (
            "rediss://:s3cret@127.0.0.1:1/0",
            Some(authority.dir().join("missing.pem")),
            false,
            "REDIS_CA_FILE",
        ),
        (
            "rediss://:s3cret@127.0.0.1:1/0#insecure",
            None,
            false,
            "#insecure",
        ),
        (
            "redis://:s3cret@127.0.0.1:1/0,redis://:s3cret@127.0.0.1:2/0",
            None,
            false,
            "REDIS_CLUSTER=true",
        ),
        ("", None, true, "REDIS_URL is empty"),
    ];
    for (url, ca_file, cluster, named) in cases {
        let error = refused(&Endpoint {
            url: url.to_owned(),
            ca_file,
            cluster,
        })
        .await;
        assert!(error.contains(named), "{url}: {error}");
        assert!(!error.contains("s3cret"), "{url}: {error}");
    }
}
