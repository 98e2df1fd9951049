//! The whole pipeline as real processes on services of its own: a private Redis and broker on
//! free ports, the test's database behind a fault proxy, and the ingress and consumer binaries.
//! A test may kill, pause or restart any of them, so tests run in parallel with everything else
//! however hard they break things. [`World::check`] ends a test: it waits for quiescence, then
//! checks every invariant against Redis, PostgreSQL, the topics and the client's own answers.

use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::time::Duration;

use gate::Gate;

use crate::{
    Api, FaultProxy, Fixture, PrivateBroker, PrivateRedis, Proc, free_port, workspace_bin,
};

mod check;

/// Kafka's acknowledgement deadline of a world's ingress: short, so tests stay short.
pub const MESSAGE_TIMEOUT_MS: u64 = 2_000;

/// The services of one test. Field order is drop order: processes, then the fixture (whose
/// topics live on the private broker), then the private services. It derefs to the [`Api`] of
/// its ingress.
pub struct World {
    pub ingress: Option<Proc>,
    pub consumer: Option<Proc>,
    /// The consumer reaches PostgreSQL through this proxy, so a test can take the database away.
    pub database_proxy: FaultProxy,
    pub fixture: Fixture,
    pub redis: PrivateRedis,
    pub broker: PrivateBroker,
    /// The ingress's port (the same across restarts).
    pub port: u16,
    /// The ingress's operations port (`/metrics`, `/readyz`; the same across restarts).
    pub ingress_ops_port: u16,
    /// The first consumer's operations port (`/metrics`, `/readyz`).
    pub consumer_ops_port: u16,
    /// Settings of both service processes beyond the world's defaults.
    pub env: Vec<(&'static str, String)>,
    pub api: Api,
    /// Names the process logs of this test.
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
        let port = free_port();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let mut world = World {
            ingress: None,
            consumer: None,
            database_proxy,
            fixture,
            redis,
            broker,
            port,
            ingress_ops_port: free_port(),
            consumer_ops_port: free_port(),
            env,
            api: Api::new(format!("http://127.0.0.1:{port}"), http),
            name,
        };
        world.start_ingress().await;
        world.start_consumer();
        world
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

    /// Starts the ingress (again) and waits until it is ready.
    pub async fn start_ingress(&mut self) {
        let mut command = Command::new(workspace_bin("coupon-ingress"));
        command
            .env(
                "RUST_LOG",
                std::env::var("COUPON_FAULT_LOG").unwrap_or("info".into()),
            )
            .env("COUPON_ENV", "development")
            .env("INGRESS_LISTEN", format!("127.0.0.1:{}", self.port))
            .env(
                "INGRESS_OPS_LISTEN",
                format!("127.0.0.1:{}", self.ingress_ops_port),
            )
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
            .env("JWT_HS256_SECRET", crate::HS256_SECRET)
            .env("SHUTDOWN_DELAY_MS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn_logged(&mut command, self.log("ingress"));
        self.ingress = Some(proc);
        let ready = format!("{}/readyz", self.api.base);
        crate::eventually(
            Duration::from_secs(30),
            "the ingress to be ready",
            || async {
                let response = self.api.http.get(&ready).send().await.ok()?;
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
            .env("COUPON_ENV", "development")
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

    /// A gate on this world's Redis, as the ingress configures it.
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
}

impl Deref for World {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Api {
        &mut self.api
    }
}

impl Drop for World {
    /// A failed test prints the end of each process log (CI keeps only the test's output) and
    /// keeps the files; a passing test removes them unless `COUPON_KEEP_LOGS` is set.
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
