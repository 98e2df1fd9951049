//! Entry points for the fuzz targets in `fuzz/` (not part of the crate's API): a record built
//! in memory from arbitrary key, payload and header bytes goes through the same decoding a
//! record from the requested topic does, with no broker.

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

use crate::persist::batch::Batch;
use crate::persist::decode::{Issuance, Poison};

/// Decodes one record of the requested topic as the persister's batch does: the issuances it
/// gathered (one when the record is valid), or the reason the record is poison. A header value
/// of `None` is a header without a value.
pub fn record(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: &[(&str, Option<&[u8]>)],
) -> Result<Vec<Issuance>, Poison> {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, &(key, value)| {
            all.insert(Header { key, value })
        });
    let message = OwnedMessage::new(
        payload.map(<[u8]>::to_vec),
        key.map(<[u8]>::to_vec),
        schema::topics::ISSUANCE_REQUESTED.to_owned(),
        Timestamp::NotAvailable,
        0,
        0,
        Some(headers),
    );
    let mut batch = Batch::default();
    batch.push(&message)?;
    Ok(batch.issuances)
}
