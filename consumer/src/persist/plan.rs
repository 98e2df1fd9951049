//! Deciding, for one batch, which issuances become coupons and which the ledger refuses.
//! Pure: the store reads the facts under the campaigns' row locks, this decides, the store writes.
//!
//! The ledger enforces every rule of a campaign itself, whatever the gate admitted or an event
//! says: the window, the close, the per-user limit and the stock, judged on the milliseconds the
//! gate judges them on (`requested_at` is the gate's Redis clock at admission).

use std::collections::{HashMap, HashSet};

use schema::time::unix_ms;
use uuid::Uuid;

use super::decode::Issuance;

/// Why the ledger refused an issuance (the `reason` of `issuance_rejections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The event names a campaign the ledger does not hold.
    UnknownCampaign,
    /// Requested before the campaign's start or at or after its end.
    OutsideWindow,
    /// Requested at or after the operator closed the campaign.
    CampaignClosed,
    /// The user already holds the campaign's per-user limit, the slot (`seq`) is taken, or `seq`
    /// lies outside `1..=per_user_limit`: the gate lost a holder record or ran on a stale limit.
    PerUserLimit,
    /// The campaign's stock is used up: the gate over-admitted (Redis lost writes).
    StockExhausted,
}

impl Rejection {
    pub const ALL: [Rejection; 5] = [
        Rejection::UnknownCampaign,
        Rejection::OutsideWindow,
        Rejection::CampaignClosed,
        Rejection::PerUserLimit,
        Rejection::StockExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::UnknownCampaign => "unknown-campaign",
            Rejection::OutsideWindow => "outside-window",
            Rejection::CampaignClosed => "campaign-closed",
            Rejection::PerUserLimit => "per-user-limit",
            Rejection::StockExhausted => "stock-exhausted",
        }
    }
}

/// One campaign's rules and what it can still take, read from its locked row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// Coupons it can still take (`total_stock - issued_count`).
    pub capacity: i64,
    pub per_user_limit: i32,
    /// The window `[starts_ms, ends_ms)`, in Unix milliseconds as the gate holds it.
    pub starts_ms: i64,
    pub ends_ms: i64,
    /// The operator's close instant, if closed.
    pub closed_ms: Option<i64>,
}

/// What the ledger already holds for the batch, read under lock.
#[derive(Debug, Default)]
pub struct Facts {
    /// The batch's campaigns (absent: unknown campaign).
    pub campaigns: HashMap<Uuid, Campaign>,
    /// Issuances already persisted or rejected.
    pub settled: HashSet<Uuid>,
    /// The seqs at which each (campaign, user) of the batch already holds a coupon: their count
    /// is the user's holding, each one a taken slot.
    pub held: HashMap<(Uuid, String), HashSet<i32>>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    pub insert: Vec<&'a Issuance>,
    pub reject: Vec<(&'a Issuance, Rejection)>,
    /// Redeliveries of settled issuances (and repeats within the batch): nothing to do.
    pub redelivered: usize,
}

/// Earliest admission first, so when stock or a user's limit is short the first to be admitted
/// wins.
pub fn plan<'a>(batch: &'a [Issuance], facts: &Facts) -> Plan<'a> {
    let mut ordered: Vec<&Issuance> = batch.iter().collect();
    ordered.sort_by_key(|i| (i.requested_at, i.id));
    let mut capacity: HashMap<Uuid, i64> = facts
        .campaigns
        .iter()
        .map(|(id, c)| (*id, c.capacity))
        .collect();
    let mut seen: HashSet<Uuid> = HashSet::new();
    // The seqs each (campaign, user) holds: the ledger's, then the ones this plan inserts.
    let mut holds: HashMap<(Uuid, &str), HashSet<i32>> = facts
        .held
        .iter()
        .map(|((c, u), seqs)| ((*c, u.as_str()), seqs.clone()))
        .collect();
    let mut plan = Plan::default();
    for issuance in ordered {
        if facts.settled.contains(&issuance.id) || !seen.insert(issuance.id) {
            plan.redelivered += 1;
            continue;
        }
        let (Some(campaign), Some(left)) = (
            facts.campaigns.get(&issuance.campaign),
            capacity.get_mut(&issuance.campaign),
        ) else {
            plan.reject.push((issuance, Rejection::UnknownCampaign));
            continue;
        };
        let held = holds
            .entry((issuance.campaign, issuance.user.as_str()))
            .or_default();
        match refusal(issuance, campaign, held, *left) {
            Some(rejection) => plan.reject.push((issuance, rejection)),
            None => {
                *left -= 1;
                held.insert(issuance.seq);
                plan.insert.push(issuance);
            }
        }
    }
    plan
}

