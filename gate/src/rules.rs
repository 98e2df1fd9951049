//! The reservation rules, as pure logic. `lua/reserve.lua` implements exactly these rules
//! inside Redis; this module is their executable statement, property-tested here and compared
//! with the Lua script on a real Redis in the integration tests.

/// What the gate knows about a campaign at the moment of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignGate {
    pub remaining: u32,
    pub per_user_limit: u32,
    /// The window is `[starts_ms, ends_ms)` by the Redis clock.
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub closed: bool,
    /// Redis may have lost admissions (`recovery`): nobody is admitted until re-seeded.
    pub fenced: bool,
    /// An operator's change is between the gate and the ledger.
    pub held: bool,
}

/// The answer to one request by a user who already holds `held` reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reserve one unit; the user's new coupon is number `seq`.
    Accept {
        seq: u32,
    },
    /// Outside the window or closed.
    NotOpen,
    /// The user is at the per-user limit; `seq` is their newest reservation.
    AlreadyHeld {
        seq: u32,
    },
    SoldOut,
    /// Fenced: retry later (503).
    Fenced,
    /// Held for an operator's change: retry later (503).
    Held,
}

/// Checks in a fixed order: window, then fence and hold, then the user's limit, then stock. A
/// closed or ended campaign says so even while fenced (its settings come from the ledger); the
/// holders and stock of a fenced one are not trusted, so nobody hears about them. A user at the
/// limit hears about their own coupon (409) even when stock ran out meanwhile.
pub fn decide(gate: &CampaignGate, held: u32, now_ms: i64) -> Decision {
    if gate.closed || now_ms < gate.starts_ms || now_ms >= gate.ends_ms {
        Decision::NotOpen
    } else if gate.fenced {
        Decision::Fenced
    } else if gate.held {
        Decision::Held
    } else if held >= gate.per_user_limit {
        Decision::AlreadyHeld { seq: held }
    } else if gate.remaining == 0 {
        Decision::SoldOut
    } else {
        Decision::Accept { seq: held + 1 }
    }
}

/// A whole campaign's gate state, applying decisions the way the Lua script does.
#[derive(Debug, Clone)]
pub struct Model {
    pub gate: CampaignGate,
    pub holders: std::collections::HashMap<String, u32>,
    pub accepted: u32,
}

impl Model {
    pub fn new(gate: CampaignGate) -> Self {
        Model {
            gate,
            holders: Default::default(),
            accepted: 0,
        }
    }

    pub fn request(&mut self, user: &str, now_ms: i64) -> Decision {
        let held = self.holders.get(user).copied().unwrap_or(0);
        let decision = decide(&self.gate, held, now_ms);
        if let Decision::Accept { seq } = decision {
            self.gate.remaining -= 1;
            self.accepted += 1;
            self.holders.insert(user.to_owned(), seq);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open_gate(stock: u32, limit: u32) -> CampaignGate {
        CampaignGate {
            remaining: stock,
            per_user_limit: limit,
            starts_ms: 1_000,
            ends_ms: 2_000,
            closed: false,
            fenced: false,
            held: false,
        }
    }

    #[test]
    fn a_fenced_or_held_campaign_admits_nobody_but_still_says_it_is_closed() {
        let gate = open_gate(5, 1);
        for paused in [
            CampaignGate {
                fenced: true,
                ..gate
            },
            CampaignGate { held: true, ..gate },
        ] {
            let answer = decide(&paused, 0, 1_500);
            assert!(
                matches!(answer, Decision::Fenced | Decision::Held),
                "{answer:?}"
            );
            // Not even a holder hears about the holders of a state that may be lost.
            assert_eq!(decide(&paused, 1, 1_500), answer);
            let closed = CampaignGate {
                closed: true,
                ..paused
            };
            assert_eq!(decide(&closed, 0, 1_500), Decision::NotOpen);
            assert_eq!(decide(&paused, 0, 2_000), Decision::NotOpen);
        }
    }

    #[test]
    fn window_is_half_open() {
        let gate = open_gate(1, 1);
        assert_eq!(decide(&gate, 0, 999), Decision::NotOpen);
        assert_eq!(decide(&gate, 0, 1_000), Decision::Accept { seq: 1 });
        assert_eq!(decide(&gate, 0, 1_999), Decision::Accept { seq: 1 });
        assert_eq!(decide(&gate, 0, 2_000), Decision::NotOpen);
        let closed = CampaignGate {
            closed: true,
            ..gate
        };
        assert_eq!(decide(&closed, 0, 1_500), Decision::NotOpen);
    }

    #[test]
    fn holder_hears_about_own_coupon_before_sold_out() {
        let gate = open_gate(0, 1);
        assert_eq!(decide(&gate, 1, 1_500), Decision::AlreadyHeld { seq: 1 });
        assert_eq!(decide(&gate, 0, 1_500), Decision::SoldOut);
    }

    proptest! {
        /// Whatever the sequence of requests: never more accepted than stock, never more per
        /// user than the limit, stock conserved, and each user's seqs are 1, 2, ... in order.
        #[test]
        fn never_oversells_nor_exceeds_the_limit(
            stock in 0u32..40,
            limit in 1u32..4,
            requests in proptest::collection::vec((0u8..25, 900i64..2_100), 0..200),
        ) {
            let mut model = Model::new(open_gate(stock, limit));
            let mut seqs: std::collections::HashMap<String, Vec<u32>> = Default::default();
            for (user, now) in requests {
                let user = format!("u{user}");
                let held_before = model.holders.get(&user).copied().unwrap_or(0);
                match model.request(&user, now) {
                    Decision::Accept { seq } => seqs.entry(user).or_default().push(seq),
                    Decision::AlreadyHeld { seq } => prop_assert_eq!(seq, held_before),
                    Decision::NotOpen => prop_assert!(!(1_000..2_000).contains(&now)),
                    Decision::SoldOut => prop_assert_eq!(model.gate.remaining, 0),
                    Decision::Fenced | Decision::Held => prop_assert!(false, "never paused here"),
                }
            }
            prop_assert!(model.accepted <= stock);
            prop_assert_eq!(model.accepted + model.gate.remaining, stock);
            for held in seqs.values() {
                prop_assert!(held.len() as u32 <= limit);
                prop_assert_eq!(held.clone(), (1..=held.len() as u32).collect::<Vec<_>>());
            }
        }
    }
}
