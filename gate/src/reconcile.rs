//! Reconciliation: compares what the gate (Redis) and the ledger (PostgreSQL) say about a
//! campaign and names every breach of the invariants. Read-only: a repair fences the campaign
//! and re-seeds it the one way a lost gate is re-seeded ([`crate::recovery`]). Used by
//! `couponctl verify` and by the fault tests.

use std::fmt;

use schema::ids::CampaignId;

use crate::{Gate, GateError};

/// One campaign, seen from both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignReport {
    pub id: CampaignId,
    pub total_stock: i64,
    /// Coupon rows in the ledger.
    pub coupons: i64,
    /// The ledger's guarded counter; must equal `coupons`.
    pub issued_count: i64,
    /// Admissions the ledger refused (rejected after 202).
    pub rejected: i64,
    /// Users holding more coupons than the per-user limit; must be 0.
    pub users_over_limit: i64,
    /// The gate's counters; `None` when Redis does not know the campaign.
    pub remaining: Option<i64>,
    pub accepted: Option<i64>,
    /// Reservations Kafka has not confirmed yet.
    pub journal: u64,
    /// The campaign is fenced: the gate may have lost admissions and is being re-seeded.
    pub fenced: bool,
}

impl CampaignReport {
    /// Breaches that hold whenever they are observed.
    pub fn breaches(&self) -> Vec<String> {
        let mut breaches = Vec::new();
        if self.coupons > self.total_stock {
            breaches.push(format!(
                "oversell: {} coupons for a stock of {}",
                self.coupons, self.total_stock
            ));
        }
        if self.issued_count != self.coupons {
            breaches.push(format!(
                "ledger counter {} differs from {} coupon rows",
                self.issued_count, self.coupons
            ));
        }
        if self.users_over_limit > 0 {
            breaches.push(format!(
                "duplicate: {} users above the per-user limit",
                self.users_over_limit
            ));
        }
        breaches
    }

    /// Breaches once the system is quiet (no journal entries, no consumer lag): every
    /// reservation must then be a coupon, so the gate's reserved count equals the ledger's.
    pub fn quiet_breaches(&self) -> Vec<String> {
        let mut breaches = self.breaches();
        if self.fenced {
            breaches.push("fenced: the gate is being re-seeded from the ledger".to_owned());
        }
        if self.journal > 0 {
            breaches.push(format!(
                "journal holds {} unconfirmed reservations",
                self.journal
            ));
        }
        match self.remaining {
            None => breaches.push("the gate does not know the campaign".to_owned()),
            Some(remaining) if self.total_stock - remaining != self.coupons => {
                breaches.push(format!(
                    "phantom: the gate reserved {} but the ledger holds {} coupons",
                    self.total_stock - remaining,
                    self.coupons
                ))
            }
            Some(_) => {}
        }
        breaches
    }
}

impl fmt::Display for CampaignReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        write!(
            f,
            "campaign {}: stock {}, coupons {}, counter {}, rejected {}, gate remaining {}, gate accepted {}, journal {}{}",
            self.id,
            self.total_stock,
            self.coupons,
            self.issued_count,
            self.rejected,
            show(self.remaining),
            show(self.accepted),
            self.journal,
            if self.fenced { ", fenced" } else { "" }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the ledger has no campaign {0}")]
    UnknownCampaign(CampaignId),
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Gate(#[from] GateError),
}

/// Campaigns the gate may still hold state for ([`crate::ledger::live`]), by id.
pub async fn live_campaigns(
    db: &tokio_postgres::Client,
) -> Result<Vec<CampaignId>, tokio_postgres::Error> {
    Ok(crate::ledger::live(db)
        .await?
        .into_iter()
        .map(|settings| settings.id)
        .collect())
}

/// Reads both sides of one campaign.
pub async fn report(
    db: &tokio_postgres::Client,
    gate: &Gate,
    id: &CampaignId,
) -> Result<CampaignReport, ReconcileError> {
    let row = db
        .query_opt(
            include_str!("sql/campaigns_select_ledger_figures.sql"),
            &[&id.0],
        )
        .await?
        .ok_or(ReconcileError::UnknownCampaign(*id))?;
    let figures = gate.figures(id).await?;
    Ok(CampaignReport {
        id: *id,
        total_stock: i64::from(row.try_get::<_, i32>("total_stock")?),
        coupons: row.try_get("coupons")?,
        issued_count: i64::from(row.try_get::<_, i32>("issued_count")?),
        rejected: row.try_get("rejected")?,
        users_over_limit: row.try_get("users_over_limit")?,
        remaining: figures.map(|f| f.remaining),
        accepted: figures.map(|f| f.accepted),
        journal: gate.journal_len(id).await?,
        fenced: gate.fenced(id).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> CampaignReport {
        CampaignReport {
            id: CampaignId(uuid::Uuid::nil()),
            total_stock: 10,
            coupons: 4,
            issued_count: 4,
            rejected: 0,
            users_over_limit: 0,
            remaining: Some(6),
            accepted: Some(4),
            journal: 0,
            fenced: false,
        }
    }

    #[test]
    fn a_consistent_campaign_has_no_breach() {
        assert!(report().quiet_breaches().is_empty());
    }

    #[test]
    fn each_breach_is_named() {
        let r = CampaignReport {
            coupons: 11,
            issued_count: 11,
            ..report()
        };
        assert!(r.breaches()[0].starts_with("oversell"));
        let r = CampaignReport {
            issued_count: 3,
            ..report()
        };
        assert!(r.breaches()[0].starts_with("ledger counter"));
        let r = CampaignReport {
            users_over_limit: 1,
            ..report()
        };
        assert!(r.breaches()[0].starts_with("duplicate"));
        let r = CampaignReport {
            remaining: Some(5),
            ..report()
        };
        assert!(r.breaches().is_empty());
        assert!(r.quiet_breaches()[0].starts_with("phantom"));
        let r = CampaignReport {
            journal: 2,
            ..report()
        };
        assert!(r.quiet_breaches()[0].starts_with("journal"));
    }
}
