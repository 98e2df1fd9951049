//! The ingress under test, in this process: the real ingress (and, when asked, the real
//! consumer) against the real Redis, Kafka and PostgreSQL, on a `testkit::Fixture` of this test
//! alone. Tests speak to it through the `testkit::Api` a `Stack` derefs to, and may reach into
//! the running `App` (its gate, its limits, its readiness).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use testkit::{Api, Fixture};
use tokio::sync::oneshot;

/// Dropping it stops the ingress and the consumer, waits for them, then removes the fixture:
/// a Kafka client must be gone before its topics are deleted. Tests using it run on the
/// multi-threaded runtime, which lets the drop wait.
pub struct Stack {
    pub api: Api,
    /// The operations listener's base URL (`/metrics`, `/healthz`, `/readyz`).
    pub ops: String,
    pub app: Arc<ingress::App>,
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
        let config = ingress_config(&fixture, options.extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ops_listener = tokio::net::TcpListener::bind(config.ops_listen)
            .await
            .unwrap();
        let ops = format!("http://{}", ops_listener.local_addr().unwrap());
        let app = ingress::App::build(config).await.expect("ingress starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let mut stops = vec![stop];
        let mut tasks = vec![tokio::spawn(ingress::run(
            listener,
            ops_listener,
            app.clone(),
            async {
                let _ = stopped.await;
            },
        ))];
        if options.consumer {
            let persister =
                consumer::Persister::build(consumer_config(&fixture)).expect("consumer starts");
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            tasks.push(tokio::spawn(persister.run(async {
                let _ = stopped.await;
            })));
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        Stack {
            api: Api::new(base, http),
            ops,
            app,
            stops,
            tasks,
            fixture,
        }
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
}

impl Deref for Stack {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Api {
        &mut self.api
    }
}

/// The ingress's configuration on the fixture's resources: the test defaults, each replaced by
/// the setting of the same name in `extra`.
fn ingress_config(fixture: &Fixture, extra: Vec<String>) -> ingress::Config {
    let defaults = [
        "--coupon-env=development".to_owned(),
        "--listen=127.0.0.1:0".to_owned(),
        // Many ingresses run at once in one test process: each on ports of its own.
        "--ops-listen=127.0.0.1:0".to_owned(),
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
    let given: Vec<String> = extra.iter().map(|a| flag(a)).collect();
    ingress::Config::from_args(
        std::iter::once("coupon-ingress".to_owned())
            .chain(defaults.into_iter().filter(|d| !given.contains(&flag(d))))
            .chain(extra),
    )
    .expect("ingress config")
}

/// The consumer's configuration on the fixture's resources.
pub fn consumer_config(fixture: &Fixture) -> consumer::Config {
    let mut args = fixture.consumer_args();
    args.extend(
        [
            "--coupon-env=development",
            "--session-timeout-ms=6000",
            "--max-poll-interval-ms=6000",
            "--database-pool-size=2",
        ]
        .map(String::from),
    );
    consumer::Config::from_args(args).expect("consumer config")
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
