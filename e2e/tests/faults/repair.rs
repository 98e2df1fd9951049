//! `couponctl verify --repair` cannot race a drop: it never writes the gate's counters, it
//! fences the campaign and re-seeds it from the caught-up ledger exactly as the ingress does
//! after a Redis loss. Here the gate believes in units the ledger never saw (a phantom, as a
//! lost write leaves behind), the repair runs while a burst continues, and afterwards every 202
//! is issued, nothing is rejected and the gate's count is the ledger's.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use testkit::{World, users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_during_a_burst_reseeds_through_the_fence_and_loses_nothing() {
    let world = World::start("repair").await;
    let campaign = world.open_campaign(300, 1).await;
    let progress = Arc::new(AtomicUsize::new(0));
    let mut answers = world
        .burst(&campaign, users("p", 0..100), 16, progress.clone())
        .await;
    world
        .fixture
        .wait_for_rows(100, "the first wave persisted")
        .await;
    // The phantom: the gate thinks 20 more units are taken than the ledger holds.
    let meta = format!("{}{{c:{campaign}}}:meta", world.fixture.redis_prefix);
    world
        .redis
        .call(&["HINCRBY", &meta, "remaining", "-20"])
        .await;
    let mut command =
        world.couponctl_verify_command(&["--repair", "--campaign", campaign.as_str()]);
    let repair = tokio::task::spawn_blocking(move || command.output().unwrap());
    let (more, output) = tokio::join!(
        world.burst(&campaign, users("p", 100..300), 4, progress),
        repair
    );
    let output = output.unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{printed}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("re-seeded"), "{printed}");
    let refused = more.iter().filter(|a| a.status == 503).count();
    answers.extend(more);
    // Every 202 issued, nothing rejected, the phantom gone (`World::check`).
    let report = world.check(&campaign, &answers).await;
    println!(
        "repair during a burst: 202 {}, 503 while fenced {refused}, coupons {}, rejected {}",
        answers.iter().filter(|a| a.status == 202).count(),
        report.coupons,
        report.rejected
    );
}
