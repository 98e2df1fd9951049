//! The fault suite: each case runs a burst of distinct users against a campaign, injects one
//! fault mid-burst, recovers, waits for quiescence, then checks every invariant against Redis,
//! PostgreSQL, the topics and the client's own log of answers.
//!
//! The services a case breaks are its own (a private Redis and broker on free ports, the ingress
//! and consumer as real processes), so cases run in parallel with everything else.

use std::fs::File;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gate::Gate;
use gate::reconcile::{self, CampaignReport};
use schema::ids::CampaignId;
use serde_json::{Value, json};
use testkit::{Fixture, token};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::procs::{PrivateBroker, PrivateRedis, Proc, free_port, workspace_bin};
use crate::support::proxy::FaultProxy;

mod cases;

/// Kafka's acknowledgement deadline in the fault suite: short, so cases stay short.
const MESSAGE_TIMEOUT_MS: u64 = 2_000;

/// One answer the client saw.
#[derive(Debug, Clone)]
pub struct Answer {
    pub user: String,
    /// 0 when the connection failed (the ingress was killed).
    pub status: u16,
    pub issuance_id: Option<String>,
    /// How long the answer took (in failure messages, to tell a slow 503 from a hang).
    pub elapsed: Duration,
}

/// The services of one case. Field order is drop order: processes, then the fixture (whose
/// topics live on the private broker), then the private services.
pub struct World {
    pub ingress: Option<Proc>,
    pub consumer: Option<Proc>,
    /// The consumer reaches PostgreSQL through this proxy, so a case can take the database away.
    pub database_proxy: FaultProxy,
    pub fixture: Fixture,
    pub redis: PrivateRedis,
    pub broker: PrivateBroker,
    pub port: u16,
    /// The first consumer's operations port (`/metrics`, `/readyz`).
    pub consumer_ops_port: u16,
    /// Settings of both service processes beyond the suite's defaults.
    pub env: Vec<(&'static str, String)>,
    pub http: reqwest::Client,
    pub name: &'static str,
}

impl World {
    pub async fn start(name: &'static str) -> World {
        World::start_with(name, Vec::new()).await
    }

