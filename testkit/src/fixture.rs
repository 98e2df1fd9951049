//! The resources of one test on the real services: its own PostgreSQL database, Kafka topics
//! and Redis key prefix, named after a fresh random id, removed when dropped.
//!
//! Service addresses come from the environment with the local defaults of `dev/`:
//! `DATABASE_ADMIN_URL`, `REDIS_URL`, `KAFKA_BROKERS`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

pub fn database_admin_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// The resources of one test. Dropping it deletes them all.
pub struct Fixture {
    /// Short random id shared by every resource name of this test.
    pub id: String,
    pub database_url: String,
    pub database: String,
    pub redis_prefix: String,
    pub topic: String,
    pub dead_letter_topic: String,
    /// The relay's `coupon.issued` topic.
    pub issued_topic: String,
    /// The relay's campaign events topic.
    pub events_topic: String,
    pub group: String,
    /// The Kafka bootstrap servers the topics live on.
    pub brokers: String,
    /// The connection to them as the binaries make it (`brokers` and, for a secure broker, its
    /// TLS and SASL properties).
    pub kafka: service::KafkaArgs,
}

impl Fixture {
    /// Creates a migrated database and the topics (`partitions` for the main topic) on the
    /// shared broker.
    pub async fn new(partitions: i32) -> Fixture {
        Fixture::on_brokers(partitions, &kafka_brokers()).await
    }

    /// As [`Fixture::new`], with the topics on the given brokers (a test's private broker).
    pub async fn on_brokers(partitions: i32, brokers: &str) -> Fixture {
        Fixture::on_kafka(partitions, service::KafkaArgs::plain(brokers)).await
    }

    /// As [`Fixture::on_brokers`], connecting with `kafka`'s properties (a secure broker's).
    pub async fn on_kafka(partitions: i32, kafka: service::KafkaArgs) -> Fixture {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let database = format!("coupon_test_{id}");
        let admin = connect(&database_admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let mut config: tokio_postgres::Config = database_admin_url().parse().unwrap();
        config.dbname(&database);
        let (mut client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        schema::migrate::run(&mut client).await.unwrap();
        // The shared local server is plaintext: said explicitly, as production verifies TLS.
        let database_url = format!(
            "postgres://{}@{}:{}/{}?sslmode=disable",
            config.get_user().unwrap_or("postgres"),
            host_of(&config),
            config.get_ports().first().copied().unwrap_or(5432),
            database
        );
        let fixture = Fixture {
            topic: format!("test.{id}.requested"),
            dead_letter_topic: format!("test.{id}.dlq"),
            issued_topic: format!("test.{id}.issued"),
            events_topic: format!("test.{id}.events"),
            group: format!("test-{id}"),
            redis_prefix: format!("test:{id}:"),
            database_url,
            database,
            id,
            brokers: kafka.brokers.clone(),
            kafka,
        };
        fixture.create_topics(partitions).await;
        fixture
    }

    /// Creates this test's topics on its brokers (again, after a memory-only broker restarted):
    /// `partitions` for the requested and issued topics, one for the others.
    pub async fn create_topics(&self, partitions: i32) {
        create_topics_on(
            &self.kafka,
            &[
                (&self.topic, partitions),
                (&self.dead_letter_topic, 1),
                (&self.issued_topic, partitions),
                (&self.events_topic, 1),
            ],
        )
        .await;
    }

    /// A consumer's command line on this fixture's broker, topics, group and database (the
    /// program name first); a test appends its own settings.
    pub fn consumer_args(&self) -> Vec<String> {
        vec![
            "coupon-consumer".to_owned(),
            format!("--kafka-brokers={}", crate::kafka_brokers()),
            format!("--group-id={}", self.group),
            format!("--topic-requested={}", self.topic),
            format!("--topic-dead-letter={}", self.dead_letter_topic),
            format!("--topic-issued={}", self.issued_topic),
            format!("--topic-campaign-events={}", self.events_topic),
            format!("--database-url={}", self.database_url),
        ]
    }

    /// A client of this test's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        connect(&self.database_url).await
    }

    /// The `coupon-signature` header value the ingress would give a record with this key and
    /// payload: signed with the test database's active event key.
    pub async fn sign_event(&self, key: &[u8], payload: &[u8]) -> String {
        let keys = service::event_keys::read(&self.db().await).await.unwrap();
        keys.sign(key, payload).expect("an active event key")
    }

    /// A connection to Redis (keys of this test start with `redis_prefix`).
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Every key of this test with its contents, sorted: equal snapshots mean Redis unchanged.
    pub async fn redis_snapshot(&self) -> Vec<(String, Vec<(String, String)>)> {
        let mut conn = self.redis().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.redis_prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.sort();
        let mut snapshot = Vec::new();
        for key in keys {
            let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            fields.sort();
            snapshot.push((key, fields));
        }
        snapshot
    }

    /// Every record of a topic so far, from the start of each partition: key, payload and
    /// headers (name, value).
    pub async fn read_topic(&self, topic: &str) -> Vec<Record> {
        let (topic, kafka) = (topic.to_owned(), self.kafka.clone());
        tokio::task::spawn_blocking(move || {
            service::kafka::read_topic(&kafka, &topic, "testkit-reader").unwrap()
        })
        .await
        .unwrap()
    }

    /// Records in a topic so far (sum of the partitions' high watermarks).
    pub async fn topic_len(&self, topic: &str) -> i64 {
        let topic = topic.to_owned();
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = kafka.client("testkit-topic-len").create().unwrap();
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .unwrap();
            let partitions = metadata.topics()[0].partitions().len() as i32;
            (0..partitions)
                .map(|p| {
                    let (low, high) = consumer
                        .fetch_watermarks(&topic, p, Duration::from_secs(5))
                        .unwrap();
                    high - low.min(high)
                })
                .sum()
        })
        .await
        .unwrap()
    }
}

