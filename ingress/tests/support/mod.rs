//! The pipeline under test: the real ingress (and, when asked, the real consumer) running in
//! this process against the real Redis, Kafka and PostgreSQL, on resources of this test alone.

#![allow(dead_code)]

pub mod procs;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Fixture, token};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::oneshot;

/// Dropping it stops the ingress and the consumer, waits for them, then removes the fixture:
/// a Kafka client must be gone before its topics are deleted. Tests using it run on the
/// multi-threaded runtime, which lets the drop wait.
pub struct Stack {
    pub base: String,
    pub http: reqwest::Client,
    pub app: Arc<ingress::App>,
    /// The operator token of `admin_*` calls when the ingress expects other tokens.
    pub admin_token: Option<String>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Last field: dropped after the clients above.
    pub fixture: Fixture,
}

pub struct Options {
    pub partitions: i32,
    pub consumer: bool,
    /// Ingress settings beyond the test defaults (`--name=value`).
    pub extra: Vec<String>,
}

impl Stack {
    /// The ingress and the consumer.
    pub async fn pipeline() -> Stack {
        Stack::start(Options {
            partitions: 3,
            consumer: true,
            extra: Vec::new(),
        })
        .await
    }

    /// The ingress alone: accepted events stay on the topic.
    pub async fn ingress_only() -> Stack {
        Stack::ingress_with(&[]).await
    }

    /// The ingress alone, with extra settings.
    pub async fn ingress_with(extra: &[&str]) -> Stack {
        Stack::start(Options {
            partitions: 1,
            consumer: false,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        })
        .await
    }

