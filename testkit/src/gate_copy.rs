//! The gate's copy of a campaign's operator settings next to the ledger's, for the tests that
//! check the two agree (SPEC I7): both spelled as the gate's `meta` hash spells them.

use std::collections::HashMap;

use gate::ledger::Settings;

/// The settings fields of the gate's `meta` hash, in the order [`as_meta`] gives them.
pub const FIELDS: [&str; 6] = [
    "total",
    "limit",
    "starts_ms",
    "ends_ms",
    "closed",
    "version",
];

/// The ledger's settings as the gate's `meta` holds them.
pub fn as_meta(settings: &Settings) -> Vec<String> {
    vec![
        settings.total_stock.to_string(),
        settings.per_user_limit.to_string(),
        settings.starts_ms.to_string(),
        settings.ends_ms.to_string(),
        u8::from(settings.closed).to_string(),
        settings.version.to_string(),
    ]
}

/// The ledger's settings of `campaign`.
pub async fn ledger(db: &tokio_postgres::Client, campaign: &str) -> Settings {
    gate::ledger::settings(db, &campaign.parse().unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// The gate's `meta` hash of `campaign`, on the Redis at `url` under `prefix`.
pub async fn meta(url: &str, prefix: &str, campaign: &str) -> HashMap<String, String> {
    let client = redis::Client::open(url).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("HGETALL")
        .arg(format!("{prefix}{{c:{campaign}}}:meta"))
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// The settings fields of a `meta` hash, in [`FIELDS`] order.
pub fn settings(meta: &HashMap<String, String>) -> Vec<String> {
    FIELDS
        .iter()
        .map(|field| meta.get(*field).cloned().unwrap_or_default())
        .collect()
}
