//! The gate on a three-master Redis Cluster (plaintext, then TLS): the rules suite as on one
//! server; every key of a campaign in one slot on one master, and the campaigns spread over
//! the masters; a flushed script reloaded on the node owning the slot.

use std::collections::{BTreeMap, HashMap, HashSet};

use gate::Gate;
use schema::ids::{CampaignId, UserId};
use testkit::redis_servers::RedisCluster;

use super::{connect, script_matches_the_rules};

const PREFIX: &str = "coupon-test:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_script_matches_the_reservation_rules_on_a_cluster() {
    let cluster = RedisCluster::start().await;
    on_the_cluster(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_script_matches_the_reservation_rules_on_a_tls_cluster() {
    let cluster = RedisCluster::start_tls().await;
    on_the_cluster(&cluster).await;
}

async fn on_the_cluster(cluster: &RedisCluster) {
    let gate = connect(&cluster.endpoint(), PREFIX).await.unwrap();
    gate.ping().await.unwrap();
    let campaigns = script_matches_the_rules(&gate).await;
    let owners = campaigns_stay_on_one_master(cluster, &campaigns);
    scripts_reload_on_the_slot_owner(cluster, &gate, &owners).await;
}

/// Reads each master's keys directly (no redirection): a campaign's keys all live on one
/// master and hash to one slot (`CLUSTER KEYSLOT`); the campaigns use more than one master.
/// Returns each campaign's master.
fn campaigns_stay_on_one_master(
    cluster: &RedisCluster,
    campaigns: &[CampaignId],
) -> HashMap<CampaignId, u16> {
    let mut node_of: HashMap<String, u16> = HashMap::new();
    for &port in &cluster.ports {
        let keys = cluster.cli(port, &["KEYS", &format!("{PREFIX}*")]);
        for key in keys.lines().filter(|line| !line.is_empty()) {
            assert!(
                node_of.insert(key.to_owned(), port).is_none(),
                "{key} on two masters"
            );
        }
    }
    let mut owners = HashMap::new();
    let mut most_keys = 0;
    for campaign in campaigns {
        let tag = format!("{{c:{campaign}}}");
        let keys: Vec<(&String, u16)> = node_of
            .iter()
            .filter(|(key, _)| key.contains(&tag))
            .map(|(key, port)| (key, *port))
            .collect();
        assert!(!keys.is_empty(), "campaign {campaign} has no keys");
        most_keys = most_keys.max(keys.len());
        let nodes: HashSet<u16> = keys.iter().map(|(_, port)| *port).collect();
        assert_eq!(
            nodes.len(),
            1,
            "campaign {campaign} spans masters: {keys:?}"
        );
        let slots: HashSet<String> = keys
            .iter()
            .map(|(key, _)| {
                let slot = cluster.cli(cluster.ports[0], &["CLUSTER", "KEYSLOT", key]);
                slot.trim().to_owned()
            })
            .collect();
        assert_eq!(slots.len(), 1, "campaign {campaign} spans slots: {slots:?}");
        owners.insert(*campaign, keys[0].1);
    }
    assert!(most_keys >= 4, "some campaign has several keys");
    let mut spread: BTreeMap<u16, usize> = BTreeMap::new();
    for port in owners.values() {
        *spread.entry(*port).or_default() += 1;
    }
    println!("campaigns per master (port: campaigns): {spread:?}");
    assert!(spread.len() >= 2, "all campaigns on one master: {spread:?}");
    owners
}

/// Flushes the scripts on every node: the next reservation hits `NOSCRIPT` and is refused
/// (never reloaded blindly); the loss check finds no campaign lost (same identities), loads the
/// scripts on every master, and the reservation succeeds.
async fn scripts_reload_on_the_slot_owner(
    cluster: &RedisCluster,
    gate: &Gate,
    owners: &HashMap<CampaignId, u16>,
) {
    let sha = redis::Script::new(include_str!("../../src/lua/reserve.lua"))
        .get_hash()
        .to_owned();
    for &port in &cluster.ports {
        cluster.cli(port, &["SCRIPT", "FLUSH"]);
    }
    let (campaign, _owner) = owners.iter().next().unwrap();
    let user = UserId::parse("after-flush").unwrap();
    let refused = gate.reserve(campaign, &user, &uuid::Uuid::now_v7()).await;
    assert!(
        matches!(refused, Err(gate::GateError::ScriptsMissing)),
        "{refused:?}"
    );
    let live: Vec<gate::ledger::Settings> = owners
        .keys()
        .map(|id| gate::ledger::Settings {
            id: *id,
            total_stock: 0,
            per_user_limit: 1,
            starts_ms: 0,
            ends_ms: i64::MAX,
            closed: false,
            version: 0,
        })
        .collect();
    let fenced = gate.secure(&live, 0).await.unwrap();
    assert!(
        fenced.is_empty(),
        "a flush alone fences nothing: {fenced:?}"
    );
    gate.reserve(campaign, &user, &uuid::Uuid::now_v7())
        .await
        .unwrap();
    for &port in &cluster.ports {
        let loaded = cluster.cli(port, &["SCRIPT", "EXISTS", &sha]).trim() == "1";
        assert!(loaded, "reserve.lua loaded on master {port}");
    }
}
