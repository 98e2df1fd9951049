//! The consumer group on the real Kafka and PostgreSQL: idempotence, dead letters, the
//! ingress's signature on every record, and the ledger enforcing a campaign's rules on its own
//! (stock, per-user limit, window, close).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schema::ids::{CampaignId, IssuanceId};
use schema::proto::IssuanceRequested;
use testkit::{Fixture, eventually};
use tokio::sync::oneshot;
use uuid::Uuid;

#[path = "consume/rules.rs"]
mod rules;
#[path = "consume/signed.rs"]
mod signed;

/// A running consumer on a fixture of its own; dropping it stops the consumer, waits for it to
/// leave the group, then removes the fixture.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    producer: FutureProducer,
    /// The running consumer's metrics.
    metrics: Option<std::sync::Arc<consumer::metrics::Metrics>>,
    fixture: Fixture,
}

impl Running {
    async fn start() -> Running {
        let fixture = Fixture::new(1).await;
        let mut running = Running {
            stop: None,
            task: None,
            producer: ClientConfig::new()
                .set("bootstrap.servers", testkit::kafka_brokers())
                .set("enable.idempotence", "true")
                .create()
                .unwrap(),
            metrics: None,
            fixture,
        };
        running.spawn_consumer();
        running
    }

    fn spawn_consumer(&mut self) {
        let mut args = self.fixture.consumer_args();
        args.extend(["--session-timeout-ms=6000", "--max-poll-interval-ms=6000"].map(String::from));
        let config = consumer::Config::from_args(args).unwrap();
        let persister = consumer::Persister::build(config).unwrap();
        self.metrics = Some(persister.metrics());
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(persister.run(async {
            let _ = stopped.await;
        })));
    }

    async fn stop_consumer(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("consumer stops in time")
                .unwrap()
                .unwrap();
        }
    }

    /// Inserts a campaign straight into the ledger (the ingress is not part of these tests).
    async fn campaign(&self, stock: i32) -> Uuid {
        let id = Uuid::now_v7();
        self.fixture
            .db()
            .await
            .execute(
                "INSERT INTO campaigns (id, name, total_stock, starts_at, ends_at, discount_kind,
                                        discount_value, coupon_valid_days)
                 VALUES ($1, 'test', $2, now() - interval '1 hour', now() + interval '1 hour',
                         'fixed', 100, 7)",
                &[&id, &stock],
            )
            .await
            .unwrap();
        id
    }

    /// Produces a record signed as the ingress signs it, with the database's event key.
    async fn produce(&self, key: &str, payload: &[u8]) {
        let signature = self.fixture.sign_event(key.as_bytes(), payload).await;
        self.produce_with(key, payload, Some(&signature)).await;
    }

    /// Produces a record with the given `coupon-signature` header, or none.
    async fn produce_with(&self, key: &str, payload: &[u8], signature: Option<&str>) {
        let mut headers = OwnedHeaders::new();
        if let Some(signature) = signature {
            headers = headers.insert(Header {
                key: service::event_keys::HEADER,
                value: Some(signature),
            });
        }
        self.producer
            .send(
                FutureRecord::to(&self.fixture.topic)
                    .key(key)
                    .payload(payload)
                    .headers(headers),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    /// The value of one series of the running consumer's metrics, as `/metrics` renders them.
    fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.as_ref().unwrap().render();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    async fn produce_event(&self, event: &IssuanceRequested) {
        let key = schema::topics::record_key(&event.campaign_id, &event.user_id);
        self.produce(&key, &event.encode_to_vec()).await;
    }

    async fn count(&self, sql: &str) -> i64 {
        self.fixture
            .db()
            .await
            .query_one(sql, &[])
            .await
            .unwrap()
            .get(0)
    }

    async fn wait_for(&self, sql: &str, expected: i64) {
        eventually(Duration::from_secs(60), sql, || async {
            (self.count(sql).await == expected).then_some(())
        })
        .await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
                })
            });
        }
    }
}

