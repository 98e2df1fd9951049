//! An issued coupon as the effects read it back from an outbox or notification row: what the
//! `coupon.issued.v1` message and the webhook body both say.

use schema::ids::{CampaignId, IssuanceId};
use schema::proto::CouponIssued;
use schema::time::unix_ms;
use time::OffsetDateTime;
use uuid::Uuid;

pub struct IssuedCoupon {
    pub event_id: Uuid,
    pub coupon_id: Uuid,
    pub campaign_id: Uuid,
    pub user_id: String,
    pub seq: i32,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

impl IssuedCoupon {
    /// From a row with the columns of that name (`outbox_select_unpublished.sql`,
    /// `notifications_claim_due.sql`).
    pub fn from_row(row: &tokio_postgres::Row) -> Result<IssuedCoupon, tokio_postgres::Error> {
        Ok(IssuedCoupon {
            event_id: row.try_get("event_id")?,
            coupon_id: row.try_get("coupon_id")?,
            campaign_id: row.try_get("campaign_id")?,
            user_id: row.try_get("user_id")?,
            seq: row.try_get("seq")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }

    /// The issuance that became this coupon: the coupon id is its reservation.
    pub fn issuance(&self) -> IssuanceId {
        IssuanceId {
            campaign: CampaignId(self.campaign_id),
            reservation: self.coupon_id,
        }
    }

    /// The `coupon.issued.v1` message.
    pub fn message(&self) -> CouponIssued {
        CouponIssued {
            event_id: self.event_id.to_string(),
            issuance_id: self.issuance().to_string(),
            coupon_id: self.coupon_id.to_string(),
            campaign_id: self.campaign_id.to_string(),
            user_id: self.user_id.clone(),
            seq: u32::try_from(self.seq).unwrap_or_default(),
            issued_at_ms: unix_ms(self.issued_at),
            expires_at_ms: unix_ms(self.expires_at),
        }
    }
}