/// One record read back from a topic.
pub use service::kafka::Record;

impl Drop for Fixture {
    fn drop(&mut self) {
        let database = self.database.clone();
        let prefix = self.redis_prefix.clone();
        let topics = [
            self.topic.clone(),
            self.dead_letter_topic.clone(),
            self.issued_topic.clone(),
            self.events_topic.clone(),
        ];
        let kafka = self.kafka.clone();
        // Drop runs inside the test's runtime, which cannot block: clean up on a thread of our own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let admin = connect(&database_admin_url()).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                    .await;
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async(&mut conn)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> =
                            redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
                    }
                }
                delete_topics(&kafka, &topics).await;
            });
        });
        let _ = cleanup.join();
    }
}

fn host_of(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    }
}

/// A connection as the binaries make it: the URL's `sslmode` and `sslrootcert` are honoured
/// (a [`crate::pg_tls`] server's), plaintext when it names none (the development default).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    service::PostgresArgs {
        url: url.to_owned(),
        pool_wait_ms: 5_000,
        sslmode: None,
        sslrootcert: None,
        profile: service::Profile::Development,
    }
    .connect()
    .await
    .unwrap()
}

fn admin_client(kafka: &service::KafkaArgs) -> AdminClient<DefaultClientContext> {
    kafka.client("testkit-admin").create().unwrap()
}

pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) {
    create_topics_on(&service::KafkaArgs::plain(brokers), topics).await;
}

/// Creates `topics` (name, partitions; one replica) through `kafka`.
pub async fn create_topics_on(kafka: &service::KafkaArgs, topics: &[(&str, i32)]) {
    let brokers = &kafka.brokers;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let results = admin_client(kafka)
        .create_topics(&new, &options)
        .await
        .unwrap_or_else(|e| panic!("no Kafka broker at {brokers}? creating topics: {e}"));
    for result in results {
        match result {
            // A client's metadata request may have had the broker create it first.
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating topic {topic}: {code}"),
        }
    }
}

async fn delete_topics(kafka: &service::KafkaArgs, topics: &[String]) {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    // Best effort: a broker without topic deletion keeps them, named apart from everything else.
    let _ = admin_client(kafka).delete_topics(&names, &options).await;
}
