//! A key rotation with `couponctl event-keys` while requests keep coming: every request is
//! accepted and becomes a coupon, the events switch from the old key to the new one when it
//! activates, nothing is dead-lettered, and the signing key cannot be retired by mistake.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{Options, Stack};

fn couponctl(stack: &Stack, args: &[&str]) -> Output {
    Command::new(testkit::workspace_bin("couponctl"))
        .env("DATABASE_URL", &stack.fixture.database_url)
        .arg("event-keys")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn accept(stack: &Stack, campaign: &str, users: std::ops::Range<u32>) {
    for n in users {
        let response = stack.request(campaign, &format!("rot-{n}")).await;
        assert_eq!(response.status(), 202, "rot-{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_keeps_working_across_a_key_rotation() {
    let stack = Stack::start(Options {
        partitions: 1,
        consumer: true,
        extra: vec!["--event-keys-refresh-ms=200".to_owned()],
    })
    .await;
    let campaign = stack.open_campaign(40, 1).await;
    accept(&stack, &campaign, 0..5).await;

    let rotated = stdout(couponctl(&stack, &["rotate", "--activate-in-secs", "2"]));
    assert!(rotated.starts_with("event key 2 added"), "{rotated}");
    // Pending: still signed with key 1, which cannot be retired yet (it signs).
    accept(&stack, &campaign, 5..10).await;
    let refused = couponctl(&stack, &["retire", "1"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("key 1 is the signing key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let db = stack.fixture.db().await;
    testkit::eventually(Duration::from_secs(30), "key 2 active", || async {
        let row = db
            .query_one(
                "SELECT activates_at <= now() FROM event_keys WHERE id = 2",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, bool>(0).then_some(())
    })
    .await;
    // The ingress measured the same delay from its last reading: a little margin.
    tokio::time::sleep(Duration::from_millis(500)).await;
    accept(&stack, &campaign, 10..15).await;
    let listed = stdout(couponctl(&stack, &["list"]));
    assert!(listed.contains("\n1\tactive\t"), "{listed}");
    assert!(listed.contains("\n2\tsigning\t"), "{listed}");

    // Key 1 retired once key 2 signs; the signing key itself is refused without --force.
    let retired = stdout(couponctl(&stack, &["retire", "--older-than-secs", "0"]));
    assert!(retired.contains("retired 1 event key(s): 1"), "{retired}");
    assert!(!couponctl(&stack, &["retire", "2"]).status.success());
    accept(&stack, &campaign, 15..20).await;

    testkit::eventually(Duration::from_secs(60), "20 coupons", || async {
        let row = db
            .query_one("SELECT count(*) FROM coupons", &[])
            .await
            .unwrap();
        (row.get::<_, i64>(0) == 20).then_some(())
    })
    .await;
    assert_eq!(
        stack
            .fixture
            .topic_len(&stack.fixture.dead_letter_topic)
            .await,
        0,
        "nothing dead-lettered"
    );
    let signed_with: Vec<String> = stack
        .fixture
        .read_topic(&stack.fixture.topic)
        .await
        .iter()
        .map(|record| {
            let header = record.header(service::event_keys::HEADER).unwrap();
            header.split(',').nth(1).unwrap().to_owned()
        })
        .collect();
    assert_eq!(signed_with.len(), 20);
    assert!(
        signed_with[..10].iter().all(|id| id == "1"),
        "{signed_with:?}"
    );
    assert!(
        signed_with[10..].iter().all(|id| id == "2"),
        "{signed_with:?}"
    );
}
