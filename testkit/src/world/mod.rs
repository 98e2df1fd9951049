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
mod ingress;
mod traffic;

pub use ingress::SecondIngress;
pub use traffic::{Attempt, Rush, fence};

/// Kafka's acknowledgement deadline of a world's ingress: short, so tests stay short.
pub const MESSAGE_TIMEOUT_MS: u64 = 2_000;
/// How long past it a world's ingress waits before it rolls a reservation forward.
pub const JOURNAL_GRACE_MS: u64 = 500;

/// Services a world runs on instead of its own; each one given replaces the world's.
#[derive(Default)]
pub struct Services {
    /// The gate's Redis ([`World::gate_redis`]).
    pub redis: Option<gate::Endpoint>,
    /// The broker (a secure one, [`PrivateBroker::start_secure`]).
    pub broker: Option<PrivateBroker>,
    /// The test's resources when its database is not on the shared server (a TLS one of
    /// [`crate::pg_tls`], migrated): its topics must exist on `broker`, reached with
    /// [`Fixture::kafka`].
    pub fixture: Option<Fixture>,
    /// Every process reaches the world's private Redis through a proxy ([`World::redis_proxy`])
    /// that a failover points at the promoted replica: one `REDIS_URL` throughout.
    pub redis_proxy: bool,
}

