//! How a world's test ends: wait until the system is quiet, then check every invariant against
//! Redis, PostgreSQL, the topics and the answers the client saw.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gate::Gate;
use gate::reconcile::{self, CampaignReport};
use schema::ids::{CampaignId, IssuanceId};

use super::World;
use crate::Answer;

impl World {
    /// Waits until the system is quiet (journal empty, every reservation persisted or refused),
    /// then checks every invariant. `allow_rejected` admits what a Redis that lost writes
    /// causes: issuances refused by the ledger after their 202. Returns the final report.
    pub async fn check(
        &self,
        campaign: &str,
        answers: &[Answer],
        allow_rejected: bool,
    ) -> CampaignReport {
        let started = Instant::now();
        let campaign: CampaignId = campaign.parse().unwrap();
        let gate = self.gate().await;
        let db = self.fixture.db().await;
        let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
        let ids: Vec<uuid::Uuid> = accepted
            .iter()
            .map(|a| {
                let id: IssuanceId = a.issuance_id.as_deref().unwrap().parse().unwrap();
                id.reservation
            })
            .collect();
        let report = quiet_report(&db, &gate, &campaign, &ids, allow_rejected).await;

        let dead = self
            .fixture
            .topic_len(&self.fixture.dead_letter_topic)
            .await;
        let by = |s: u16| answers.iter().filter(|a| a.status == s).count();
        println!(
            "case {}: requests {}, 202 {}, 409 {}, 410 {}, 503 {}, connection errors {}, rows {}, rejected after 202 {}, dead letters {}, quiet after {:.1} s",
            self.name,
            answers.len(),
            by(202),
            by(409),
            by(410),
            by(503),
            by(0),
            report.coupons,
            report.rejected,
            dead,
            started.elapsed().as_secs_f64()
        );
        assert!(report.breaches().is_empty(), "{:?}", report.breaches());
        assert_eq!(dead, 0, "no dead letters without poison");
        if !allow_rejected {
            assert_eq!(report.rejected, 0, "nothing rejected after 202");
        }
        // No 202 lost: every accepted issuance is a coupon, or (only after a Redis loss) a
        // recorded rejection; no user holds more than one coupon.
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1)),
                        (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                &[&ids],
            )
            .await
            .unwrap();
        let (issued, rejected): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(issued + rejected, ids.len() as i64, "every 202 is terminal");
        let users: HashSet<&str> = accepted.iter().map(|a| a.user.as_str()).collect();
        if !allow_rejected {
            assert_eq!(users.len(), accepted.len(), "a user was accepted twice");
        }
        assert_eq!(report.users_over_limit, 0);
        assert!(report.coupons <= report.total_stock);
        report
    }
}

/// The campaign's report once the journal is empty, every accepted issuance (`ids`) is settled
/// and nothing but the quiet-time breaches remain.
async fn quiet_report(
    db: &tokio_postgres::Client,
    gate: &Gate,
    campaign: &CampaignId,
    ids: &[uuid::Uuid],
    allow_rejected: bool,
) -> CampaignReport {
    crate::eventually(Duration::from_secs(90), "quiescence", || async {
        let mut report = reconcile::report(db, gate, campaign).await.ok()?;
        if report.journal > 0 {
            return None;
        }
        let settled: i64 = db
            .query_one(
                "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1))
                      + (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                &[&ids],
            )
            .await
            .ok()?
            .get(0);
        if settled < ids.len() as i64 {
            return None;
        }
        if allow_rejected {
            // After Redis lost writes, the operator's repair sets the gate from the ledger.
            reconcile::repair_counters(gate, &report).await.ok()?;
            report = reconcile::report(db, gate, campaign).await.ok()?;
        }
        report.quiet_breaches().is_empty().then_some(report)
    })
    .await
}
