//! How a world's test ends: wait until the system is quiet, then check every invariant against
//! Redis, PostgreSQL, the topics, `couponctl verify` and the answers the client saw.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gate::Gate;
use gate::reconcile::{self, CampaignReport};
use schema::ids::{CampaignId, IssuanceId};

use super::World;
use crate::Answer;

/// How long a check waits for the system to be quiet.
const QUIET_WITHIN: Duration = Duration::from_secs(90);

impl World {
    /// Waits until the system is quiet (journal empty, every 202 settled, the gate not fenced
    /// and holding what the ledger holds), then checks every invariant: every 202 ends
    /// `issued` (nothing is rejected, whatever Redis lost), nobody was admitted or holds more
    /// than the per-user limit, no oversell, nothing admitted at or after a close, no dead
    /// letters, and `couponctl verify` clean. Returns the final report.
    pub async fn check(&self, campaign: &str, answers: &[Answer]) -> CampaignReport {
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
        let distinct: HashSet<&uuid::Uuid> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "one 202 per issuance");
        let report = quiet_report(&db, &gate, &campaign, &ids).await;

        let dead = self
            .fixture
            .topic_len(&self.fixture.dead_letter_topic)
            .await;
        let by = |s: u16| answers.iter().filter(|a| a.status == s).count();
        println!(
            "case {}: requests {}, 202 {}, 403 {}, 409 {}, 410 {}, 503 {}, connection errors {}, rows {}, rejected after 202 {}, dead letters {}, quiet after {:.1} s",
            self.name,
            answers.len(),
            by(202),
            by(403),
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
        assert_eq!(report.rejected, 0, "nothing rejected after 202");
        // No 202 lost: every accepted issuance is a coupon.
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1)),
                        (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                &[&ids],
            )
            .await
            .unwrap();
        let (issued, rejected): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(rejected, 0, "a 202 ended rejected");
        assert_eq!(issued, ids.len() as i64, "every 202 ends issued");
        let (limit, after_close) = campaign_rules(&db, &campaign).await;
        let mut per_user: HashMap<&str, i64> = HashMap::new();
        for answer in &accepted {
            *per_user.entry(answer.user.as_str()).or_default() += 1;
        }
        let over: Vec<(&&str, &i64)> = per_user.iter().filter(|(_, n)| **n > limit).collect();
        assert!(
            over.is_empty(),
            "admitted over the limit of {limit}: {over:?}"
        );
        assert_eq!(report.users_over_limit, 0);
        assert!(report.coupons <= report.total_stock);
        assert_eq!(after_close, 0, "coupons admitted at or after the close");
        self.couponctl_verify();
        report
    }
}

/// The campaign's per-user limit, and its coupons admitted at or after its close.
async fn campaign_rules(db: &tokio_postgres::Client, campaign: &CampaignId) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT k.per_user_limit::bigint,
                    (SELECT count(*) FROM coupons c
                      WHERE c.campaign_id = k.id AND c.requested_at >= k.closed_at)
               FROM campaigns k WHERE k.id = $1",
            &[&campaign.0],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The campaign's report once the journal is empty, every accepted issuance (`ids`) is settled
/// and no quiet-time breach remains (the gate not fenced, its reserved count the ledger's).
/// Past [`QUIET_WITHIN`] it fails with the last report seen.
async fn quiet_report(
    db: &tokio_postgres::Client,
    gate: &Gate,
    campaign: &CampaignId,
    ids: &[uuid::Uuid],
) -> CampaignReport {
    let deadline = Instant::now() + QUIET_WITHIN;
    let mut last = String::from("no report");
    loop {
        if let Ok(report) = reconcile::report(db, gate, campaign).await {
            let settled: i64 = db
                .query_one(
                    "SELECT (SELECT count(*) FROM coupons WHERE id = ANY($1))
                          + (SELECT count(*) FROM issuance_rejections WHERE id = ANY($1))",
                    &[&ids],
                )
                .await
                .unwrap()
                .get(0);
            let breaches = report.quiet_breaches();
            if settled == ids.len() as i64 && breaches.is_empty() {
                return report;
            }
            last = format!(
                "{report}; {settled} of {} 202s settled; {breaches:?}",
                ids.len()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not quiet after {QUIET_WITHIN:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
