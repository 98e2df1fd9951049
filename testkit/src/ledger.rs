//! What a test reads back from its own database (and, for [`Footprint`], its Redis keys and
//! topic): coupons persisted so far, and waits for the consumer to catch up.

use std::time::Duration;

use crate::Fixture;

/// What Redis, the requested topic and PostgreSQL hold: two equal footprints show a request
/// changed nothing.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    redis: Vec<(String, Vec<(String, String)>)>,
    topic: i64,
    ledger: (i64, i64, i64, i64),
}

impl Fixture {
    /// Coupon rows of a campaign.
    pub async fn coupons(&self, campaign: &str) -> i64 {
        let db = self.db().await;
        let id = uuid::Uuid::parse_str(campaign).unwrap();
        db.query_one(
            "SELECT count(*) FROM coupons WHERE campaign_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// Waits until the ledger holds `n` coupons of the campaign, and no more.
    pub async fn wait_for_coupons(&self, campaign: &str, n: i64) {
        crate::eventually(
            Duration::from_secs(60),
            "coupons to be persisted",
            || async { (self.coupons(campaign).await >= n).then_some(()) },
        )
        .await;
        assert_eq!(self.coupons(campaign).await, n, "exactly {n} coupons");
    }

    /// Coupon rows of every campaign.
    pub async fn rows(&self) -> i64 {
        let db = self.db().await;
        db.query_one("SELECT count(*) FROM coupons", &[])
            .await
            .unwrap()
            .get(0)
    }

    /// Waits until the ledger holds at least `n` coupons.
    pub async fn wait_for_rows(&self, n: i64, what: &str) {
        crate::eventually(Duration::from_secs(60), what, || async {
            (self.rows().await >= n).then_some(())
        })
        .await;
    }

    /// This test's Redis keys (on the shared Redis), requested topic and ledger counts.
    pub async fn footprint(&self) -> Footprint {
        let db = self.db().await;
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM campaigns), (SELECT count(*) FROM coupons),
                        (SELECT count(*) FROM issuance_rejections),
                        (SELECT coalesce(sum(issued_count), 0)::bigint FROM campaigns)",
                &[],
            )
            .await
            .unwrap();
        Footprint {
            redis: self.redis_snapshot().await,
            topic: self.topic_len(&self.topic).await,
            ledger: (row.get(0), row.get(1), row.get(2), row.get(3)),
        }
    }
}
