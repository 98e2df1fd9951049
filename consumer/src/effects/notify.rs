//! Webhook notifications of issued coupons.
//!
//! The outbox relay queues a notification in the same transaction that marks a coupon's event
//! published; the notifier delivers it on its own schedule, so a slow or dead webhook never
//! slows issuance. Each attempt is claimed with a lease (a crash mid-attempt retries after it),
//! POSTs a JSON body signed with HMAC-SHA256, and on failure waits an exponential backoff with
//! full jitter; after `WEBHOOK_MAX_ATTEMPTS` the notification is dead, kept with its last error
//! until an operator replays it (`couponctl dead-letters replay`). Delivery is at least once:
//! receivers de-duplicate on `webhook-id`.
//!
//! Deliveries follow the Standard Webhooks layout (<https://www.standardwebhooks.com>), so any
//! of its verifiers checks them: `webhook-id` (the delivery id, the same on every attempt),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, `v1,` and the base64
//! HMAC-SHA256 of `<id>.<timestamp>.<body>` under the signing key of [`signing_key`].

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use schema::time::rfc3339;
use service::backoff::Backoff;
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::Error;
use super::coupon::IssuedCoupon;
use super::target;
use crate::metrics::{Delivery, Metrics};

/// Header names of a delivery.
pub const DELIVERY_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Prefix of a secret in the Standard Webhooks form, the base64 of the key following it.
const SECRET_PREFIX: &str = "whsec_";

/// The signing key of `WEBHOOK_SECRET`: a secret in the Standard Webhooks form (`whsec_` and
/// base64) is decoded to its key bytes; any other secret is its own bytes, the key verifiers are
/// given as raw bytes (or as `whsec_` and the base64 of those bytes).
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => base64_decode(encoded)
            .ok_or_else(|| "WEBHOOK_SECRET after `whsec_` must be base64".to_owned()),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// Why `WEBHOOK_SECRET` cannot sign deliveries, if it cannot: missing, not decodable, or a key
/// under 16 bytes.
pub fn secret_problem(secret: Option<&str>) -> Option<String> {
    match secret.map(signing_key) {
        Some(Ok(key)) if key.len() >= 16 => None,
        Some(Err(problem)) => Some(problem),
        _ => Some("WEBHOOK_SECRET of at least 16 bytes is required with WEBHOOK_URL".to_owned()),
    }
}

/// The signature of a delivery: `v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`.
pub fn signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    format!("v1,{}", base64_encode(&mac.finalize().into_bytes()))
}

