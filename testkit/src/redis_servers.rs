//! Redis servers set up as managed services are: a TLS-only server with certificates from a
//! throwaway [`Authority`], and a three-master Redis Cluster (plaintext or TLS). Each runs on
//! free ports and a temporary directory of its own; dropping it kills the servers and removes
//! their files. [`TlsRedis::endpoint`] and [`RedisCluster::endpoint`] give the gate's settings
//! (`REDIS_URL`, `REDIS_CA_FILE`, `REDIS_CLUSTER`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::certs::{Authority, Issued};
use crate::{Proc, free_port, wait_port};

/// A Redis that speaks TLS only (`--port 0 --tls-port`), with a certificate for `localhost`
/// and 127.0.0.1 signed by [`TlsRedis::authority`]. Clients need no certificate. It also
/// listens on 127.0.0.2, an address its certificate does not name.
pub struct TlsRedis {
    pub port: u16,
    _proc: Proc,
    /// The CA that signed the server's certificate (and whose directory holds its files).
    pub authority: Authority,
}

impl TlsRedis {
    pub async fn start() -> TlsRedis {
        let authority = Authority::new("coupon-redis-ca");
        let server = authority.issue("redis");
        let port = free_port();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "127.0.0.2",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--dir")
            .arg(authority.dir());
        tls_args(&mut command, &server, &authority.ca());
        let proc = Proc::spawn(&mut command);
        wait_port(port, "the TLS redis").await;
        TlsRedis {
            port,
            _proc: proc,
            authority,
        }
    }

    /// `rediss://` on `host` (the certificate names `localhost` and 127.0.0.1).
    pub fn url_on(&self, host: &str) -> String {
        format!("rediss://{host}:{}/0", self.port)
    }

    /// The gate's settings: `rediss://localhost:<port>/0`, trusting this server's CA.
    pub fn endpoint(&self) -> gate::Endpoint {
        gate::Endpoint {
            url: self.url_on("localhost"),
            ca_file: Some(self.authority.ca()),
            cluster: false,
        }
    }
}

/// A Redis Cluster of three masters and no replicas, its 16384 slots split evenly by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The masters' client ports (TLS ports when the cluster speaks TLS).
    pub ports: Vec<u16>,
    procs: Vec<Proc>,
    dir: PathBuf,
    /// The CA of a TLS cluster: it signed the certificate every node serves and presents to
    /// the others on the cluster bus.
    pub authority: Option<Authority>,
}

impl RedisCluster {
    /// A plaintext cluster.
    pub async fn start() -> RedisCluster {
        RedisCluster::launch(None).await
    }

    /// A cluster that speaks TLS only, to clients and on its bus.
    pub async fn start_tls() -> RedisCluster {
        RedisCluster::launch(Some(Authority::new("coupon-redis-cluster-ca"))).await
    }

    async fn launch(authority: Option<Authority>) -> RedisCluster {
        let dir =
            std::env::temp_dir().join(format!("coupon-redis-cluster-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = authority.as_ref().map(|a| a.issue("redis"));
        let mut cluster = RedisCluster {
            ports: Vec::new(),
            procs: Vec::new(),
            dir,
            authority,
        };
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new("redis-server");
            command
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .args(["--cluster-port", &free_port().to_string()])
                .arg("--cluster-config-file")
                .arg(cluster.dir.join(format!("nodes-{port}.conf")))
                .arg("--dir")
                .arg(&cluster.dir);
            match (&server, &cluster.authority) {
                (Some(server), Some(authority)) => {
                    command.args(["--port", "0", "--tls-port", &port.to_string()]);
                    command.args(["--tls-cluster", "yes"]);
                    tls_args(&mut command, server, &authority.ca());
                }
                _ => {
                    command.args(["--port", &port.to_string()]);
                }
            }
            cluster.procs.push(Proc::spawn(&mut command));
            cluster.ports.push(port);
        }
        for port in &cluster.ports {
            wait_port(*port, "a cluster node").await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = cluster
            .cli_command()
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        for port in cluster.ports.clone() {
            crate::eventually(Duration::from_secs(30), "cluster_state:ok", || async {
                cluster
                    .cli(port, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
                    .then_some(())
            })
            .await;
        }
        cluster
    }

    /// The seed nodes, comma-separated (the client discovers the slots from any of them).
    pub fn url(&self) -> String {
        let scheme = if self.authority.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.ports
            .iter()
            .map(|port| format!("{scheme}://127.0.0.1:{port}/0"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The gate's settings: every master as a seed, `REDIS_CLUSTER=true`, and the cluster's CA.
    pub fn endpoint(&self) -> gate::Endpoint {
        gate::Endpoint {
            url: self.url(),
            ca_file: self.authority.as_ref().map(Authority::ca),
            cluster: true,
        }
    }

    /// Runs `redis-cli` against the node on `port` alone (no redirections) and returns what it
    /// printed.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        crate::stdout_of(
            self.cli_command()
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(args),
        )
    }

    fn cli_command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        if let Some(authority) = &self.authority {
            command.arg("--tls").arg("--cacert").arg(authority.ca());
        }
        command
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.procs.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server side of TLS: its certificate and key, the CA it verifies peers with (only the
/// cluster bus asks for a peer's certificate: clients connect without one).
fn tls_args(command: &mut Command, server: &Issued, ca: &Path) {
    command
        .arg("--tls-cert-file")
        .arg(&server.cert)
        .arg("--tls-key-file")
        .arg(&server.key)
        .arg("--tls-ca-cert-file")
        .arg(ca)
        .args(["--tls-auth-clients", "no"]);
}
