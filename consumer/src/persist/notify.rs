//! Telling the ingress processes which issuances a batch settled, so their parked long-polls
//! (`GET /v1/issuances/{id}` with `Prefer: wait=N`) answer at once.
//!
//! Inside the batch's transaction, the ids of its new coupons and rejections go out on the
//! PostgreSQL channel [`CHANNEL`], joined by [`SEPARATOR`], in payloads under PostgreSQL's
//! 8000-byte limit. PostgreSQL delivers them only once the transaction commits (and never if it
//! rolls back), so a woken waiter always finds its row. Each ingress process listens with one
//! connection, however many requests wait.

use deadpool_postgres::Transaction;
use schema::ids::{CampaignId, IssuanceId};

use super::decode::Issuance;

/// The channel the ingress listens on (`ingress::issue::outcomes::CHANNEL`).
pub const CHANNEL: &str = "coupon_outcomes";
/// Between the issuance ids of one payload.
pub const SEPARATOR: char = ',';
/// Largest payload sent: PostgreSQL refuses 8000 bytes and more.
pub const MAX_PAYLOAD: usize = 7_900;

/// The issuance ids, in their text form (`IssuanceId`), joined into payloads of at most
/// [`MAX_PAYLOAD`] bytes.
pub fn payloads<'a>(settled: impl IntoIterator<Item = &'a Issuance>) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for issuance in settled {
        let id = IssuanceId {
            campaign: CampaignId(issuance.campaign),
            reservation: issuance.id,
        }
        .to_string();
        if !current.is_empty() && current.len() + 1 + id.len() > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(SEPARATOR);
        }
        current.push_str(&id);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// Queues the notifications of `settled` in the transaction (sent at its commit): one round
/// trip, whatever the number of payloads.
pub async fn announce<'a>(
    tx: &Transaction<'_>,
    settled: impl IntoIterator<Item = &'a Issuance>,
) -> Result<(), tokio_postgres::Error> {
    let payloads = payloads(settled);
    if payloads.is_empty() {
        return Ok(());
    }
    let statement = tx
        .prepare_cached("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .await?;
    tx.query(&statement, &[&CHANNEL, &payloads]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn issuance(n: u128) -> Issuance {
        Issuance {
            id: Uuid::from_u128(n),
            campaign: Uuid::from_u128(u128::MAX - n),
            user: "u".to_owned(),
            seq: 1,
            requested_at: time::OffsetDateTime::UNIX_EPOCH,
            traceparent: None,
        }
    }

    #[test]
    fn every_id_goes_out_once_in_payloads_under_the_limit() {
        let batch: Vec<Issuance> = (0..1_000).map(issuance).collect();
        let payloads = payloads(&batch);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
        let ids: Vec<IssuanceId> = payloads
            .iter()
            .flat_map(|p| p.split(SEPARATOR))
            .map(|id| id.parse().unwrap())
            .collect();
        assert_eq!(ids.len(), batch.len());
        for (id, issuance) in ids.iter().zip(&batch) {
            assert_eq!(
                (id.reservation, id.campaign.0),
                (issuance.id, issuance.campaign)
            );
        }
        assert!(super::payloads(&[]).is_empty());
    }
}
