//! Outbound safety of the webhook client: it connects only to public addresses, or to networks
//! `WEBHOOK_ALLOWED_NETWORKS` lists (judged on the addresses a name resolves to), and follows
//! no redirect.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use testkit::{World, users};

use super::webhook::Webhook;
use super::{WEBHOOK_SECRET, notification_counts};

/// Each notification's last error, by user.
async fn last_errors(world: &World) -> Vec<String> {
    let db = world.fixture.db().await;
    db.query(
        "SELECT coalesce(last_error, '') FROM notifications WHERE status = 'dead' ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// The consumer binary started with `env`: its exit code and standard error. A consumer that
/// starts after all is killed after 30 s (exit code `None`).
fn consumer_refuses(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(testkit::workspace_bin("coupon-consumer"))
        .envs(env.iter().copied())
        .env("WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("CONSUMER_HTTP_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn settings(url: String, allowed: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("WEBHOOK_URL", url),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("WEBHOOK_BACKOFF_MS", "20".to_owned()),
        ("WEBHOOK_BACKOFF_MAX_MS", "100".to_owned()),
        ("WEBHOOK_MAX_ATTEMPTS", "2".to_owned()),
        ("WEBHOOK_TIMEOUT_MS", "1000".to_owned()),
    ];
    env.extend(allowed.map(|nets| ("WEBHOOK_ALLOWED_NETWORKS", nets.to_owned())));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_reach_no_unlisted_private_address_and_follow_no_redirect() {
    // An address written in the URL is judged at start: the consumer refuses to run.
    let (code, stderr) = consumer_refuses(&[
        ("COUPON_ENV", "development"),
        ("WEBHOOK_URL", "http://127.0.0.1:9/hooks"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_URL names a loopback address")
            && stderr.contains("WEBHOOK_ALLOWED_NETWORKS"),
        "{stderr}"
    );
    let (code, stderr) = consumer_refuses(&[
        ("COUPON_ENV", "production"),
        ("WEBHOOK_URL", "http://hooks.example.com/coupons"),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("WEBHOOK_URL must be https:// in production"),
        "{stderr}"
    );

    // A host name that resolves to loopback, not allow-listed: refused at connection time,
    // nothing reaches the receiver, the reason is kept and counted.
    let hook = Webhook::start().await;
    let by_name = format!("http://localhost:{}/hooks/coupons", hook.port);
    let mut world = World::start_with("webhook-safety", settings(by_name, None)).await;
    let campaign = world.open_campaign(10, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    world
        .burst(&campaign, users("safe", 0..3), 3, progress.clone())
        .await;
    testkit::eventually(Duration::from_secs(60), "3 dead notifications", || async {
        (notification_counts(&world).await.get("dead") == Some(&3)).then_some(())
    })
    .await;
    assert!(hook.seen().is_empty(), "{:?}", hook.seen());
    for error in last_errors(&world).await {
        assert!(
            error.starts_with("webhook address refused: the host resolves to a loopback address"),
            "{error}"
        );
    }
    let metrics = world
        .api
        .http
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            world.consumer_ops_port
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("coupon_webhook_refused_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no coupon_webhook_refused_total in\n{metrics}"));
    assert!(
        refused >= 6.0,
        "two attempts of three notifications: {refused}"
    );

    // Loopback allow-listed, but the receiver redirects: the 307 is a failed attempt, and the
    // redirect's target never sees the signed body.
    let elsewhere = Webhook::start().await;
    hook.redirect_to(elsewhere.url());
    world.consumer.take().unwrap().kill();
    world.env = settings(hook.url(), Some("127.0.0.1/32"));
    world.start_consumer();
    world
        .burst(&campaign, users("safe", 3..6), 3, progress)
        .await;
    testkit::eventually(Duration::from_secs(60), "6 dead notifications", || async {
        (notification_counts(&world).await.get("dead") == Some(&6)).then_some(())
    })
    .await;
    assert!(elsewhere.seen().is_empty(), "{:?}", elsewhere.seen());
    let seen = hook.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.values().all(|s| s.attempts == 2 && s.accepted == 0),
        "{seen:?}"
    );
    let errors = last_errors(&world).await;
    assert!(
        errors[3..]
            .iter()
            .all(|e| e == "webhook answered 307 (redirects are not followed)"),
        "{errors:?}"
    );
}
