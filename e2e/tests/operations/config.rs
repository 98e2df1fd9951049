//! Configuration of the binaries: invalid settings refused with every problem named (and no
//! secret shown), `--help` documenting every setting, a config file and secret files read.

use std::process::Command;

use testkit::workspace_bin;

fn run_with(binary: &str, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(workspace_bin(binary));
    for (name, _) in std::env::vars() {
        if name.starts_with("JWT_") || name.starts_with("KAFKA_") || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    // Ports of its own: an ingress that gets as far as binding must not meet another's. These
    // tests are about where settings come from, in the development profile; the production
    // profile's own rules have their test below.
    command
        .env("COUPON_ENV", "development")
        .env("INGRESS_LISTEN", "127.0.0.1:0")
        .env("INGRESS_OPS_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn invalid_configuration_is_refused_with_every_problem_listed() {
    let output = run_with(
        "coupon-ingress",
        &[
            ("JWT_LEEWAY_SECS", "99"),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "5"),
            ("SHUTDOWN_TIMEOUT_MS", "0"),
            ("RUST_LOG", "info,[[["),
            ("JWT_HS256_SECRET_FILE", "/nonexistent/coupon-secret"),
            (
                "DATABASE_URL",
                "postgres://app:hunter2-secret@127.0.0.1/coupon",
            ),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "JWT_LEEWAY_SECS",
        "KAFKA_MESSAGE_TIMEOUT_MS",
        "SHUTDOWN_TIMEOUT_MS",
        "RUST_LOG",
        "JWT_HS256_SECRET_FILE",
    ] {
        assert!(stderr.contains(setting), "{setting} not named:\n{stderr}");
    }
    assert!(
        !stderr.contains("hunter2"),
        "a secret was printed:\n{stderr}"
    );

    let output = run_with(
        "coupon-consumer",
        &[
            ("CONSUMER_BATCH_SIZE", "0"),
            ("KAFKA_SESSION_TIMEOUT_MS", "20000"),
            ("KAFKA_MAX_POLL_INTERVAL_MS", "6000"),
            ("DATABASE_POOL_SIZE", "0"),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "CONSUMER_BATCH_SIZE",
        "KAFKA_SESSION_TIMEOUT_MS",
        "DATABASE_POOL_SIZE",
    ] {
        assert!(stderr.contains(setting), "{setting} not named:\n{stderr}");
    }
}

#[test]
fn help_documents_every_setting() {
    for (binary, settings) in [
        (
            "coupon-ingress",
            &[
                "INGRESS_LISTEN",
                "INGRESS_OPS_LISTEN",
                "INGRESS_READY_CHECK_INTERVAL_MS",
                "REDIS_URL",
                "KAFKA_MESSAGE_TIMEOUT_MS",
                "JWT_JWKS_FILE",
                "SHUTDOWN_DELAY_MS",
                "SHUTDOWN_TIMEOUT_MS",
                "LOG_FORMAT",
                "RUST_LOG",
                "COUPON_CONFIG_FILE",
                "COUPON_ENV",
                "JWT_ROLE_CLAIM",
                "JWT_SERVICE_AUDIENCE",
                "EVENT_KEYS_REFRESH_MS",
                "REDIS_CA_FILE",
                "REDIS_CLUSTER",
                "PGSSLMODE",
                "PGSSLROOTCERT",
            ][..],
        ),
        (
            "coupon-consumer",
            &[
                "CONSUMER_GROUP",
                "CONSUMER_HTTP_LISTEN",
                "KAFKA_STATISTICS_INTERVAL_MS",
                "SHUTDOWN_TIMEOUT_MS",
                "COUPON_CONFIG_FILE",
                "COUPON_ENV",
                "EVENT_KEYS_REFRESH_MS",
                "WEBHOOK_ALLOWED_NETWORKS",
            ][..],
        ),
    ] {
        let output = run_with(
            binary,
            &[("JWT_HS256_SECRET", "do-not-print-me")],
            &["--help"],
        );
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        for setting in settings {
            assert!(help.contains(setting), "{binary} --help lacks {setting}");
        }
        assert!(!help.contains("do-not-print-me"), "--help printed a secret");
    }
}

/// A config file and a secret mounted as a file configure the ingress as the environment would.
#[test]
fn a_config_file_and_secret_files_are_read() {
    let dir = std::env::temp_dir().join(format!("coupon-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("jwt-secret");
    std::fs::write(&secret, "short\n").unwrap();
    let file = dir.join("ingress.env");
    std::fs::write(
        &file,
        format!(
            "# ingress settings\nJWT_LEEWAY_SECS=45\nJWT_HS256_SECRET_FILE={}\n",
            secret.display()
        ),
    )
    .unwrap();
    let output = run_with(
        "coupon-ingress",
        &[("COUPON_CONFIG_FILE", file.to_str().unwrap())],
        &[],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Both values were read: each fails its own check, named without its value.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("JWT_LEEWAY_SECS must be at most 30"),
        "{stderr}"
    );
    assert!(
        stderr.contains("JWT_HS256_SECRET must be at least 8 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("short"), "{stderr}");
}

/// `KAFKA_PROPERTY_<name>` reaches librdkafka in every binary (an unknown property is librdkafka's
/// own error), and a property a guarantee rests on is refused before anything starts, naming the
/// variable and never its value.
#[test]
fn kafka_properties_pass_through_but_never_weaken_a_guarantee() {
    let guarded = [
        ("KAFKA_PROPERTY_acks", "1"),
        ("KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE", "true"),
        ("KAFKA_PROPERTY_transactional.id", "tx-hunter2"),
    ];
    for (binary, args) in [
        ("coupon-ingress", &[][..]),
        ("coupon-consumer", &[][..]),
        ("couponctl", &["topics"][..]),
    ] {
        let output = run_with(binary, &guarded, args);
        assert_eq!(output.status.code(), Some(2), "{binary}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for (variable, _) in guarded {
            assert!(
                stderr.contains(variable),
                "{binary}: {variable} not named:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("hunter2"),
            "{binary} printed a value:\n{stderr}"
        );
    }
    let unknown = [("KAFKA_PROPERTY_no.such.property", "1")];
    for (binary, args) in [
        ("coupon-ingress", &[][..]),
        ("coupon-consumer", &[][..]),
        ("couponctl", &["topics"][..]),
    ] {
        let output = run_with(binary, &unknown, args);
        assert!(!output.status.success(), "{binary} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            format!("{stdout}{stderr}").contains("no.such.property"),
            "{binary}: librdkafka did not see the property:\n{stdout}{stderr}"
        );
    }
}

/// The production profile is the default: without `COUPON_ENV`, or with `production`, the
/// ingress refuses the development secret, a short secret, no key source, and tokens not bound
/// to an issuer and an audience, naming each setting and never a value. `development` relaxes
/// exactly these rules.
#[test]
fn production_is_the_default_profile_and_refuses_unsafe_token_settings() {
    // Past the settings the ingress connects to Redis: an unreachable one ends it quickly.
    let start = |profile: Option<&str>, env: &[(&str, &str)]| {
        let mut command = Command::new(workspace_bin("coupon-ingress"));
        for (name, _) in std::env::vars() {
            if name.starts_with("JWT_") || name == "COUPON_ENV" {
                command.env_remove(name);
            }
        }
        if let Some(profile) = profile {
            command.env("COUPON_ENV", profile);
        }
        let output = command
            .env("INGRESS_LISTEN", "127.0.0.1:0")
            .env("INGRESS_OPS_LISTEN", "127.0.0.1:0")
            .env("REDIS_URL", "redis://127.0.0.1:1/0")
            .env("REDIS_TIMEOUT_MS", "200")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output.status.code(), stderr)
    };
    let strong = "0123456789abcdef0123456789abcdef";
    let bound = [
        ("JWT_ISSUER", "https://idp.example"),
        ("JWT_AUDIENCE", "coupons"),
    ];

    let (code, stderr) = start(None, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    for named in ["no token key source", "JWT_ISSUER", "JWT_AUDIENCE"] {
        assert!(stderr.contains(named), "{named} not named:\n{stderr}");
    }
    for secret in ["dev-secret", "only-thirty-one-bytes-long-abcd"] {
        let (code, stderr) = start(
            Some("production"),
            &[bound[0], bound[1], ("JWT_HS256_SECRET", secret)],
        );
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("JWT_HS256_SECRET"), "{stderr}");
        assert!(
            !stderr.contains(secret),
            "the secret was printed:\n{stderr}"
        );
    }
    let (code, stderr) = start(None, &[bound[0], ("JWT_HS256_SECRET", strong)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("JWT_AUDIENCE") && !stderr.contains("JWT_ISSUER"),
        "{stderr}"
    );

    // Accepted settings get past the check (and stop at the unreachable Redis).
    let accepted = [
        (None, vec![bound[0], bound[1], ("JWT_HS256_SECRET", strong)]),
        (Some("development"), vec![]),
        (
            Some("development"),
            vec![("JWT_HS256_SECRET", "dev-secret")],
        ),
    ];
    for (profile, env) in accepted {
        let (code, stderr) = start(profile, &env);
        assert_ne!(code, Some(2), "{profile:?} {env:?}:\n{stderr}");
        assert!(!stderr.contains("configuration error"), "{stderr}");
        assert!(stderr.contains("REDIS_URL"), "{stderr}");
    }
}