    pub async fn start(options: Options) -> Stack {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let fixture = Fixture::new(options.partitions).await;
        let defaults = [
            "--listen=127.0.0.1:0".to_owned(),
            format!("--redis-url={}", testkit::redis_url()),
            format!("--redis-key-prefix={}", fixture.redis_prefix),
            format!("--kafka-brokers={}", testkit::kafka_brokers()),
            format!("--topic-requested={}", fixture.topic),
            format!("--consumer-group={}", fixture.group),
            format!("--database-url={}", fixture.database_url),
            format!("--jwt-hs256-secret={}", testkit::HS256_SECRET),
            "--database-pool-size=4".to_owned(),
            // Tests share two cores with the build and each other: be patient with Redis.
            "--redis-timeout-ms=5000".to_owned(),
            // Short journal deadlines so roll-forward happens within a test's patience.
            "--kafka-message-timeout-ms=3000".to_owned(),
            "--journal-grace-ms=500".to_owned(),
            "--sweep-interval-ms=200".to_owned(),
            "--reconcile-interval-ms=500".to_owned(),
            "--shutdown-delay-ms=0".to_owned(),
            // Tests poll one user's status often; the rate limits have their own tests.
            "--rate-limit-user-per-sec=0".to_owned(),
        ];
        // A setting the test gives replaces the default (clap refuses one flag twice).
        let flag = |arg: &str| arg.split('=').next().unwrap_or_default().to_owned();
        let given: Vec<String> = options.extra.iter().map(|a| flag(a)).collect();
        let config = ingress::Config::from_args(
            std::iter::once("coupon-ingress".to_owned())
                .chain(defaults.into_iter().filter(|d| !given.contains(&flag(d))))
                .chain(options.extra),
        )
        .expect("ingress config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = ingress::App::build(config).await.expect("ingress starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut stops = vec![stop];
        let mut tasks = vec![tokio::spawn(ingress::run(listener, app.clone(), async {
            let _ = stopped.await;
        }))];
        if options.consumer {
            let persister =
                consumer::Persister::build(consumer_config(&fixture)).expect("consumer starts");
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            tasks.push(tokio::spawn(persister.run(async {
                let _ = stopped.await;
            })));
        }
        Stack {
            base,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
            app,
            admin_token: None,
            stops,
            tasks,
            fixture,
        }
    }

    /// Creates an open campaign (window from a minute ago to an hour ahead) and returns its id.
    pub async fn open_campaign(&self, stock: u32, per_user_limit: u32) -> String {
        let now = OffsetDateTime::now_utc();
        self.campaign_with_window(
            stock,
            per_user_limit,
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .await
    }

    pub async fn campaign_with_window(
        &self,
        stock: u32,
        per_user_limit: u32,
        starts_at: OffsetDateTime,
        ends_at: OffsetDateTime,
    ) -> String {
        let body = json!({
            "name": "test campaign",
            "total_stock": stock,
            "per_user_limit": per_user_limit,
            "starts_at": starts_at.format(&Rfc3339).unwrap(),
            "ends_at": ends_at.format(&Rfc3339).unwrap(),
            "discount": {"kind": "fixed", "value": 1000},
            "coupon_valid_days": 7,
        });
        let response = self.admin_post("/v1/admin/campaigns", &body).await;
        assert_eq!(response.status(), 201, "campaign created");
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// The operator's token: a development one, unless a test set its own.
    pub fn admin_token(&self) -> String {
        self.admin_token
            .clone()
            .unwrap_or_else(|| token("operator", Some("admin"), 3600))
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.admin_token())
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_campaign(&self, id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/admin/campaigns/{id}", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST /v1/campaigns/{id}/issuances` as `user`.
    pub async fn request(&self, campaign: &str, user: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/campaigns/{campaign}/issuances", self.base))
            .bearer_auth(token(user, None, 3600))
            .send()
            .await
            .unwrap()
    }

    pub async fn status(&self, issuance: &str, user: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/issuances/{issuance}", self.base))
            .bearer_auth(token(user, None, 3600))
            .send()
            .await
            .unwrap()
    }

    /// Rows persisted for a campaign.
    pub async fn coupons(&self, campaign: &str) -> i64 {
        let db = self.fixture.db().await;
        let id = uuid::Uuid::parse_str(campaign).unwrap();
        db.query_one(
            "SELECT count(*) FROM coupons WHERE campaign_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// Waits until the ledger holds `n` coupons of the campaign.
    pub async fn wait_for_coupons(&self, campaign: &str, n: i64) {
        testkit::eventually(
            Duration::from_secs(60),
            "coupons to be persisted",
            || async { (self.coupons(campaign).await >= n).then_some(()) },
        )
        .await;
        assert_eq!(self.coupons(campaign).await, n, "exactly {n} coupons");
    }

    /// Reserves in the gate directly, as the ingress does before producing, and produces
    /// nothing: the state an ingress leaves when it dies (or Kafka refuses) right after.
    pub async fn reserve_without_event(
        &self,
        campaign: &str,
        user: &str,
    ) -> schema::ids::IssuanceId {
        let id = schema::ids::CampaignId(uuid::Uuid::parse_str(campaign).unwrap());
        let issuance = schema::ids::IssuanceId::new(id);
        let user = schema::ids::UserId::parse(user).unwrap();
        let reserved = self
            .app
            .gate
            .reserve(&id, &user, &issuance.reservation)
            .await
            .unwrap();
        assert!(matches!(reserved, gate::Reservation::Accepted { .. }));
        issuance
    }

    /// Waits until every reservation of the campaign left the journal.
    pub async fn wait_for_empty_journal(&self, campaign: &str) {
        let id = schema::ids::CampaignId(uuid::Uuid::parse_str(campaign).unwrap());
        testkit::eventually(Duration::from_secs(60), "an empty journal", || async {
            (self.app.gate.journal_len(&id).await.unwrap() == 0).then_some(())
        })
        .await;
    }

    /// What Redis, the topic and PostgreSQL hold, to show a request changed nothing.
    pub async fn footprint(&self) -> Footprint {
        let db = self.fixture.db().await;
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM campaigns), (SELECT count(*) FROM coupons),
                        (SELECT count(*) FROM issuance_rejections),
                        (SELECT coalesce(sum(issued_count), 0)::bigint FROM campaigns)",
                &[],
            )
            .await
            .unwrap();
        Footprint {
            redis: self.fixture.redis_snapshot().await,
            topic: self.fixture.topic_len(&self.fixture.topic).await,
            ledger: (row.get(0), row.get(1), row.get(2), row.get(3)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    redis: Vec<(String, Vec<(String, String)>)>,
    topic: i64,
    ledger: (i64, i64, i64, i64),
}

pub fn consumer_config(fixture: &Fixture) -> consumer::Config {
    consumer::Config::from_args([
        "coupon-consumer",
        &format!("--kafka-brokers={}", testkit::kafka_brokers()),
        &format!("--group-id={}", fixture.group),
        &format!("--topic-requested={}", fixture.topic),
        &format!("--topic-dead-letter={}", fixture.dead_letter_topic),
        &format!("--topic-issued={}", fixture.issued_topic),
        &format!("--topic-campaign-events={}", fixture.events_topic),
        &format!("--database-url={}", fixture.database_url),
        "--session-timeout-ms=6000",
        "--max-poll-interval-ms=6000",
        "--database-pool-size=2",
    ])
    .expect("consumer config")
}

impl Drop for Stack {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        let tasks: Vec<_> = self.tasks.drain(..).collect();
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let all = futures_util::future::join_all(tasks);
                let _ = tokio::time::timeout(Duration::from_secs(30), all).await;
            })
        });
    }
}
