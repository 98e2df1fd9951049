//! The ingress processes of a world: the first on [`World::port`], and a second one on ports of
//! its own ([`World::start_second_ingress`]), both on the same Redis, broker and ledger, as two
//! pods behind one load balancer.

use std::process::Command;
use std::time::Duration;

use super::{MESSAGE_TIMEOUT_MS, World};
use crate::{Api, Proc, free_port, workspace_bin};

/// The second ingress process: its process, its client and its ports.
pub struct SecondIngress {
    pub proc: Option<Proc>,
    pub api: Api,
    pub port: u16,
    pub ops_port: u16,
}

impl World {
    /// Starts the ingress (again) and waits until it is ready.
    pub async fn start_ingress(&mut self) {
        let command = self.ingress_command(self.port, self.ingress_ops_port);
        self.ingress = Some(self.spawn_ingress(command, "ingress", &self.api).await);
    }

    /// Starts a second ingress process (again, on the same ports when it ran before) and waits
    /// until it is ready; [`World::apis`] then names both.
    pub async fn start_second_ingress(&mut self) {
        let (port, ops_port) = match &self.second {
            Some(second) => (second.port, second.ops_port),
            None => (free_port(), free_port()),
        };
        let mut api = self.api.clone();
        api.base = format!("http://127.0.0.1:{port}");
        let command = self.ingress_command(port, ops_port);
        let proc = self.spawn_ingress(command, "ingress-2", &api).await;
        self.second = Some(SecondIngress {
            proc: Some(proc),
            api,
            port,
            ops_port,
        });
    }

    /// The clients of the ingress processes: the first, then the second when started.
    pub fn apis(&self) -> Vec<&Api> {
        let mut apis = vec![&self.api];
        apis.extend(self.second.as_ref().map(|second| &second.api));
        apis
    }

    async fn spawn_ingress(&self, mut command: Command, name: &str, api: &Api) -> Proc {
        let proc = Proc::spawn_logged(&mut command, self.log(name));
        let ready = format!("{}/readyz", api.base);
        crate::eventually(
            Duration::from_secs(30),
            "the ingress to be ready",
            || async {
                let response = api.http.get(&ready).send().await.ok()?;
                (response.status() == 200).then_some(())
            },
        )
        .await;
        proc
    }

    fn ingress_command(&self, port: u16, ops_port: u16) -> Command {
        let mut command = Command::new(workspace_bin("coupon-ingress"));
        command
            .env(
                "RUST_LOG",
                std::env::var("COUPON_FAULT_LOG").unwrap_or("info".into()),
            )
            .env("COUPON_ENV", "development")
            .env("INGRESS_LISTEN", format!("127.0.0.1:{port}"))
            .env("INGRESS_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
            .env_remove("REDIS_CA_FILE")
            .envs(self.redis_env())
            .env("REDIS_TIMEOUT_MS", "1000")
            .env("KAFKA_BROKERS", self.broker.brokers())
            .envs(self.broker.kafka_env())
            .env("TOPIC_ISSUANCE_REQUESTED", &self.fixture.topic)
            .env("CONSUMER_GROUP", &self.fixture.group)
            .env("KAFKA_MESSAGE_TIMEOUT_MS", MESSAGE_TIMEOUT_MS.to_string())
            .env("JOURNAL_GRACE_MS", super::JOURNAL_GRACE_MS.to_string())
            .env("SWEEP_INTERVAL_MS", "200")
            .env("RECONCILE_INTERVAL_MS", "500")
            .env("DATABASE_URL", &self.fixture.database_url)
            .env("JWT_HS256_SECRET", crate::HS256_SECRET)
            .env("SHUTDOWN_DELAY_MS", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }
}
