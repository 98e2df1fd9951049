//! PostgreSQL as managed services offer it (RDS with `rds.force_ssl`): a TLS-only server of the
//! test's own with a private CA ([`PrivatePostgresTls`]). libpq's `sslmode` and `sslrootcert`
//! in the URL and `PGSSLMODE`/`PGSSLROOTCERT` in the environment, through `service`'s pool and
//! single connections and through the `couponctl` binary; a wrong CA, a host name the
//! certificate does not list and plaintext refused with the cause named; then an issuance
//! burst through the ingress and consumer binaries over TLS.

mod issuance;

use std::process::{Command, Output};

use service::PostgresArgs;
use testkit::certs::Authority;
use testkit::pg_tls::{PrivatePostgresTls, UNNAMED_HOST};
use testkit::workspace_bin;

/// The server's `postgres` database on `host`, with `sslmode` and, when given, `sslrootcert`.
fn args(
    server: &PrivatePostgresTls,
    host: &str,
    mode: &str,
    ca: Option<&Authority>,
) -> PostgresArgs {
    let root = ca.map_or(String::new(), |ca| {
        format!("&sslrootcert={}", ca.ca().display())
    });
    PostgresArgs {
        url: format!("{}?sslmode={mode}{root}", server.url(host, "postgres")),
        ..server.args("postgres")
    }
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// The error of connecting with `args`, once by itself and once through a pool: both must be
/// refused, and both texts are returned.
async fn refusals(args: &PostgresArgs) -> [String; 2] {
    let Err(single) = args.connect().await else {
        panic!("connected")
    };
    let pool = args.pool(1).unwrap();
    let Err(pooled) = pool.get().await else {
        panic!("a pooled connection")
    };
    // A pool's error keeps tokio-postgres's cause in its sources, as the services log it.
    [single.to_string(), service::postgres_tls::causes(&pooled)]
}

/// `couponctl` with only the given PostgreSQL settings (none inherited from the test's
/// environment).
pub(crate) fn couponctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(workspace_bin("couponctl"));
    for name in [
        "COUPON_ENV",
        "COUPON_CONFIG_FILE",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
    ] {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_servers_ca_connects_pools_and_single_connections() {
    let server = PrivatePostgresTls::start().await;
    for host in ["localhost", "127.0.0.1"] {
        let args = PostgresArgs {
            url: format!(
                "{}?sslmode=verify-full&sslrootcert={}",
                server.url(host, "postgres"),
                server.ca().display()
            ),
            ..server.args("postgres")
        };
        let client = args.connect().await.unwrap();
        assert!(encrypted(&client).await, "{host}: a TLS session");
        let pool = args.pool(2).unwrap();
        let pooled = pool.get().await.unwrap();
        assert!(encrypted(&pooled).await, "{host}: a pooled TLS session");
    }
    // Plaintext is refused by this server: what connected above could only do so over TLS.
    let plaintext = args(&server, "localhost", "disable", None);
    for refusal in refusals(&plaintext).await {
        assert!(refusal.contains("no encryption"), "{refusal}");
        assert!(!refusal.contains(&server.password), "{refusal}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_checked_as_the_sslmode_says_and_a_refusal_names_its_cause() {
    let server = PrivatePostgresTls::start().await;
    let other = Authority::new("coupon-other-ca");

    // A CA that did not sign the server's certificate: refused in every verifying mode
    // (`require` verifies the chain once `sslrootcert` is given, as libpq does).
    for mode in ["verify-full", "verify-ca", "require"] {
        for refusal in refusals(&args(&server, "localhost", mode, Some(&other))).await {
            assert!(
                refusal.contains("TLS to PostgreSQL at localhost")
                    && refusal.contains("not signed by a CA of sslrootcert")
                    && refusal.contains("UnknownIssuer"),
                "{mode}: {refusal}"
            );
            assert!(!refusal.contains(&server.password), "{refusal}");
        }
    }

    // A host name the certificate does not list: verify-full refuses, verify-ca does not
    // check names.
    let right = server.ca();
    let unnamed = |mode: &str| PostgresArgs {
        url: format!(
            "{}?sslmode={mode}&sslrootcert={}",
            server.url(UNNAMED_HOST, "postgres"),
            right.display()
        ),
        ..server.args("postgres")
    };
    for refusal in refusals(&unnamed("verify-full")).await {
        assert!(
            refusal.contains("TLS to PostgreSQL at 127.0.0.2 (sslmode=verify-full)")
                && refusal.contains("does not name this host")
                && refusal.contains("not valid for name"),
            "{refusal}"
        );
    }
    let chain_only = unnamed("verify-ca").connect().await.unwrap();
    assert!(encrypted(&chain_only).await);

    // `require` alone encrypts and verifies nothing: the private CA is in no system store.
    let unverified = args(&server, "localhost", "require", None);
    assert!(encrypted(&unverified.connect().await.unwrap()).await);
    assert!(encrypted(&unverified.pool(1).unwrap().get().await.unwrap()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn couponctl_takes_pgsslmode_and_pgsslrootcert_from_the_environment() {
    let server = PrivatePostgresTls::start().await;
    let other = Authority::new("coupon-other-ca");
    let url = server.url("localhost", "coupon_env");
    let ca = server.ca().display().to_string();
    let migrate = ["migrate", "--create-database"];

    // Production (no COUPON_ENV) with no sslmode anywhere: verify-full, against PGSSLROOTCERT.
    let created = couponctl(&migrate, &[("DATABASE_URL", &url), ("PGSSLROOTCERT", &ca)]);
    assert!(created.status.success(), "{}", text(&created));
    assert!(text(&created).contains("database coupon_env: created"));
    assert!(text(&created).contains("migrations: applied"));

    // The wrong CA from the environment: refused, PostgreSQL and the cause named.
    let wrong_ca = other.ca().display().to_string();
    let refused = couponctl(
        &migrate,
        &[("DATABASE_URL", &url), ("PGSSLROOTCERT", &wrong_ca)],
    );
    assert!(!refused.status.success());
    let said = text(&refused);
    assert!(
        said.contains("TLS to PostgreSQL at localhost (sslmode=verify-full)")
            && said.contains("UnknownIssuer"),
        "{said}"
    );
    assert!(!said.contains(&server.password), "{said}");

    // A fallback to plaintext is refused by name, before any connection.
    let prefer = couponctl(&migrate, &[("DATABASE_URL", &url), ("PGSSLMODE", "prefer")]);
    assert!(!prefer.status.success());
    assert!(
        text(&prefer).contains("PGSSLMODE=prefer"),
        "{}",
        text(&prefer)
    );

    // Development's default is plaintext, which this server refuses; PGSSLMODE turns TLS on.
    let development = [
        ("DATABASE_URL", url.as_str()),
        ("COUPON_ENV", "development"),
    ];
    let plaintext = couponctl(&migrate, &development);
    assert!(!plaintext.status.success());
    assert!(
        text(&plaintext).contains("no encryption"),
        "{}",
        text(&plaintext)
    );
    let mut verified = development.to_vec();
    verified.extend([("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca.as_str())]);
    let again = couponctl(&["migrate"], &verified);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("migrations: up to date"));

    // The URL's sslmode wins over the environment's.
    let url_disables = format!("{url}?sslmode=disable");
    let overridden = couponctl(
        &["migrate"],
        &[
            ("DATABASE_URL", &url_disables),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", &ca),
        ],
    );
    assert!(!overridden.status.success());
    assert!(
        text(&overridden).contains("no encryption"),
        "{}",
        text(&overridden)
    );
}
