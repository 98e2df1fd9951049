//! The first check of every record: its `coupon-signature` header must verify under an event
//! key the ingress could have used ([`service::event_keys`]). Anything else on the topic (a
//! record written by whoever reached the broker) is dead-lettered before it is even decoded.

use std::time::Duration;

use rdkafka::message::{Headers as _, Message};
use service::backoff::Backoff;
use service::event_keys::{self, EventKeys, Refusal};
use tokio::sync::watch;

/// The record's verdict: the id of the key that signed it, or why it is refused. Waits (with
/// backoff) while the keys cannot be read, since a record cannot be judged without them;
/// `None` when shutdown began meanwhile.
pub async fn judge(
    keys: &EventKeys,
    message: &impl Message,
    stop: &mut watch::Receiver<bool>,
) -> Option<Result<i32, Refusal>> {
    let header = message
        .headers()
        .and_then(|headers| headers.iter().find(|h| h.key == event_keys::HEADER))
        .and_then(|header| header.value);
    let key = message.key().unwrap_or_default();
    let value = message.payload().unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match keys.verify(header, key, value).await {
            Ok(verdict) => return Some(verdict),
            Err(e) => {
                tracing::warn!(error = %e, partition = message.partition(), offset = message.offset(), "cannot judge a record's signature yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return None,
                }
            }
        }
    }
}

/// Reads the keys until it succeeds; false when shutdown began first.
pub async fn first_load(keys: &EventKeys, stop: &mut watch::Receiver<bool>) -> bool {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match keys.reload().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "no event keys yet: consuming waits for them");
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = stop.wait_for(|stopped| *stopped) => return false,
                }
            }
        }
    }
}