fn event(campaign: Uuid, user: &str, seq: u32) -> IssuanceRequested {
    IssuanceRequested {
        issuance_id: IssuanceId::new(CampaignId(campaign)).to_string(),
        campaign_id: campaign.to_string(),
        user_id: user.to_owned(),
        seq,
        requested_at_ms: time::OffsetDateTime::now_utc().unix_timestamp() * 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_makes_one_coupon() {
    let running = Running::start().await;
    let campaign = running.campaign(10).await;
    let once = event(campaign, "alice", 1);
    // Twice in one batch, then again once it is persisted (a later batch).
    running.produce_event(&once).await;
    running.produce_event(&once).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'alice'", 1)
        .await;
    running.produce_event(&once).await;
    // One partition: once the sentinel is persisted, every copy was handled.
    running.produce_event(&event(campaign, "sentinel", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'sentinel'", 1)
        .await;
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 2);
    assert_eq!(
        running
            .count("SELECT sum(issued_count)::bigint FROM campaigns")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_what_follows_is_persisted() {
    let running = Running::start().await;
    let campaign = running.campaign(10).await;
    running.produce("garbage", b"\xff\xfe not protobuf").await;
    let mut bad_field = event(campaign, "bob", 1);
    bad_field.seq = 0;
    running.produce_event(&bad_field).await;
    // A forged issuance id: its campaign part names another campaign.
    let mut forged = event(campaign, "mallory", 1);
    forged.issuance_id = IssuanceId::new(CampaignId(Uuid::now_v7())).to_string();
    running.produce_event(&forged).await;
    // A valid event cut short.
    let whole = event(campaign, "trudy", 1).encode_to_vec();
    running
        .produce("truncated", &whole[..whole.len() / 2])
        .await;
    running.produce_event(&event(campaign, "carol", 1)).await;
    running
        .wait_for("SELECT count(*) FROM coupons WHERE user_id = 'carol'", 1)
        .await;
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 1);

    let dead = read_all(&running.fixture.dead_letter_topic, 4).await;
    assert_eq!(dead.len(), 4);
    assert!(
        dead[0].0.starts_with("payload is not an IssuanceRequested"),
        "{}",
        dead[0].0
    );
    assert_eq!(dead[1].0, "invalid field seq");
    assert_eq!(dead[2].0, "invalid field campaign_id");
    assert!(
        dead[3].0.starts_with("payload is not an IssuanceRequested"),
        "{}",
        dead[3].0
    );
    assert_eq!(dead[0].1, b"\xff\xfe not protobuf");

    // The operator's view: each record with its reason; replayed, they come back to the source
    // topic unchanged, and (still poison) are dead-lettered again.
    let couponctl = |extra: &[&str]| {
        testkit::stdout_of(
            std::process::Command::new(testkit::workspace_bin("couponctl"))
                .args(["dead-letters", "records"])
                .args(extra)
                .env("KAFKA_BROKERS", testkit::kafka_brokers())
                .env(
                    "TOPIC_ISSUANCE_DEAD_LETTER",
                    &running.fixture.dead_letter_topic,
                ),
        )
    };
    let listed = couponctl(&[]);
    assert_eq!(listed.lines().count(), 1 + 4, "{listed}");
    assert!(listed.contains("invalid field seq"), "{listed}");
    assert!(listed.contains(&running.fixture.topic), "{listed}");
    assert!(couponctl(&["--replay"]).contains("replayed 4 record(s)"));
    let again = read_all(&running.fixture.dead_letter_topic, 8).await;
    assert_eq!(again.len(), 8);
    assert_eq!(again[4].1, dead[0].1, "replayed unchanged");
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_an_oversell_the_gate_let_through() {
    let running = Running::start().await;
    let campaign = running.campaign(2).await;
    for user in ["u1", "u2", "u3"] {
        running.produce_event(&event(campaign, user, 1)).await;
    }
    running
        .wait_for("SELECT count(*) FROM issuance_rejections", 1)
        .await;
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 2);
    assert_eq!(
        running
            .count("SELECT sum(issued_count)::bigint FROM campaigns")
            .await,
        2
    );
    let reason: String = running
        .fixture
        .db()
        .await
        .query_one("SELECT reason FROM issuance_rejections", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "stock-exhausted");
    // The earliest admissions won.
    assert_eq!(
        running
            .count("SELECT count(*) FROM coupons WHERE user_id IN ('u1', 'u2')")
            .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_refuses_a_second_coupon_for_one_user_slot_and_unknown_campaigns() {
    let running = Running::start().await;
    let campaign = running.campaign(10).await;
    running.produce_event(&event(campaign, "dave", 1)).await;
    // A different reservation for the same (campaign, user, seq): the gate lost its holder record.
    running.produce_event(&event(campaign, "dave", 1)).await;
    running
        .produce_event(&event(Uuid::now_v7(), "erin", 1))
        .await;
    running
        .wait_for("SELECT count(*) FROM issuance_rejections", 2)
        .await;
    assert_eq!(running.count("SELECT count(*) FROM coupons").await, 1);
    let reasons: Vec<String> = running
        .fixture
        .db()
        .await
        .query(
            "SELECT reason FROM issuance_rejections ORDER BY reason",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons, vec!["per-user-limit", "unknown-campaign"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_consumer_resumes_from_committed_offsets_without_duplicates() {
    let mut running = Running::start().await;
    let campaign = running.campaign(100).await;
    for n in 0..20 {
        running
            .produce_event(&event(campaign, &format!("first-{n}"), 1))
            .await;
    }
    running.wait_for("SELECT count(*) FROM coupons", 20).await;
    running.stop_consumer().await;
    for n in 0..20 {
        running
            .produce_event(&event(campaign, &format!("second-{n}"), 1))
            .await;
    }
    running.spawn_consumer();
    running.wait_for("SELECT count(*) FROM coupons", 40).await;
    assert_eq!(
        running
            .count("SELECT sum(issued_count)::bigint FROM campaigns")
            .await,
        40
    );
    assert_eq!(
        running
            .count("SELECT count(*) FROM issuance_rejections")
            .await,
        0
    );
}

/// PostgreSQL alone refuses an oversell and a duplicate, whatever the application does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_constraints_refuse_oversell_and_duplicate_on_their_own() {
    let fixture = Fixture::new(1).await;
    let db = fixture.db().await;
    let campaign = Uuid::now_v7();
    db.execute(
        "INSERT INTO campaigns (id, name, total_stock, starts_at, ends_at, discount_kind,
                                discount_value, coupon_valid_days)
         VALUES ($1, 'guarded', 1, now(), now() + interval '1 hour', 'fixed', 1, 1)",
        &[&campaign],
    )
    .await
    .unwrap();
    let oversell = db
        .execute(
            "UPDATE campaigns SET issued_count = 2 WHERE id = $1",
            &[&campaign],
        )
        .await
        .unwrap_err();
    assert_eq!(
        oversell.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    let insert = "INSERT INTO coupons (id, campaign_id, user_id, seq, requested_at, expires_at)
                  VALUES ($1, $2, 'u', 1, now(), now())";
    db.execute(insert, &[&Uuid::now_v7(), &campaign])
        .await
        .unwrap();
    let duplicate = db
        .execute(insert, &[&Uuid::now_v7(), &campaign])
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let null_user = db
        .execute(
            "INSERT INTO coupons (id, campaign_id, user_id, seq, requested_at, expires_at)
             VALUES ($1, $2, NULL, 2, now(), now())",
            &[&Uuid::now_v7(), &campaign],
        )
        .await
        .unwrap_err();
    assert_eq!(
        null_user.code(),
        Some(&tokio_postgres::error::SqlState::NOT_NULL_VIOLATION)
    );
}

/// Every record of a topic as (dlq-reason header, payload), waiting for at least `expected`.
async fn read_all(topic: &str, expected: usize) -> Vec<(String, Vec<u8>)> {
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", testkit::kafka_brokers())
            .set("group.id", format!("reader-{}", Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut records = Vec::new();
        while records.len() < expected && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let reason = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "dlq-reason"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                records.push((reason, message.payload().unwrap_or_default().to_vec()));
            }
        }
        records
    })
    .await
    .unwrap()
}
