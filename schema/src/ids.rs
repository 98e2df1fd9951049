//! Validated identifiers. Parse once at the edge; everything past it holds a valid value.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Why an identifier was refused. The text names the rule, never echoes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("campaign id must be a UUID")]
    Campaign,
    #[error("issuance id must be 64 lowercase hex characters")]
    Issuance,
    #[error("user id must be 1 to 255 characters without control characters")]
    User,
}

/// A campaign's id: a UUID, shown in canonical hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CampaignId(pub Uuid);

impl FromStr for CampaignId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the hyphenated form: one spelling per campaign keeps URLs and keys canonical.
        if s.len() != 36 {
            return Err(IdError::Campaign);
        }
        Uuid::try_parse(s)
            .map(CampaignId)
            .map_err(|_| IdError::Campaign)
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// The JWT `sub` of a user. Bounded so it can be a Redis hash field and a Postgres key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(IdError::User);
        }
        Ok(UserId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An issuance: the campaign it belongs to and the reservation's own UUID (v7, time ordered),
/// which is also the id of the coupon row it becomes.
///
/// Written as 64 lowercase hex characters, campaign first, so `GET /v1/issuances/{id}` finds the
/// campaign's Redis keys (one hash tag per campaign) without a global index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IssuanceId {
    pub campaign: CampaignId,
    pub reservation: Uuid,
}

impl IssuanceId {
    /// A fresh id for a new reservation in `campaign`.
    pub fn new(campaign: CampaignId) -> Self {
        IssuanceId {
            campaign,
            reservation: Uuid::now_v7(),
        }
    }
}

impl fmt::Display for IssuanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.campaign.0.simple(),
            self.reservation.simple()
        )
    }
}

impl FromStr for IssuanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() != 64 || !s.bytes().all(lower_hex) {
            return Err(IdError::Issuance);
        }
        let (campaign, reservation) = s.split_at(32);
        let parse = |part: &str| Uuid::try_parse(part).map_err(|_| IdError::Issuance);
        Ok(IssuanceId {
            campaign: CampaignId(parse(campaign)?),
            reservation: parse(reservation)?,
        })
    }
}

impl serde::Serialize for IssuanceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn campaign_id_accepts_only_hyphenated_uuid() {
        let id = Uuid::new_v4();
        assert_eq!(id.hyphenated().to_string().parse(), Ok(CampaignId(id)));
        assert_eq!(
            id.simple().to_string().parse::<CampaignId>(),
            Err(IdError::Campaign)
        );
        assert_eq!("not-a-uuid".parse::<CampaignId>(), Err(IdError::Campaign));
    }

    #[test]
    fn user_id_is_bounded_and_printable() {
        assert!(UserId::parse("user-1").is_ok());
        assert_eq!(UserId::parse(""), Err(IdError::User));
        assert_eq!(UserId::parse("a\tb"), Err(IdError::User));
        assert_eq!(UserId::parse(&"x".repeat(256)), Err(IdError::User));
        assert!(UserId::parse(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn issuance_id_rejects_uppercase_and_wrong_length() {
        let id = IssuanceId::new(CampaignId(Uuid::new_v4())).to_string();
        assert_eq!(
            id.to_uppercase().parse::<IssuanceId>(),
            Err(IdError::Issuance)
        );
        assert_eq!(id[..63].parse::<IssuanceId>(), Err(IdError::Issuance));
        assert_eq!(
            format!("{id}0").parse::<IssuanceId>(),
            Err(IdError::Issuance)
        );
    }

    proptest! {
        #[test]
        fn issuance_id_round_trips(a in any::<u128>(), b in any::<u128>()) {
            let id = IssuanceId { campaign: CampaignId(Uuid::from_u128(a)), reservation: Uuid::from_u128(b) };
            let text = id.to_string();
            prop_assert_eq!(text.len(), 64);
            prop_assert_eq!(text.parse::<IssuanceId>(), Ok(id));
        }

        #[test]
        fn issuance_id_parse_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<IssuanceId>();
        }
    }
}