/// The services of one test. Field order is drop order: processes, then the fixture (whose
/// topics live on the private broker), then the private services. It derefs to the [`Api`] of
/// its ingress.
pub struct World {
    pub ingress: Option<Proc>,
    /// A second ingress process ([`World::start_second_ingress`]).
    pub second: Option<SecondIngress>,
    pub consumer: Option<Proc>,
    /// The consumer reaches PostgreSQL through this proxy, so a test can take the database away.
    pub database_proxy: FaultProxy,
    pub fixture: Fixture,
    pub redis: PrivateRedis,
    /// The gate's way to [`World::redis`] when [`Services::redis_proxy`] asked for it.
    pub redis_proxy: Option<FaultProxy>,
    /// The gate's Redis when it is not [`World::redis`]: a TLS server or a cluster the test
    /// started ([`crate::redis_servers`]) and keeps alive longer than the world.
    pub gate_redis: Option<gate::Endpoint>,
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
        World::launch(name, env, Services::default()).await
    }

    /// As [`World::start_with`], with the gate (the ingress, [`World::gate`] and the check) on
    /// `redis` instead of the world's private Redis.
    pub async fn start_on(
        name: &'static str,
        env: Vec<(&'static str, String)>,
        redis: gate::Endpoint,
    ) -> World {
        let services = Services {
            redis: Some(redis),
            ..Services::default()
        };
        World::launch(name, env, services).await
    }

    /// As [`World::start_with`], with Kafka on `broker` (a secure one,
    /// [`PrivateBroker::start_secure`]: every process and the fixture take its properties).
    pub async fn start_on_broker(
        name: &'static str,
        env: Vec<(&'static str, String)>,
        broker: PrivateBroker,
    ) -> World {
        let services = Services {
            broker: Some(broker),
            ..Services::default()
        };
        World::launch(name, env, services).await
    }

    /// As [`World::start_with`], on every service `services` gives (the gate's Redis, the
    /// broker and the fixture together: managed services all at once).
    pub async fn start_on_services(
        name: &'static str,
        env: Vec<(&'static str, String)>,
        services: Services,
    ) -> World {
        World::launch(name, env, services).await
    }

    async fn launch(
        name: &'static str,
        env: Vec<(&'static str, String)>,
        services: Services,
    ) -> World {
        service::tls::install();
        let redis = PrivateRedis::start().await;
        let redis_proxy = match services.redis_proxy {
            true => Some(FaultProxy::start(("127.0.0.1".to_owned(), redis.port)).await),
            false => None,
        };
        let broker = match services.broker {
            Some(broker) => broker,
            None => PrivateBroker::start().await,
        };
        let fixture = match services.fixture {
            Some(fixture) => fixture,
            None => Fixture::on_kafka(3, broker.kafka()).await,
        };
        let database = database_config(&fixture.database_url);
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
            second: None,
            consumer: None,
            database_proxy,
            fixture,
            redis,
            redis_proxy,
            gate_redis: services.redis,
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
            .envs(self.broker.kafka_env())
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
            .env("DATABASE_URL", self.proxied_database_url());
        Proc::spawn_logged(&mut command, self.log(name))
    }

    /// The consumer's `DATABASE_URL`: the fixture's (its user, password and TLS settings) on
    /// 127.0.0.1 at the proxy's port.
    fn proxied_database_url(&self) -> String {
        let url = &self.fixture.database_url;
        let config = database_config(url);
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let proxied = url.replacen(
            &format!("@{host}:{port}/"),
            &format!("@127.0.0.1:{}/", self.database_proxy.port),
            1,
        );
        assert_ne!(&proxied, url, "the database URL names its host and port");
        proxied
    }

    /// The gate's Redis: [`World::gate_redis`], or else the private one (through
    /// [`World::redis_proxy`] when there is one).
    pub fn redis_endpoint(&self) -> gate::Endpoint {
        let url = match &self.redis_proxy {
            Some(proxy) => format!("redis://127.0.0.1:{}/0", proxy.port),
            None => self.redis.url(),
        };
        self.gate_redis.clone().unwrap_or(gate::Endpoint {
            url,
            ..gate::Endpoint::default()
        })
    }

    /// The gate's settings as a process takes them: `REDIS_URL`, `REDIS_CA_FILE` (when set),
    /// `REDIS_CLUSTER` and `REDIS_KEY_PREFIX`.
    pub fn redis_env(&self) -> Vec<(&'static str, String)> {
        let redis = self.redis_endpoint();
        let mut env = vec![
            ("REDIS_URL", redis.url),
            ("REDIS_CLUSTER", redis.cluster.to_string()),
            ("REDIS_KEY_PREFIX", self.fixture.redis_prefix.clone()),
        ];
        if let Some(ca) = redis.ca_file {
            env.push(("REDIS_CA_FILE", ca.display().to_string()));
        }
        env
    }

    /// `couponctl verify` with this world's settings (ledger, broker and its properties, group,
    /// topic, gate); it must exit 0. Its standard output.
    pub fn couponctl_verify(&self) -> String {
        self.couponctl_verify_with(&[])
    }

    /// As [`World::couponctl_verify`], with more arguments (`--repair`, `--campaign <id>`).
    pub fn couponctl_verify_with(&self, args: &[&str]) -> String {
        let output = self.couponctl_verify_command(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// The `couponctl verify` command with this world's settings and `args`, to run as the
    /// test needs (beside a burst, for one).
    pub fn couponctl_verify_command(&self, args: &[&str]) -> Command {
        let fixture = &self.fixture;
        let mut command = Command::new(workspace_bin("couponctl"));
        command
            .arg("verify")
            .args(args)
            .env("COUPON_ENV", "development")
            .env(
                "JOURNAL_DEADLINE_MS",
                (MESSAGE_TIMEOUT_MS + JOURNAL_GRACE_MS).to_string(),
            )
            .env("DATABASE_URL", &fixture.database_url)
            .env("KAFKA_BROKERS", self.broker.brokers())
            .envs(self.broker.kafka_env())
            .env("CONSUMER_GROUP", &fixture.group)
            .env("TOPIC_ISSUANCE_REQUESTED", &fixture.topic)
            .env_remove("REDIS_CA_FILE")
            .envs(self.redis_env());
        command
    }

    /// A gate on this world's Redis, as the ingress configures it.
    pub async fn gate(&self) -> Gate {
        Gate::connect(
            &self.redis_endpoint(),
            &self.fixture.redis_prefix,
            Duration::from_secs(2),
            Duration::from_millis(MESSAGE_TIMEOUT_MS + 500),
        )
        .await
        .unwrap()
    }
}

/// The connection settings of a database URL, its TLS settings aside (tokio-postgres reads no
/// `verify-full`).
fn database_config(url: &str) -> tokio_postgres::Config {
    service::postgres_tls::Settings::resolve(url, None, None, service::Profile::Development)
        .unwrap()
        .config
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
        for process in ["ingress", "ingress-2", "consumer", "consumer-2"] {
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