/// Standard base64, padded.
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard base64, padding optional; `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

pub struct Notifier {
    /// Connections to the ledger, where notifications are claimed and their outcome recorded.
    pool: deadpool_postgres::Pool,
    /// Pooled connections to the receiver, each request bounded by `WEBHOOK_TIMEOUT_MS`.
    http: reqwest::Client,
    /// `WEBHOOK_URL`; never logged, it may carry credentials.
    url: String,
    /// The key of every delivery's signature, from `WEBHOOK_SECRET` ([`signing_key`]).
    key: Vec<u8>,
    /// Attempts before a notification is dead (`WEBHOOK_MAX_ATTEMPTS`).
    max_attempts: i32,
    /// Delay before the next attempt after a failed one, with full jitter
    /// (`WEBHOOK_BACKOFF_MS` doubling up to `WEBHOOK_BACKOFF_MAX_MS`). The delay is stored with
    /// the row, so whichever pod claims it next keeps to the schedule.
    schedule: Backoff,
    /// How long a claimed notification stays with this notifier before another may take it.
    lease: Duration,
    /// Most notifications claimed (and attempted concurrently) per round.
    batch: i64,
    /// Attempts by result.
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// `None` when no `WEBHOOK_URL` is configured.
    pub fn new(
        config: &crate::Config,
        pool: deadpool_postgres::Pool,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Notifier>> {
        let Some(url) = config.webhook_url.clone() else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(config.webhook_timeout_ms);
        let policy =
            target::Policy::parse(&config.webhook_allowed_networks).map_err(anyhow::Error::msg)?;
        target::check_url(&url, config.common.profile.is_production(), &policy)
            .map_err(anyhow::Error::msg)?;
        // No redirects (a 3xx is a failed attempt, never a re-POST elsewhere), no proxy, and
        // every resolved address checked at connection time.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(16)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(target::Resolver {
                policy: Arc::new(policy),
                refused: metrics.webhook_refused.clone(),
            }))
            .build()?;
        Ok(Some(Notifier {
            pool,
            http,
            url,
            key: signing_key(config.webhook_secret.as_deref().unwrap_or_default())
                .map_err(anyhow::Error::msg)?,
            max_attempts: config.webhook_max_attempts as i32,
            schedule: Backoff::new(
                Duration::from_millis(config.webhook_backoff_ms),
                Duration::from_millis(config.webhook_backoff_max_ms),
            ),
            // An attempt's lease: its timeout plus room for the bookkeeping.
            lease: timeout + Duration::from_secs(5),
            batch: 32,
            metrics,
        }))
    }

    /// Delivers until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = match self.round().await {
                Ok(0) => Duration::from_millis(200),
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "notifier round failed; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }

    /// Claims due notifications and attempts each once. Returns how many it attempted.
    async fn round(&self) -> Result<usize, Error> {
        let claimed = {
            let client = self.pool.get().await?;
            let claim = client
                .prepare_cached(include_str!("../sql/notifications_claim_due.sql"))
                .await?;
            client
                .query(&claim, &[&self.batch, &self.lease.as_secs_f64()])
                .await?
        };
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut attempts = Vec::with_capacity(claimed.len());
        for row in &claimed {
            let notification = Claimed {
                id: row.try_get("id")?,
                delivery_id: row.try_get("delivery_id")?,
                attempt: row.try_get("attempts")?,
                coupon: IssuedCoupon::from_row(row)?,
            };
            attempts.push(self.attempt(notification));
        }
        let count = attempts.len();
        for outcome in futures_util::future::join_all(attempts).await {
            outcome?;
        }
        Ok(count)
    }

    /// One delivery attempt and its bookkeeping.
    async fn attempt(&self, n: Claimed) -> Result<(), Error> {
        let body = n.body();
        let id = n.delivery_id.to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp().to_string();
        let signed = signature(&self.key, &id, &timestamp, &body);
        let sent = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(DELIVERY_HEADER, id)
            .header(TIMESTAMP_HEADER, timestamp)
            .header(SIGNATURE_HEADER, signed)
            .body(body)
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) if response.status().is_redirection() => Some(format!(
                "webhook answered {} (redirects are not followed)",
                response.status().as_u16()
            )),
            Ok(response) => Some(format!("webhook answered {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Some("webhook timed out".to_owned()),
            Err(e) => Some(match target::Refused::find(&e) {
                Some(refused) => refused.to_string(),
                None => format!("webhook unreachable: {}", without_url(&e)),
            }),
        };
        let client = self.pool.get().await?;
        match failure {
            None => {
                let delivered = client
                    .prepare_cached(include_str!("../sql/notifications_update_delivered.sql"))
                    .await?;
                client.execute(&delivered, &[&n.id]).await?;
                self.metrics.notification(Delivery::Delivered);
            }
            Some(error) => {
                let random = Uuid::new_v4().as_u128() as u64;
                let delay = self.schedule.full_jitter(n.attempt as u32, random);
                let failed = client
                    .prepare_cached(include_str!("../sql/notifications_update_failed.sql"))
                    .await?;
                let row = client
                    .query_one(
                        &failed,
                        &[&n.id, &error, &self.max_attempts, &delay.as_secs_f64()],
                    )
                    .await?;
                let status: String = row.try_get(0)?;
                if status == "dead" {
                    tracing::warn!(delivery = %n.delivery_id, attempts = n.attempt, %error, "notification dead-lettered");
                    self.metrics.notification(Delivery::Dead);
                } else {
                    self.metrics.notification(Delivery::Retried);
                }
            }
        }
        Ok(())
    }
}

/// reqwest errors print the URL, which may carry credentials: keep only the kind of failure.
fn without_url(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "connection failed".to_owned()
    } else if error.is_request() {
        "request failed".to_owned()
    } else {
        "transport error".to_owned()
    }
}

struct Claimed {
    id: i64,
    delivery_id: Uuid,
    attempt: i32,
    coupon: IssuedCoupon,
}

impl Claimed {
    fn body(&self) -> Vec<u8> {
        let coupon = &self.coupon;
        serde_json::json!({
            "type": "coupon.issued",
            "delivery_id": self.delivery_id,
            "event_id": coupon.event_id,
            "coupon_id": coupon.coupon_id,
            "issuance_id": coupon.issuance().to_string(),
            "campaign_id": coupon.campaign_id,
            "user_id": coupon.user_id,
            "seq": coupon.seq,
            "issued_at": rfc3339(coupon.issued_at),
            "expires_at": rfc3339(coupon.expires_at),
        })
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from the Standard Webhooks reference verifier (PyPI `standardwebhooks`
    // 1.1.0, `Webhook(secret).sign`), an implementation independent of this one.
    #[test]
    fn signature_is_standard_webhooks_v1() {
        let raw = signing_key("webhook-test-secret-0123").unwrap();
        assert_eq!(raw, b"webhook-test-secret-0123");
        assert_eq!(
            signature(&raw, "msg_1", "1700000000", br#"{"a":1}"#),
            "v1,7HhRi36APqOE0ZNv1C06mn3KoXn705CpRrmfeTlbwfQ="
        );
        let decoded = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(decoded.len(), 24);
        assert_eq!(
            signature(&decoded, "msg_1", "1700000000", br#"{"a":1}"#),
            "v1,hVsFLpmw4Ib/Xm0eZLt3KqYBZdt0U8gdGeuz0EsGv78="
        );
        assert!(signing_key("whsec_not*base64").is_err());
        assert_eq!(secret_problem(Some("webhook-test-secret-0123")), None);
        assert!(
            secret_problem(Some("whsec_MfKQ9r8GKYqrTwjU")).is_some(),
            "a 12-byte key"
        );
        assert!(secret_problem(None).is_some());
    }

    proptest::proptest! {
        #[test]
        fn backoff_stays_under_the_exponential_ceiling(attempt in 0u32..40, random in proptest::num::u64::ANY) {
            let base = Duration::from_millis(100);
            let max = Duration::from_secs(60);
            let delay = Backoff::new(base, max).full_jitter(attempt, random);
            let ceiling = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(20))).min(max);
            proptest::prop_assert!(delay <= ceiling);
        }

        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let encoded = base64_encode(&bytes);
            proptest::prop_assert_eq!(encoded.len() % 4, 0);
            proptest::prop_assert_eq!(base64_decode(&encoded), Some(bytes.clone()));
            proptest::prop_assert_eq!(base64_decode(encoded.trim_end_matches('=')), Some(bytes));
        }
    }
}
