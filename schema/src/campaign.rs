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

/// What is wrong with a campaign name (as given; leading and trailing white space is dropped
/// before it is stored), if anything: it must be 1 to [`MAX_NAME_CHARS`] characters (not bytes,
/// as the ledger's CHECK counts), with no control character (the ledger refuses NUL outright,
/// and the others have no place in a name shown to users).
pub fn name_problem(name: &str) -> Option<&'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        Some("name must be 1 to 200 characters")
    } else if name.chars().any(char::is_control) {
        Some("name must not contain control characters")
    } else {
        None
    }
}

/// Whether a moment an operator gives stays within the years 0000 to 9999 once in UTC, as the
/// ledger and the gate keep it and every reply writes it (RFC 3339 has four-digit years):
/// `9999-12-31T23:59:59-01:00` is a valid RFC 3339 text, but a moment of the year 10000.
pub fn in_utc_range(moment: OffsetDateTime) -> bool {
    moment
        .checked_to_offset(time::UtcOffset::UTC)
        .is_some_and(|utc| (0..=9999).contains(&utc.year()))
}

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
    fn a_name_is_counted_in_characters_and_has_no_control_characters() {
        assert_eq!(name_problem("Spring drop"), None);
        assert_eq!(
            name_problem(&"é".repeat(MAX_NAME_CHARS)),
            None,
            "400 bytes, 200 characters"
        );
        assert!(name_problem(&"é".repeat(MAX_NAME_CHARS + 1)).is_some());
        assert!(name_problem("  \t ").is_some(), "blank");
        assert_eq!(
            name_problem("  padded\t"),
            None,
            "trimmed white space is no problem"
        );
        for bad in ["a\0b", "a\u{7}b", "line\nbreak", "del\u{7f}", "c1\u{85}x"] {
            assert_eq!(
                name_problem(bad),
                Some("name must not contain control characters"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_moment_must_stay_within_four_digit_years_in_utc() {
        use time::format_description::well_known::Rfc3339;
        let at = |text: &str| in_utc_range(OffsetDateTime::parse(text, &Rfc3339).unwrap());
        assert!(at("9999-12-31T23:59:59Z"));
        assert!(at("9999-12-31T23:59:59+01:00"));
        assert!(!at("9999-12-31T23:59:59-01:00"), "the year 10000 in UTC");
        assert!(at("0000-01-01T00:00:00Z"));
        assert!(!at("0000-01-01T00:00:00+00:01"), "the year -1 in UTC");
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
