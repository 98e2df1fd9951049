//! Topic names and record keys of the published contract (docs/ARCHITECTURE.md, SPEC section 5).

/// Requested issuances, produced by the ingress, consumed by the consumer group.
pub const ISSUANCE_REQUESTED: &str = "coupon.issuance.requested.v1";
/// Persisted coupons, for downstream teams.
pub const COUPON_ISSUED: &str = "coupon.issued.v1";
/// Campaign lifecycle events.
pub const CAMPAIGN_EVENTS: &str = "coupon.campaign.events.v1";
/// Records the consumer could not decode, with the reason in headers.
pub const ISSUANCE_DEAD_LETTER: &str = "coupon.issuance.requested.v1.dlq";

/// Schema name and version header values for `coupon.issuance.requested.v1`.
pub const ISSUANCE_REQUESTED_SCHEMA: &str = "coupon.v1.IssuanceRequested";
pub const SCHEMA_VERSION: &str = "1";
/// CloudEvents type of `coupon.issuance.requested.v1` records.
pub const ISSUANCE_REQUESTED_TYPE: &str = "coupon.issuance.requested.v1";

/// Schema name and CloudEvents type of `coupon.issued.v1` records.
pub const COUPON_ISSUED_SCHEMA: &str = "coupon.v1.CouponIssued";
pub const COUPON_ISSUED_TYPE: &str = "coupon.issued.v1";
/// Schema name of `coupon.campaign.events.v1` records; their CloudEvents type is the outbox
/// one of the three below.
pub const CAMPAIGN_EVENT_SCHEMA: &str = "coupon.v1.CampaignEvent";
pub const CAMPAIGN_OPENED_TYPE: &str = "coupon.campaign.opened";
pub const CAMPAIGN_SOLD_OUT_TYPE: &str = "coupon.campaign.sold-out";
pub const CAMPAIGN_CLOSED_TYPE: &str = "coupon.campaign.closed";
/// CloudEvents `source` of the events this pipeline publishes.
pub const EVENT_SOURCE: &str = "/coupon-issuance";
/// Prefix of every event's `ce_dataschema`: followed by the full name of the payload's protobuf
/// message, which the published descriptor set (`schema/descriptors/coupon-v1.binpb`) defines.
pub const DATASCHEMA_PREFIX: &str = "urn:coupon:proto:";

/// The `ce_dataschema` URI of events whose payload is the message `schema` (its full name).
pub fn dataschema(schema: &str) -> String {
    format!("{DATASCHEMA_PREFIX}{schema}")
}

/// Record key `campaign:user`: every event of one user in one campaign lands on one partition,
/// in order, while a campaign's load still spreads over all partitions.
pub fn record_key(campaign_id: &str, user_id: &str) -> String {
    format!("{campaign_id}:{user_id}")
}
