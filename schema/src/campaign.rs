//! Campaign and coupon rules shared by the ingress (which parses operator input) and the
//! consumer (which validates events): the limits the ledger's CHECKs also enforce
//! (`migrations/V1__campaigns_and_coupons.sql`), the discount, and the statuses derived from
//! stored moments, parsed once into types instead of compared as strings.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most units one campaign may offer.
pub const MAX_STOCK: u32 = 100_000_000;
/// The per-user limit's range; a user's coupon numbers (`seq`) run from 1 to the limit.
pub const PER_USER_LIMITS: std::ops::RangeInclusive<u32> = 1..=100;
/// How long a coupon may stay valid, in days.
pub const VALID_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;
/// Longest campaign name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscountKind {
    Fixed,
    Percent,
}

impl DiscountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountKind::Fixed => "fixed",
            DiscountKind::Percent => "percent",
        }
    }

    /// The stored text (`discount_kind`, constrained by a CHECK to these two values).
    pub fn parse(stored: &str) -> Option<DiscountKind> {
        match stored {
            "fixed" => Some(DiscountKind::Fixed),
            "percent" => Some(DiscountKind::Percent),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discount {
    pub kind: DiscountKind,
    pub value: i64,
}

impl Discount {
    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<&'static str> {
        match self.kind {
            _ if self.value <= 0 => Some("discount.value must be positive"),
            DiscountKind::Percent if self.value > 100 => {
                Some("discount.value of a percent discount must be at most 100")
            }
            _ => None,
        }
    }
}

/// Where a campaign stands at a moment: derived from its window and its close time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignStatus {
    Scheduled,
    Open,
    Ended,
    Closed,
}

impl CampaignStatus {
    pub const ALL: [CampaignStatus; 4] = [
        CampaignStatus::Scheduled,
        CampaignStatus::Open,
        CampaignStatus::Ended,
        CampaignStatus::Closed,
    ];

    /// The status at `now` of a campaign open in `[starts_at, ends_at)` unless closed.
    pub fn at(
        now: OffsetDateTime,
        starts_at: OffsetDateTime,
        ends_at: OffsetDateTime,
        closed_at: Option<OffsetDateTime>,
    ) -> CampaignStatus {
        match closed_at {
            Some(_) => CampaignStatus::Closed,
            None if now < starts_at => CampaignStatus::Scheduled,
            None if now >= ends_at => CampaignStatus::Ended,
            None => CampaignStatus::Open,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Open => "open",
            CampaignStatus::Ended => "ended",
            CampaignStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<CampaignStatus> {
        CampaignStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A coupon's state as its holder sees it. The ledger stores issued, redeemed or cancelled
/// (a CHECK); `Expired` is an issued coupon past its `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CouponStatus {
    Issued,
    Redeemed,
    Cancelled,
    Expired,
}

impl CouponStatus {
    /// The status at `now` of a stored coupon, or `None` for text the ledger never stores.
    pub fn at(stored: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Option<Self> {
        Some(match stored {
            "issued" if expires_at <= now => CouponStatus::Expired,
            "issued" => CouponStatus::Issued,
            "redeemed" => CouponStatus::Redeemed,
            "cancelled" => CouponStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Issued => "issued",
            CouponStatus::Redeemed => "redeemed",
            CouponStatus::Cancelled => "cancelled",
            CouponStatus::Expired => "expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_campaign_status_follows_its_window_and_close() {
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        let at = |s, e, c| CampaignStatus::at(now, s, e, c);
        assert_eq!(
            at(now + hour, now + hour * 2, None),
            CampaignStatus::Scheduled
        );
        assert_eq!(at(now, now + hour, None), CampaignStatus::Open);
        assert_eq!(at(now - hour, now, None), CampaignStatus::Ended);
        assert_eq!(
            at(now - hour, now + hour, Some(now)),
            CampaignStatus::Closed
        );
        for status in CampaignStatus::ALL {
            assert_eq!(CampaignStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(CampaignStatus::parse("Open"), None);
    }

    #[test]
    fn an_issued_coupon_past_its_expiry_reads_as_expired() {
        let now = OffsetDateTime::now_utc();
        let past = now - Duration::from_secs(1);
        assert_eq!(
            CouponStatus::at("issued", past, now),
            Some(CouponStatus::Expired)
        );
        assert_eq!(
            CouponStatus::at("issued", now + Duration::from_secs(1), now),
            Some(CouponStatus::Issued)
        );
        assert_eq!(
            CouponStatus::at("redeemed", past, now),
            Some(CouponStatus::Redeemed)
        );
        assert_eq!(
            CouponStatus::at("cancelled", past, now),
            Some(CouponStatus::Cancelled)
        );
        assert_eq!(CouponStatus::at("lost", past, now), None);
    }

    #[test]
    fn discounts_are_positive_and_percentages_at_most_100() {
        let d = |kind, value| Discount { kind, value }.problem();
        assert!(d(DiscountKind::Fixed, 0).is_some());
        assert!(d(DiscountKind::Percent, 101).is_some());
        assert!(d(DiscountKind::Percent, 100).is_none());
        assert!(d(DiscountKind::Fixed, 5000).is_none());
    }
}
