use super::*;

fn resolve(url: &str, env: (Option<&str>, Option<&str>), profile: Profile) -> Settings {
    Settings::resolve(url, env.0, env.1, profile).expect("usable settings")
}

#[test]
fn the_tls_settings_leave_the_url_and_the_rest_reaches_tokio_postgres() {
    let rds = split(
        "postgres://app:s%3Fcret@db.internal:6432/coupon?sslmode=verify-ca&application_name=x\
         &sslrootcert=%2Fetc%2Fcoupon%2Fpg-ca%2Frds-ca.pem",
    );
    assert_eq!(
        rds,
        Split {
            rest: "postgres://app:s%3Fcret@db.internal:6432/coupon?application_name=x".to_owned(),
            sslmode: Some("verify-ca".to_owned()),
            sslrootcert: Some("/etc/coupon/pg-ca/rds-ca.pem".to_owned()),
        }
    );
    let only = split("postgresql://db/coupon?sslmode=disable");
    assert_eq!(only.rest, "postgresql://db/coupon");
    // A later setting wins, as in libpq (`couponctl migrate` appends `dbname=`).
    let later = split("postgres://db/coupon?sslmode=require&sslmode=verify-full&dbname=postgres");
    assert_eq!(later.sslmode.as_deref(), Some("verify-full"));
    assert_eq!(later.rest, "postgres://db/coupon?dbname=postgres");
}

#[test]
fn key_value_strings_are_read_as_libpq_reads_them() {
    let split = split(
        "host=db.internal  port = 6432 password='it\\'s a secret' sslmode =verify-full \
         sslrootcert='/ca dir/ca.pem' dbname=coupon",
    );
    assert_eq!(split.sslmode.as_deref(), Some("verify-full"));
    assert_eq!(split.sslrootcert.as_deref(), Some("/ca dir/ca.pem"));
    assert_eq!(
        split.rest,
        "host=db.internal port = 6432 password='it\\'s a secret' dbname=coupon"
    );
    let config: tokio_postgres::Config = split.rest.parse().unwrap();
    assert_eq!(config.get_dbname(), Some("coupon"));
    assert_eq!(config.get_ports(), [6432]);
}

#[test]
fn the_url_wins_over_the_environment_and_the_profile_picks_the_default() {
    let url = "postgres://app@db.internal/coupon";
    let env = (Some("verify-ca"), Some("/env/ca.pem"));
    let from_env = resolve(url, env, Profile::Production);
    assert_eq!(from_env.mode, SslMode::VerifyCa);
    assert_eq!(from_env.roots, Roots::File("/env/ca.pem".into()));
    let from_url = resolve(
        &format!("{url}?sslmode=require&sslrootcert=system"),
        env,
        Profile::Production,
    );
    assert_eq!(
        (from_url.mode, from_url.roots),
        (SslMode::Require, Roots::System)
    );
    // Nothing set: production verifies everything, development is plaintext.
    let production = resolve(url, (None, None), Profile::Production);
    assert_eq!(
        (production.mode, &production.roots),
        (SslMode::VerifyFull, &Roots::System)
    );
    let development = resolve(url, (Some(""), None), Profile::Development);
    assert_eq!(development.mode, SslMode::Disable);
    assert_eq!(
        development.config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Disable
    );
    assert_eq!(
        production.config.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
}

#[test]
fn require_verifies_only_when_given_roots_as_libpq_does() {
    let url = "postgres://db/coupon?sslmode=require";
    assert!(resolve(url, (None, None), Profile::Production).unverified());
    assert!(!resolve(url, (None, Some("/ca.pem")), Profile::Production).unverified());
    assert!(
        !resolve(url, (None, None), Profile::Production)
            .describe()
            .is_empty()
    );
}

#[test]
fn fallbacks_to_plaintext_and_unknown_modes_are_refused_by_name_without_the_password() {
    for (url, env, named) in [
        (
            "postgres://app:hunter2@db/coupon?sslmode=prefer",
            None,
            "sslmode in DATABASE_URL",
        ),
        (
            "postgres://app:hunter2@db/coupon",
            Some("allow"),
            "PGSSLMODE",
        ),
        (
            "postgres://app:hunter2@db/coupon",
            Some("verify_full"),
            "PGSSLMODE",
        ),
        (
            "host=db password=hunter2 sslmode=prefer",
            None,
            "sslmode in DATABASE_URL",
        ),
    ] {
        let problem = Settings::resolve(url, env, None, Profile::Production).unwrap_err();
        assert!(problem.contains(named), "{problem}");
        assert!(!problem.contains("hunter2"), "{problem}");
    }
    let problem = Settings::resolve(
        "postgres://app:hunter2@db:port/x",
        None,
        None,
        Profile::Production,
    )
    .unwrap_err();
    assert!(problem.starts_with("DATABASE_URL"), "{problem}");
    assert!(!problem.contains("hunter2"), "{problem}");
}

#[test]
fn an_unreadable_or_empty_root_file_is_an_error_naming_it() {
    let missing = resolve(
        "postgres://db/coupon?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        (None, None),
        Profile::Production,
    );
    let problem = missing.connector().err().expect("no such file");
    assert!(
        problem.contains("sslrootcert /nonexistent/ca.pem"),
        "{problem}"
    );
    let empty = std::env::temp_dir().join(format!("pg-tls-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let url = format!(
        "postgres://db/coupon?sslmode=verify-ca&sslrootcert={}",
        empty.display()
    );
    let problem = resolve(&url, (None, None), Profile::Production)
        .connector()
        .err()
        .expect("no certificate");
    assert!(problem.contains("holds no CA certificate"), "{problem}");
    std::fs::remove_file(empty).unwrap();
}

#[test]
fn debug_output_hides_the_password() {
    for url in [
        "postgres://app:hunter2@db.internal:5432/coupon?sslmode=verify-full",
        "postgresql://app:hunter2@db.internal/coupon",
        "host=db user=app password='hunter2' dbname=coupon",
    ] {
        let shown = redacted(url);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db"), "{shown}");
    }
    assert_eq!(
        redacted("postgres://app@db/coupon"),
        "postgres://app@db/coupon"
    );
}
