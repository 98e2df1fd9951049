//! Building Kafka clients: one place for the broker list, the settings that carry our delivery
//! guarantees, and the operator's pass-through of librdkafka properties (`KAFKA_PROPERTY_<name>`,
//! e.g. `KAFKA_PROPERTY_security.protocol=SASL_SSL`), which managed clusters need for TLS and
//! SASL.
//!
//! The operator's properties are applied last, so they can tune anything (`linger.ms`,
//! `ssl.ca.location`, …) except the settings a guarantee rests on ([`GUARDED`]); naming one of
//! those is a configuration error.

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::KafkaResult;

/// Prefix of the environment variables passed through to librdkafka.
pub const PROPERTY_PREFIX: &str = "KAFKA_PROPERTY_";

/// Properties set by the binaries themselves because a guarantee depends on them: the broker
/// list has its own setting, the group is the consumer's, idempotence and `acks=all` make a 202
/// durable, and offsets are stored only after the ledger committed.
pub const GUARDED: [&str; 8] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.idempotence",
    "acks",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "transactional.id",
];

/// The Kafka connection every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated. Further librdkafka properties (TLS, SASL) come
    /// from `KAFKA_PROPERTY_<name>` environment variables.
    #[arg(
        id = "kafka_brokers",
        value_name = "KAFKA_BROKERS",
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// The operator's librdkafka properties, read from the environment.
    #[arg(skip = Properties::from_env())]
    pub properties: Properties,
}

impl KafkaArgs {
    /// Connection settings for `brokers` with no operator properties (tests, tools).
    pub fn plain(brokers: &str) -> KafkaArgs {
        KafkaArgs {
            brokers: brokers.to_owned(),
            properties: Properties::default(),
        }
    }

    /// Problems with the pass-through, each naming its variable.
    pub fn problems(&self, problems: &mut Vec<String>) {
        if self.brokers.trim().is_empty() {
            problems.push("KAFKA_BROKERS must not be empty".to_owned());
        }
        problems.extend(self.properties.problems.iter().cloned());
    }

    /// A client named `client_id` on the brokers.
    pub fn client(&self, client_id: &str) -> ClientBuilder<'_> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        // At least librdkafka's informational lines, whatever the process logs: a broker that
        // hangs up (plaintext to a TLS listener) is reported at that level only, and the
        // reporting contexts keep it as the cause of a failure.
        if (config.log_level as i32) < (RDKafkaLogLevel::Info as i32) {
            config.set_log_level(RDKafkaLogLevel::Info);
        }
        ClientBuilder {
            config,
            operator: &self.properties,
        }
    }

    /// An idempotent producer that counts a record written only once every in-sync replica has
    /// it (`acks=all`); small requests never wait for Nagle's algorithm.
    pub fn producer(&self, client_id: &str) -> ClientBuilder<'_> {
        self.client(client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("socket.nagle.disable", "true")
    }

    /// A consumer that reads offsets and watermarks of `group` but never joins it and never
    /// commits: lag readers and topic readers.
    pub fn reader(&self, client_id: &str, group: &str) -> ClientBuilder<'_> {
        self.client(client_id)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
    }
}

/// A client's settings on their way to `create`, where the operator's properties are applied.
pub struct ClientBuilder<'a> {
    config: ClientConfig,
    operator: &'a Properties,
}

impl ClientBuilder<'_> {
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// The final settings: ours, then the operator's.
    pub fn config(mut self) -> ClientConfig {
        for (key, value) in &self.operator.values {
            self.config.set(key, value);
        }
        self.config
    }

    pub fn create<T: FromClientConfig>(self) -> KafkaResult<T> {
        self.config().create()
    }

    pub fn create_with_context<C: ClientContext, T: FromClientConfigAndContext<C>>(
        self,
        context: C,
    ) -> KafkaResult<T> {
        self.config().create_with_context(context)
    }
}

/// librdkafka properties from `KAFKA_PROPERTY_<name>` variables, and what is wrong with them.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    values: Vec<(String, String)>,
    problems: Vec<String>,
}

impl Properties {
    pub fn from_env() -> Properties {
        Properties::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))
    }

    /// From `(variable, value)` pairs; the property is the variable's name after the prefix,
    /// exactly as librdkafka spells it (`KAFKA_PROPERTY_ssl.ca.location`). Shells cannot export
    /// names with dots, so an upper-case name is read with `_` as `.`
    /// (`KAFKA_PROPERTY_SECURITY_PROTOCOL` is `security.protocol`).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Properties {
        let mut properties = Properties::default();
        for (variable, value) in vars {
            let Some(name) = variable.strip_prefix(PROPERTY_PREFIX) else {
                continue;
            };
            let property = if name.chars().any(|c| c.is_ascii_lowercase()) {
                name.to_owned()
            } else {
                name.to_ascii_lowercase().replace('_', ".")
            };
            if property.is_empty() {
                properties
                    .problems
                    .push(format!("{variable} names no property"));
            } else if GUARDED.contains(&property.as_str()) {
                properties.problems.push(format!(
                    "{variable}: {property} is set by the service itself and cannot be changed"
                ));
            } else {
                properties.values.push((property, value));
            }
        }
        properties.values.sort();
        properties
    }

    /// What is wrong with the variables, each naming its variable (never its value).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The property names (never their values, which may be secrets), for logs.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.iter().map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Properties {
        Properties::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn properties_pass_through_by_their_librdkafka_names() {
        let p = vars(&[
            ("KAFKA_PROPERTY_security.protocol", "SASL_SSL"),
            ("KAFKA_PROPERTY_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_BROKERS", "b:9092"),
        ]);
        assert!(p.problems.is_empty());
        assert_eq!(
            p.names().collect::<Vec<_>>(),
            ["sasl.mechanism", "security.protocol"]
        );
        let args = KafkaArgs {
            brokers: "b:9092".to_owned(),
            properties: p,
        };
        let config = args.producer("p").set("linger.ms", "5").config();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn the_operator_tunes_but_cannot_weaken_a_guarantee() {
        let p = vars(&[
            ("KAFKA_PROPERTY_linger.ms", "20"),
            ("KAFKA_PROPERTY_acks", "1"),
            ("KAFKA_PROPERTY_ENABLE_AUTO_OFFSET_STORE", "true"),
        ]);
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(p.problems[0].starts_with("KAFKA_PROPERTY_acks"));
        let args = KafkaArgs {
            brokers: "b".to_owned(),
            properties: p,
        };
        let config = args.producer("p").set("linger.ms", "2").config();
        assert_eq!(config.get("linger.ms"), Some("20"));
        assert_eq!(config.get("acks"), Some("all"));
    }
}
