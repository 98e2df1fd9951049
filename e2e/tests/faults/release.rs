//! Release against roll-forward: a reservation is handed back only when Kafka provably does not
//! have its event (docs/RELIABILITY.md, "The life of a reservation").

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use testkit::{World, after, users};

/// Short enough that a pause of the broker outlasts several producer generations.
const MESSAGE_TIMEOUT_MS: u64 = 500;

/// The broker paused mid-burst for longer than the stall that replaces the producer (nothing
/// delivered for twice the message timeout), then resumed: requests written to it before the
/// pause land when it wakes, messages it never received time out in the queue. Only the latter
/// are released, so no released issuance ever becomes a coupon, and every 202 ends issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_past_the_stall_releases_only_what_it_never_received() {
    let env = vec![("KAFKA_MESSAGE_TIMEOUT_MS", MESSAGE_TIMEOUT_MS.to_string())];
    let world = World::start_with("release-paused", env).await;
    let campaign = world.open_campaign(2_000, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let (mut answers, ()) = tokio::join!(
        world.burst(&campaign, users("r", 0..900), 64, progress.clone()),
        async {
            after(&progress, 150).await;
            world.broker.proc.signal("STOP");
            tokio::time::sleep(Duration::from_millis(8 * MESSAGE_TIMEOUT_MS)).await;
            world.broker.proc.signal("CONT");
        }
    );
    assert!(
        answers.iter().any(|a| a.status == 503),
        "the pause produced 503s"
    );
    let log = std::fs::read_to_string(world.log_path("ingress")).unwrap();
    assert!(
        log.contains("the Kafka producer is unusable; replaced it"),
        "the pause outlasted the stall and the producer was replaced"
    );
    // The replacement producer delivers once the broker is back.
    let more = world
        .burst(&campaign, users("r", 900..1_000), 16, progress)
        .await;
    assert!(more.iter().all(|a| a.status == 202), "admissions again");
    answers.extend(more);
    world.check(&campaign, &answers).await;

    let released = released(&world, &campaign);
    let db = world.fixture.db().await;
    let coupons: Vec<uuid::Uuid> = db
        .query(
            "SELECT id FROM coupons WHERE id = ANY($1)",
            &[&released.iter().copied().collect::<Vec<_>>()],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    println!(
        "case release-paused: released {}, released and issued {}",
        released.len(),
        coupons.len()
    );
    assert!(
        !released.is_empty(),
        "messages the paused broker never received were released at once"
    );
    assert!(
        coupons.is_empty(),
        "released issuances that became coupons: {coupons:?}"
    );
}

/// The issuances the gate released for `campaign`: the fields of its `released` hash
/// (reservation ids in simple form).
fn released(world: &World, campaign: &str) -> HashSet<uuid::Uuid> {
    let key = format!("{}{{c:{campaign}}}:released", world.fixture.redis_prefix);
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &world.redis.port.to_string(), "HKEYS", &key])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| uuid::Uuid::parse_str(line).unwrap())
        .collect()
}
