//! Deciding, for one batch, which issuances become coupons and which the ledger refuses.
//! Pure: the store reads the facts under the campaigns' row locks, this decides, the store writes.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::decode::Issuance;

/// Why the ledger refused an issuance (the `reason` of `issuance_rejections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The campaign's stock is used up: the gate over-admitted (Redis lost writes).
    StockExhausted,
    /// Another coupon holds the same (campaign, user, seq): the gate lost a holder record.
    PerUserLimit,
    UnknownCampaign,
}

impl Rejection {
    pub const ALL: [Rejection; 3] = [
        Rejection::StockExhausted,
        Rejection::PerUserLimit,
        Rejection::UnknownCampaign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::StockExhausted => "stock-exhausted",
            Rejection::PerUserLimit => "per-user-limit",
            Rejection::UnknownCampaign => "unknown-campaign",
        }
    }
}

/// What the ledger already holds for the batch, read under lock.
#[derive(Debug, Default)]
pub struct Facts {
    /// Coupons each campaign can still take (absent: unknown campaign).
    pub capacity: HashMap<Uuid, i64>,
    /// Issuances already persisted or rejected.
    pub settled: HashSet<Uuid>,
    /// (campaign, user, seq) slots already held by a coupon.
    pub taken: HashSet<(Uuid, String, i32)>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    pub insert: Vec<&'a Issuance>,
    pub reject: Vec<(&'a Issuance, Rejection)>,
    /// Redeliveries of settled issuances (and repeats within the batch): nothing to do.
    pub redelivered: usize,
}

/// Earliest admission first, so when stock is short the first to be admitted wins.
pub fn plan<'a>(batch: &'a [Issuance], facts: &Facts) -> Plan<'a> {
    let mut ordered: Vec<&Issuance> = batch.iter().collect();
    ordered.sort_by_key(|i| (i.requested_at, i.id));
    let mut capacity = facts.capacity.clone();
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut taken: HashSet<(Uuid, &str, i32)> = facts
        .taken
        .iter()
        .map(|(c, u, s)| (*c, u.as_str(), *s))
        .collect();
    let mut plan = Plan::default();
    for issuance in ordered {
        if facts.settled.contains(&issuance.id) || !seen.insert(issuance.id) {
            plan.redelivered += 1;
            continue;
        }
        let Some(left) = capacity.get_mut(&issuance.campaign) else {
            plan.reject.push((issuance, Rejection::UnknownCampaign));
            continue;
        };
        if taken.contains(&(issuance.campaign, issuance.user.as_str(), issuance.seq)) {
            plan.reject.push((issuance, Rejection::PerUserLimit));
        } else if *left <= 0 {
            plan.reject.push((issuance, Rejection::StockExhausted));
        } else {
            *left -= 1;
            taken.insert((issuance.campaign, issuance.user.as_str(), issuance.seq));
            plan.insert.push(issuance);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::OffsetDateTime;

    fn issuance(campaign: Uuid, user: u8, seq: i32, at: i64) -> Issuance {
        Issuance {
            id: Uuid::now_v7(),
            campaign,
            user: format!("u{user}"),
            seq,
            requested_at: OffsetDateTime::from_unix_timestamp(at).expect("time"),
            traceparent: None,
        }
    }

    #[test]
    fn earliest_wins_when_stock_is_short() {
        let c = Uuid::new_v4();
        let late = issuance(c, 1, 1, 200);
        let early = issuance(c, 2, 1, 100);
        let batch = vec![late.clone(), early.clone()];
        let facts = Facts {
            capacity: HashMap::from([(c, 1)]),
            ..Facts::default()
        };
        let plan = plan(&batch, &facts);
        assert_eq!(plan.insert, vec![&batch[1]]);
        assert_eq!(plan.reject, vec![(&batch[0], Rejection::StockExhausted)]);
    }

    #[test]
    fn settled_and_repeated_ids_are_redeliveries_and_unknown_campaigns_are_refused() {
        let c = Uuid::new_v4();
        let a = issuance(c, 1, 1, 1);
        let b = issuance(Uuid::new_v4(), 2, 1, 2);
        let batch = vec![a.clone(), a.clone(), b];
        let facts = Facts {
            capacity: HashMap::from([(c, 5)]),
            settled: HashSet::from([a.id]),
            ..Facts::default()
        };
        let plan = plan(&batch, &facts);
        assert!(plan.insert.is_empty());
        assert_eq!(plan.redelivered, 2);
        assert_eq!(plan.reject, vec![(&batch[2], Rejection::UnknownCampaign)]);
    }

    proptest! {
        /// Never more inserts than capacity, never two inserts for one slot, never an insert of
        /// a settled id, and every issuance is accounted for exactly once.
        #[test]
        fn plan_respects_stock_slots_and_settlement(
            capacity in 0i64..20,
            specs in proptest::collection::vec((0u8..10, 1i32..3, 0i64..50, any::<bool>()), 0..60),
            taken_users in proptest::collection::hash_set(0u8..10, 0..5),
        ) {
            let c = Uuid::new_v4();
            let batch: Vec<Issuance> = specs.iter().map(|(u, s, at, _)| issuance(c, *u, *s, *at)).collect();
            let settled: HashSet<Uuid> = batch.iter().zip(&specs).filter(|(_, s)| s.3).map(|(i, _)| i.id).collect();
            let facts = Facts {
                capacity: HashMap::from([(c, capacity)]),
                settled: settled.clone(),
                taken: taken_users.iter().map(|u| (c, format!("u{u}"), 1)).collect(),
            };
            let plan = plan(&batch, &facts);
            prop_assert!(plan.insert.len() as i64 <= capacity);
            prop_assert_eq!(plan.insert.len() + plan.reject.len() + plan.redelivered, batch.len());
            let mut slots = HashSet::new();
            for i in &plan.insert {
                prop_assert!(!settled.contains(&i.id));
                prop_assert!(slots.insert((i.user.clone(), i.seq)));
                prop_assert!(!facts.taken.contains(&(c, i.user.clone(), i.seq)));
            }
        }
    }
}