/// Why the ledger refuses `issuance` in `campaign`, given the seqs its user holds and the stock
/// left; `None` when it becomes a coupon. The rules in the order they are reported.
fn refusal(
    issuance: &Issuance,
    campaign: &Campaign,
    held: &HashSet<i32>,
    left: i64,
) -> Option<Rejection> {
    let at = unix_ms(issuance.requested_at);
    let seq = issuance.seq;
    let limit = usize::try_from(campaign.per_user_limit).unwrap_or(0);
    if at < campaign.starts_ms || at >= campaign.ends_ms {
        Some(Rejection::OutsideWindow)
    } else if campaign.closed_ms.is_some_and(|closed| at >= closed) {
        Some(Rejection::CampaignClosed)
    } else if seq < 1 || seq > campaign.per_user_limit || held.contains(&seq) || held.len() >= limit
    {
        Some(Rejection::PerUserLimit)
    } else if left <= 0 {
        Some(Rejection::StockExhausted)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use schema::time::from_unix_ms;

    fn issuance(campaign: Uuid, user: u8, seq: i32, at_ms: i64) -> Issuance {
        Issuance {
            id: Uuid::now_v7(),
            campaign,
            user: format!("u{user}"),
            seq,
            requested_at: from_unix_ms(at_ms).expect("time"),
            traceparent: None,
        }
    }

    /// Open over `[0, 1_000_000)`, limit 1, never closed.
    fn open(capacity: i64) -> Campaign {
        Campaign {
            capacity,
            per_user_limit: 1,
            starts_ms: 0,
            ends_ms: 1_000_000,
            closed_ms: None,
        }
    }

    fn facts(c: Uuid, campaign: Campaign) -> Facts {
        Facts {
            campaigns: HashMap::from([(c, campaign)]),
            ..Facts::default()
        }
    }

    fn reasons(plan: &Plan<'_>) -> Vec<&'static str> {
        plan.reject.iter().map(|(_, r)| r.as_str()).collect()
    }

    #[test]
    fn earliest_wins_when_stock_is_short() {
        let c = Uuid::new_v4();
        let batch = vec![issuance(c, 1, 1, 200), issuance(c, 2, 1, 100)];
        let plan = plan(&batch, &facts(c, open(1)));
        assert_eq!(plan.insert, vec![&batch[1]]);
        assert_eq!(plan.reject, vec![(&batch[0], Rejection::StockExhausted)]);
    }

    #[test]
    fn settled_and_repeated_ids_are_redeliveries_and_unknown_campaigns_are_refused() {
        let c = Uuid::new_v4();
        let a = issuance(c, 1, 1, 1);
        let b = issuance(Uuid::new_v4(), 2, 1, 2);
        let batch = vec![a.clone(), a.clone(), b];
        let mut facts = facts(c, open(5));
        facts.settled = HashSet::from([a.id]);
        let plan = plan(&batch, &facts);
        assert!(plan.insert.is_empty());
        assert_eq!(plan.redelivered, 2);
        assert_eq!(plan.reject, vec![(&batch[2], Rejection::UnknownCampaign)]);
    }

    #[test]
    fn the_window_is_half_open_and_the_close_takes_effect_at_its_instant() {
        let c = Uuid::new_v4();
        let campaign = Campaign {
            starts_ms: 1_000,
            ends_ms: 2_000,
            closed_ms: Some(1_500),
            ..open(10)
        };
        let batch: Vec<Issuance> = [999, 1_000, 1_499, 1_500, 1_999, 2_000]
            .iter()
            .zip(1u8..)
            .map(|(at, user)| issuance(c, user, 1, *at))
            .collect();
        let plan = plan(&batch, &facts(c, campaign));
        assert_eq!(plan.insert, vec![&batch[1], &batch[2]]);
        assert_eq!(
            reasons(&plan),
            [
                "outside-window",
                "campaign-closed",
                "campaign-closed",
                "outside-window"
            ]
        );
    }

    #[test]
    fn the_limit_counts_held_coupons_and_the_batch_and_bounds_seq() {
        let c = Uuid::new_v4();
        let mut facts = facts(
            c,
            Campaign {
                per_user_limit: 3,
                ..open(10)
            },
        );
        // u1 holds seq 1, u2 nothing, u3 three coupons from when the limit was higher.
        facts.held = HashMap::from([
            ((c, "u1".to_owned()), HashSet::from([1])),
            ((c, "u3".to_owned()), HashSet::from([4, 5, 6])),
        ]);
        let batch = vec![
            issuance(c, 1, 1, 10), // taken slot
            issuance(c, 1, 2, 11),
            issuance(c, 1, 3, 12),
            issuance(c, 1, 4, 13), // beyond the limit
            issuance(c, 2, 0, 14), // no such slot
            issuance(c, 2, 1, 15),
            issuance(c, 2, 3, 16),
            issuance(c, 2, 2, 17),
            issuance(c, 2, 2, 18), // a fourth for u2 (and a planned slot)
            issuance(c, 3, 1, 19), // a free slot, but u3 holds the limit already
        ];
        let plan = plan(&batch, &facts);
        assert_eq!(
            plan.insert,
            vec![&batch[1], &batch[2], &batch[5], &batch[6], &batch[7]]
        );
        assert_eq!(reasons(&plan), ["per-user-limit"; 5]);
    }

    #[test]
    fn refusals_are_reported_in_the_order_of_the_rules() {
        let c = Uuid::new_v4();
        let mut facts = facts(
            c,
            Campaign {
                starts_ms: 100,
                closed_ms: Some(200),
                ..open(0)
            },
        );
        facts.held = HashMap::from([((c, "u1".to_owned()), HashSet::from([1]))]);
        // Each breaks every later rule too: no stock, a taken slot.
        let batch = vec![
            issuance(c, 1, 1, 50),
            issuance(c, 1, 1, 250),
            issuance(c, 1, 1, 150),
            issuance(c, 2, 1, 160),
        ];
        let plan = plan(&batch, &facts);
        assert!(plan.insert.is_empty());
        assert_eq!(
            reasons(&plan),
            [
                "outside-window",
                "per-user-limit",
                "stock-exhausted",
                "campaign-closed"
            ]
        );
    }

    /// A campaign, requests against it as (user, seq, requested ms, settled), and coupons its
    /// users hold as (user, seq).
    type Case = (Campaign, Vec<(u8, i32, i64, bool)>, Vec<(u8, i32)>);

    /// A campaign with random rules, and a batch of random requests against it.
    fn case() -> impl Strategy<Value = Case> {
        (
            0i64..20,
            1i32..4,
            0i64..40,
            40i64..80,
            proptest::option::of(0i64..100),
            proptest::collection::vec((0u8..6, 0i32..6, 0i64..100, any::<bool>()), 0..60),
            proptest::collection::vec((0u8..6, 1i32..6), 0..10),
        )
            .prop_map(|(capacity, limit, starts, ends, closed, specs, held)| {
                let campaign = Campaign {
                    capacity,
                    per_user_limit: limit,
                    starts_ms: starts,
                    ends_ms: ends,
                    closed_ms: closed,
                };
                (campaign, specs, held)
            })
    }

    proptest! {
        /// Never more inserts than capacity, never more coupons per user than the limit, never a
        /// taken slot or a seq outside the limit, never an insert outside the window or at or
        /// after the close, never an insert of a settled id, and every issuance is accounted
        /// for exactly once.
        #[test]
        fn plan_enforces_every_rule_and_accounts_for_every_issuance(
            (campaign, specs, held) in case(),
        ) {
            let c = Uuid::new_v4();
            let batch: Vec<Issuance> =
                specs.iter().map(|(u, s, at, _)| issuance(c, *u, *s, *at)).collect();
            let settled: HashSet<Uuid> =
                batch.iter().zip(&specs).filter(|(_, s)| s.3).map(|(i, _)| i.id).collect();
            let mut facts = facts(c, campaign.clone());
            facts.settled = settled.clone();
            // Held coupons may lie beyond today's limit (it was lowered since).
            for (user, seq) in &held {
                facts.held.entry((c, format!("u{user}"))).or_default().insert(*seq);
            }
            let plan = plan(&batch, &facts);

            prop_assert!(plan.insert.len() as i64 <= campaign.capacity);
            let mut per_user: HashMap<&str, HashSet<i32>> = HashMap::new();
            for i in &plan.insert {
                let at = unix_ms(i.requested_at);
                prop_assert!(!settled.contains(&i.id));
                prop_assert!(at >= campaign.starts_ms && at < campaign.ends_ms);
                prop_assert!(campaign.closed_ms.is_none_or(|closed| at < closed));
                prop_assert!(i.seq >= 1 && i.seq <= campaign.per_user_limit);
                let held = facts.held.get(&(c, i.user.clone()));
                prop_assert!(held.is_none_or(|h| !h.contains(&i.seq)));
                prop_assert!(per_user.entry(&i.user).or_default().insert(i.seq));
            }
            for (user, seqs) in &per_user {
                let before = facts.held.get(&(c, (*user).to_owned())).map_or(0, HashSet::len);
                prop_assert!(before + seqs.len() <= campaign.per_user_limit as usize);
            }
            prop_assert_eq!(plan.insert.len() + plan.reject.len() + plan.redelivered, batch.len());
            let decided: HashSet<Uuid> = plan
                .insert
                .iter()
                .map(|i| i.id)
                .chain(plan.reject.iter().map(|(i, _)| i.id))
                .collect();
            prop_assert_eq!(decided.len(), plan.insert.len() + plan.reject.len());
            prop_assert!(decided.is_disjoint(&settled));
        }
    }
}