    /// As [`World::start`], with extra environment for the service processes.
    pub async fn start_with(name: &'static str, env: Vec<(&'static str, String)>) -> World {
        service::tls::install();
        let redis = PrivateRedis::start().await;
        let broker = PrivateBroker::start().await;
        let fixture = Fixture::on_brokers(3, &broker.brokers()).await;
        let database: tokio_postgres::Config = fixture.database_url.parse().unwrap();
        let database_port = database.get_ports().first().copied().unwrap_or(5432);
        let database_proxy = FaultProxy::start(("127.0.0.1".to_owned(), database_port)).await;
        let mut world = World {
            ingress: None,
            consumer: None,
            database_proxy,
            fixture,
            redis,
            broker,
            port: free_port(),
            consumer_ops_port: free_port(),
            env,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            name,
        };
        world.start_ingress().await;
        world.start_consumer();
        world
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self, process: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!(
            "coupon-fault-{}-{}-{process}.log",
            self.name, self.fixture.id
        ))
    }

    /// The log of one process of this world: kept when the test fails, removed when it passes.
    fn log(&self, process: &str) -> File {
        File::options()
            .create(true)
            .append(true)
            .open(self.log_path(process))
            .unwrap()
    }

    pub async fn start_ingress(&mut self) {
        let mut command = Command::new(workspace_bin("coupon-ingress"));
        command
            .env(
                "RUST_LOG",
                std::env::var("COUPON_FAULT_LOG").unwrap_or("info".into()),
            )
            .env("INGRESS_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("REDIS_URL", self.redis.url())
            .env("REDIS_KEY_PREFIX", &self.fixture.redis_prefix)
            .env("REDIS_TIMEOUT_MS", "1000")
            .env("KAFKA_BROKERS", self.broker.brokers())
            .env("TOPIC_ISSUANCE_REQUESTED", &self.fixture.topic)
            .env("CONSUMER_GROUP", &self.fixture.group)
            .env("KAFKA_MESSAGE_TIMEOUT_MS", MESSAGE_TIMEOUT_MS.to_string())
            .env("JOURNAL_GRACE_MS", "500")
            .env("SWEEP_INTERVAL_MS", "200")
            .env("RECONCILE_INTERVAL_MS", "500")
            .env("DATABASE_URL", &self.fixture.database_url)
            .env("JWT_HS256_SECRET", testkit::HS256_SECRET)
            .env("SHUTDOWN_DELAY_MS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn_logged(&mut command, self.log("ingress"));
        self.ingress = Some(proc);
        let http = self.http.clone();
        let ready = format!("{}/readyz", self.base());
        testkit::eventually(
            Duration::from_secs(30),
            "the ingress to be ready",
            || async {
                let response = http.get(&ready).send().await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
    }

    pub fn start_consumer(&mut self) {
        self.consumer = Some(self.spawn_consumer("consumer"));
    }

    /// Another member of the same consumer group.
    pub fn spawn_consumer(&self, name: &str) -> Proc {
        let mut command = Command::new(workspace_bin("coupon-consumer"));
        command
            .env("RUST_LOG", "info")
            .env("KAFKA_BROKERS", self.broker.brokers())
            .env("CONSUMER_GROUP", &self.fixture.group)
            .env("TOPIC_ISSUANCE_REQUESTED", &self.fixture.topic)
            .env(
                "TOPIC_ISSUANCE_DEAD_LETTER",
                &self.fixture.dead_letter_topic,
            )
            .env(
                "CONSUMER_HTTP_LISTEN",
                if name == "consumer" {
                    format!("127.0.0.1:{}", self.consumer_ops_port)
                } else {
                    "127.0.0.1:0".to_owned()
                },
            )
            .env("TOPIC_COUPON_ISSUED", &self.fixture.issued_topic)
            .env("TOPIC_CAMPAIGN_EVENTS", &self.fixture.events_topic)
            .env("KAFKA_STATISTICS_INTERVAL_MS", "1000")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("KAFKA_MAX_POLL_INTERVAL_MS", "6000")
            .env(
                "DATABASE_URL",
                format!(
                    "postgres://postgres@127.0.0.1:{}/{}",
                    self.database_proxy.port, self.fixture.database
                ),
            );
        Proc::spawn_logged(&mut command, self.log(name))
    }

    pub async fn gate(&self) -> Gate {
        Gate::connect(
            &self.redis.url(),
            &self.fixture.redis_prefix,
            Duration::from_secs(2),
            Duration::from_millis(MESSAGE_TIMEOUT_MS + 500),
        )
        .await
        .unwrap()
    }

    pub async fn open_campaign(&self, stock: u32) -> CampaignId {
        let now = OffsetDateTime::now_utc();
        self.campaign_with_window(
            stock,
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .await
    }

    pub async fn campaign_with_window(
        &self,
        stock: u32,
        starts_at: OffsetDateTime,
        ends_at: OffsetDateTime,
    ) -> CampaignId {
        let body = json!({
            "name": self.name,
            "total_stock": stock,
            "starts_at": starts_at.format(&Rfc3339).unwrap(),
            "ends_at": ends_at.format(&Rfc3339).unwrap(),
            "discount": {"kind": "percent", "value": 5},
            "coupon_valid_days": 7,
        });
        let created: Value = self
            .http
            .post(format!("{}/v1/admin/campaigns", self.base()))
            .bearer_auth(token("operator", Some("admin"), 3600))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created["id"].as_str().unwrap().parse().unwrap()
    }

    /// `burst` against this world's ingress.
    pub async fn burst(
        &self,
        campaign: &CampaignId,
        users: Vec<String>,
        concurrency: usize,
        progress: Arc<AtomicUsize>,
    ) -> Vec<Answer> {
        burst(
            &self.http,
            self.base(),
            campaign,
            users,
            concurrency,
            progress,
        )
        .await
    }

    /// Coupon rows in the ledger.
    pub async fn rows(&self) -> i64 {
        let db = self.fixture.db().await;
        db.query_one("SELECT count(*) FROM coupons", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until the ledger holds at least `n` coupons.
    pub async fn wait_for_rows(&self, n: i64, what: &str) {
        testkit::eventually(Duration::from_secs(60), what, || async {
            (self.rows().await >= n).then_some(())
        })
        .await;
    }

    /// Waits until the system is quiet (journal empty, every reservation persisted or refused),
    /// then checks every invariant. Returns the final report.
    pub async fn check(
        &self,
        campaign: &CampaignId,
        answers: &[Answer],
        allow_rejected: bool,
    ) -> CampaignReport {
        let started = Instant::now();
        let gate = self.gate().await;
        let db = self.fixture.db().await;
        let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
        let ids: Vec<uuid::Uuid> = accepted
            .iter()
            .map(|a| {
                let id: schema::ids::IssuanceId =
                    a.issuance_id.as_deref().unwrap().parse().unwrap();
                id.reservation
            })
            .collect();
        let report = testkit::eventually(Duration::from_secs(90), "quiescence", || async {
            let mut report = reconcile::report(&db, &gate, campaign).await.ok()?;
            if report.journal > 0 {
                return None;
            }
            let settled: i64 = db
                .query_one(
                    "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1))
                          + (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                    &[&ids],
                )
                .await
                .ok()?
                .get(0);
            if settled < ids.len() as i64 {
                return None;
            }
            if allow_rejected {
                // After Redis lost writes, the operator's repair sets the gate from the ledger.
                reconcile::repair_counters(&gate, &report).await.ok()?;
                report = reconcile::report(&db, &gate, campaign).await.ok()?;
            }
            report.quiet_breaches().is_empty().then_some(report)
        })
        .await;

        let dead = self
            .fixture
            .topic_len(&self.fixture.dead_letter_topic)
            .await;
        let by = |s: u16| answers.iter().filter(|a| a.status == s).count();
        println!(
            "case {}: requests {}, 202 {}, 409 {}, 410 {}, 503 {}, connection errors {}, rows {}, rejected after 202 {}, dead letters {}, quiet after {:.1} s",
            self.name,
            answers.len(),
            by(202),
            by(409),
            by(410),
            by(503),
            by(0),
            report.coupons,
            report.rejected,
            dead,
            started.elapsed().as_secs_f64()
        );
        assert!(report.breaches().is_empty(), "{:?}", report.breaches());
        assert_eq!(dead, 0, "no dead letters without poison");
        if !allow_rejected {
            assert_eq!(report.rejected, 0, "nothing rejected after 202");
        }
        // No 202 lost: every accepted issuance is a coupon, or (only after a Redis loss) a
        // recorded rejection; no user holds more than one coupon.
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1)),
                        (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                &[&ids],
            )
            .await
            .unwrap();
        let (issued, rejected): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(issued + rejected, ids.len() as i64, "every 202 is terminal");
        let users: std::collections::HashSet<&str> =
            accepted.iter().map(|a| a.user.as_str()).collect();
        if !allow_rejected {
            assert_eq!(users.len(), accepted.len(), "a user was accepted twice");
        }
        assert_eq!(report.users_over_limit, 0);
        assert!(report.coupons <= report.total_stock);
        report
    }
}

impl Drop for World {
    /// A failed case prints the end of each process log (CI keeps only the test's output) and
    /// keeps the files; a passing case removes them unless `COUPON_KEEP_LOGS` is set.
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for process in ["ingress", "consumer", "consumer-2"] {
            let path = self.log_path(process);
            if failed {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(80)..];
                    eprintln!(
                        "--- last lines of {} ---\n{}",
                        path.display(),
                        tail.join("\n")
                    );
                }
            } else if std::env::var_os("COUPON_KEEP_LOGS").is_none() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Sends one request per user with bounded concurrency; `progress` counts answers so a case can
/// inject its fault mid-burst.
pub async fn burst(
    http: &reqwest::Client,
    base: String,
    campaign: &CampaignId,
    users: Vec<String>,
    concurrency: usize,
    progress: Arc<AtomicUsize>,
) -> Vec<Answer> {
    let url = format!("{base}/v1/campaigns/{campaign}/issuances");
    futures_util::stream::iter(users)
        .map(|user| {
            let http = http.clone();
            let url = url.clone();
            let progress = progress.clone();
            async move {
                let started = Instant::now();
                let sent = http
                    .post(&url)
                    .bearer_auth(token(&user, None, 3600))
                    .send()
                    .await;
                let answer = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body: Value = response.json().await.unwrap_or(Value::Null);
                        Answer {
                            user,
                            status,
                            issuance_id: body["issuance_id"].as_str().map(str::to_owned),
                            elapsed: started.elapsed(),
                        }
                    }
                    Err(_) => Answer {
                        user,
                        status: 0,
                        issuance_id: None,
                        elapsed: started.elapsed(),
                    },
                };
                progress.fetch_add(1, Ordering::SeqCst);
                answer
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits until `progress` reached `count` answers.
pub async fn after(progress: &AtomicUsize, count: usize) {
    testkit::eventually(Duration::from_secs(60), "burst progress", || async {
        (progress.load(Ordering::SeqCst) >= count).then_some(())
    })
    .await;
}

pub fn users(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n}")).collect()
}
