//! The k6 scripts in `loadtest/` against a real stack, at a modest rate, so they cannot rot.
//! Each iteration is a phone: the tap, Retry-After honoured on 429/503, then the outcome read
//! from the `Location` with `Prefer: wait=N`.

use serde_json::Value;
use std::process::{Command, Output};

use testkit::World;

/// Runs `loadtest/issuance.js` (the drop) against `world` with `env` on top of the common
/// settings; answers k6's output and the JSON summary it wrote.
async fn run_k6(world: &World, env: &[(&str, &str)]) -> (Output, Value) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/issuance.js");
    let summary_file = std::env::temp_dir().join(format!("k6-smoke-{}.json", world.fixture.id));
    let mut command = Command::new("k6");
    command
        .arg("run")
        .arg("--quiet")
        .arg(script)
        .env("BASE_URL", &world.base)
        .env("SCENARIO", "drop")
        .env("JWT_HS256_SECRET", testkit::HS256_SECRET)
        // Debug binaries on a shared two-core machine: the smoke checks the script and the
        // answers, not the speed.
        .env("P99_MS", "5000")
        .env("OUTCOME_P99_MS", "10000")
        .env("SUMMARY_FILE", &summary_file)
        .env("RUN_ID", &world.fixture.id);
    for (name, value) in env {
        command.env(name, value);
    }
    let k6 = tokio::task::spawn_blocking(move || {
        command
            .output()
            .expect("k6 on PATH (dev/test installs it with pip)")
    })
    .await
    .unwrap();
    let read = std::fs::read(&summary_file).unwrap_or_else(|e| {
        panic!(
            "no summary ({e}):\n{}\n{}",
            String::from_utf8_lossy(&k6.stdout),
            String::from_utf8_lossy(&k6.stderr)
        )
    });
    let _ = std::fs::remove_file(&summary_file);
    let summary: Value = serde_json::from_slice(&read).unwrap();
    eprintln!("k6 summary: {summary}");
    (k6, summary)
}

fn count(summary: &Value, pointer: &str) -> u64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} missing from {summary}"))
}

fn number(summary: &Value, pointer: &str) -> f64 {
    summary
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing from {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_drop_scenario_smoke() {
    let world = World::start("k6-smoke").await;
    let (k6, summary) = run_k6(
        &world,
        &[
            ("RATE", "100"),
            ("DURATION", "3s"),
            ("USERS", "450"),
            ("STOCK", "150"),
            // A slow debug consumer must not run the generator out of VUs.
            ("VU_HOLD", "5"),
        ],
    )
    .await;
    assert!(
        k6.status.success(),
        "k6 failed:\n{}\n{}",
        String::from_utf8_lossy(&k6.stdout),
        String::from_utf8_lossy(&k6.stderr)
    );
    assert_eq!(summary["accepted"], 150, "{summary}");
    assert_eq!(summary["unexpected"], 0);
    assert_eq!(summary["dropped_iterations"], 0);
    assert!(summary["sold_out"].as_u64().unwrap() > 0);
    assert_eq!(summary["thresholds_passed"], true);
    // Setup's 201, the outcome reads' 200 and teardown's reads are expected answers.
    assert_eq!(summary["failed_requests"], 0, "{summary}");
    // Nothing was shed at this rate, and the count is reported.
    assert_eq!(count(&summary, "/retries"), 0, "{summary}");
    assert_eq!(count(&summary, "/gave_up"), 0, "{summary}");

    // Every accepted tap followed its Location to `issued`.
    assert_eq!(count(&summary, "/outcomes/issued"), 150, "{summary}");
    for other in ["released", "rejected", "timeout", "error"] {
        assert_eq!(
            count(&summary, &format!("/outcomes/{other}")),
            0,
            "{summary}"
        );
    }
    let p50 = number(&summary, "/time_to_outcome_ms/p50");
    let p99 = number(&summary, "/time_to_outcome_ms/p99");
    assert!(0.0 < p50 && p50 <= p99, "{summary}");
    let polls = count(&summary, "/long_polls");
    assert!(polls >= 150, "{summary}");
    // A server that honours `Prefer: wait` answers each accepted tap in one long-poll; one that
    // ignores it is re-polled (with a pause) until the outcome, which the counts above cover.
    if count(&summary, "/wait_applied") > 0 {
        let per_issuance = number(&summary, "/long_polls_per_issuance/avg");
        assert!(per_issuance <= 1.05, "{summary}");
        assert_eq!(count(&summary, "/wait_applied"), polls, "{summary}");
    }

    // teardown() checked the three invariants through the admin view, over HTTP, and all held.
    assert_eq!(summary["invariants_checked"], 3, "{summary}");
    assert_eq!(summary["invariant_violations"], 0, "{summary}");

    // The invariant checker, as a load tester runs it afterwards.
    let campaign = summary["campaign_id"].as_str().unwrap();
    let report = world.check(campaign, &[]).await;
    assert_eq!(report.coupons, 150);
}

/// Three users tapping again and again against a per-user limit of one request a second: the
/// script comes back after Retry-After (counted as retries), each user gets one coupon, the
/// rest learn `already-issued`, and the outcome reads survive their own 429s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_drop_honours_retry_after() {
    let limits = vec![
        ("RATE_LIMIT_USER_PER_SEC", "1".to_string()),
        ("RATE_LIMIT_USER_BURST", "1".to_string()),
    ];
    let world = World::start_with("k6-retry", limits).await;
    let (_, summary) = run_k6(
        &world,
        &[
            ("RATE", "6"),
            ("DURATION", "2s"),
            ("USERS", "3"),
            ("STOCK", "10"),
            ("MAX_RETRIES", "3"),
            ("VU_HOLD", "10"),
        ],
    )
    .await;
    // k6 itself fails its `http_req_failed` threshold here: every 429 is a shed request.
    assert!(count(&summary, "/retries") > 0, "{summary}");
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(
        summary["unexpected"],
        count(&summary, "/gave_up"),
        "{summary}"
    );
    assert_eq!(count(&summary, "/outcomes/issued"), 3, "{summary}");
    assert_eq!(count(&summary, "/outcomes/timeout"), 0, "{summary}");
    assert_eq!(summary["invariants_checked"], 3, "{summary}");
    assert_eq!(summary["invariant_violations"], 0, "{summary}");
}
