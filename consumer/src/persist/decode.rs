//! Turning a Kafka record into a validated [`Issuance`], or a reason it is poison.

use prost::Message;
use schema::campaign::PER_USER_LIMITS;
use schema::ids::{IssuanceId, UserId};
use schema::proto::IssuanceRequested;
use schema::time::from_unix_ms;
use time::OffsetDateTime;
use uuid::Uuid;

/// One requested issuance, valid in every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The reservation's UUID: the coupon's primary key, stable across redeliveries.
    pub id: Uuid,
    pub campaign: Uuid,
    pub user: String,
    pub seq: i32,
    pub requested_at: OffsetDateTime,
    /// The `traceparent` header of the record, carried on to the coupon's outbox event.
    pub traceparent: Option<String>,
}

/// Why a record can never be persisted; it goes to the dead-letter topic with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("record has no payload")]
    Empty,
    #[error("payload is not an IssuanceRequested message: {0}")]
    Protobuf(String),
    #[error("invalid field {0}")]
    Field(&'static str),
    /// A header name is not UTF-8: never the ingress's record, and unreadable by the binding.
    #[error("a header name is not UTF-8")]
    Headers,
    /// Not signed by an event key the ingress could have used: never decoded.
    #[error("{0}")]
    Signature(service::event_keys::Refusal),
}

/// The issuance of one record's payload, every field checked: the issuance id names the
/// campaign of the event, the user id is valid, `seq` lies within the largest per-user limit a
/// campaign can have, and the request time is a positive, representable moment.
pub fn decode(payload: Option<&[u8]>) -> Result<Issuance, Poison> {
    let payload = payload.filter(|p| !p.is_empty()).ok_or(Poison::Empty)?;
    let event = IssuanceRequested::decode(payload).map_err(|e| Poison::Protobuf(e.to_string()))?;
    let issuance: IssuanceId = event
        .issuance_id
        .parse()
        .map_err(|_| Poison::Field("issuance_id"))?;
    let campaign = Uuid::try_parse(&event.campaign_id).map_err(|_| Poison::Field("campaign_id"))?;
    if campaign != issuance.campaign.0 {
        return Err(Poison::Field("campaign_id"));
    }
    let user = UserId::parse(&event.user_id).map_err(|_| Poison::Field("user_id"))?;
    if !PER_USER_LIMITS.contains(&event.seq) {
        return Err(Poison::Field("seq"));
    }
    let requested_at = from_unix_ms(event.requested_at_ms)
        .filter(|_| event.requested_at_ms > 0)
        .ok_or(Poison::Field("requested_at_ms"))?;
    Ok(Issuance {
        id: issuance.reservation,
        campaign,
        user: user.as_str().to_owned(),
        seq: event.seq as i32,
        requested_at,
        traceparent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use schema::ids::CampaignId;

    fn event(campaign: Uuid) -> IssuanceRequested {
        IssuanceRequested {
            issuance_id: IssuanceId::new(CampaignId(campaign)).to_string(),
            campaign_id: campaign.to_string(),
            user_id: "user-1".to_owned(),
            seq: 1,
            requested_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn decodes_a_valid_event() {
        let campaign = Uuid::new_v4();
        let e = event(campaign);
        let issuance = decode(Some(&e.encode_to_vec())).expect("valid");
        assert_eq!(issuance.campaign, campaign);
        assert_eq!(issuance.user, "user-1");
        assert_eq!(issuance.requested_at.unix_timestamp(), 1_700_000_000);
    }

    #[test]
    fn refuses_each_invalid_field() {
        let campaign = Uuid::new_v4();
        assert_eq!(decode(None), Err(Poison::Empty));
        assert!(matches!(
            decode(Some(b"\xff\xff\xff")),
            Err(Poison::Protobuf(_))
        ));
        let mut e = event(campaign);
        e.campaign_id = Uuid::new_v4().to_string();
        assert_eq!(
            decode(Some(&e.encode_to_vec())),
            Err(Poison::Field("campaign_id"))
        );
        let mut e = event(campaign);
        e.user_id = String::new();
        assert_eq!(
            decode(Some(&e.encode_to_vec())),
            Err(Poison::Field("user_id"))
        );
        let mut e = event(campaign);
        e.seq = 0;
        assert_eq!(decode(Some(&e.encode_to_vec())), Err(Poison::Field("seq")));
        let mut e = event(campaign);
        e.requested_at_ms = -5;
        assert_eq!(
            decode(Some(&e.encode_to_vec())),
            Err(Poison::Field("requested_at_ms"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Some(&bytes));
        }
    }
}
