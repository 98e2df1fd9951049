//! The outbox relay: publishes `coupon.issued.v1` for every coupon the ledger committed, and
//! `coupon.campaign.events.v1` for campaigns that opened, sold out or closed.
//!
//! The batch transaction that inserts coupons also inserts their outbox rows, so a coupon
//! without its event cannot exist. The relay takes the oldest unpublished rows under
//! `FOR UPDATE SKIP LOCKED` (one relay per row, however many consumer pods run), produces their
//! events with an idempotent producer, waits for every acknowledgement, marks the rows published
//! and commits. A crash anywhere before the commit publishes the rows again later, with the same
//! event ids: delivery is at least once, and downstream consumers de-duplicate on `ce_id`.
//!
//! Campaign events: the batch that persists a campaign's last coupon queues `sold-out` (and
//! `opened` first, if not yet queued); the relay's announcer queues `opened` and `closed` once
//! their moment passed (`sql/campaigns_announce_*.sql`). Each has one event id per (campaign,
//! kind), queued once under a row lock and a flag however many pods run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use schema::ids::{CampaignId, IssuanceId};
use schema::proto::{CampaignEvent, CouponIssued, campaign_event};
use schema::topics;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use uuid::Uuid;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("kafka did not acknowledge an event: {0}")]
    Kafka(rdkafka::error::KafkaError),
}

pub struct Relay {
    pool: deadpool_postgres::Pool,
    producer: FutureProducer,
    topic: String,
    events_topic: String,
    batch: i64,
    poll: Duration,
    /// Queue a webhook notification per published event.
    notify: bool,
    metrics: Arc<Metrics>,
}

impl Relay {
    pub fn new(
        config: &crate::Config,
        pool: deadpool_postgres::Pool,
        metrics: Arc<Metrics>,
    ) -> Result<Relay, rdkafka::error::KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka_brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("socket.nagle.disable", "true")
            .set("message.timeout.ms", "10000")
            .set("client.id", "coupon-relay")
            .create()?;
        Ok(Relay {
            pool,
            producer,
            topic: config.topic_issued.clone(),
            events_topic: config.topic_campaign_events.clone(),
            batch: config.outbox_batch as i64,
            poll: Duration::from_millis(config.outbox_poll_ms),
            notify: config.webhook_url.is_some(),
            metrics,
        })
    }

    /// Publishes until `stop` turns true, then flushes the producer.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        let mut counted: Option<Instant> = None;
        let mut announced: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if announced.is_none_or(|at| at.elapsed() >= self.poll) {
                if let Err(e) = self.announce().await {
                    tracing::warn!(error = %e, "queueing campaign events failed; retrying");
                }
                announced = Some(Instant::now());
            }
            let wait = match self.publish_once().await {
                Ok(published) if published > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    if counted.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        self.count_backlog().await;
                        counted = Some(Instant::now());
                    }
                    self.poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relaying the outbox failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }

    /// Queues the `opened` and `closed` events whose moment passed (opened first).
    async fn announce(&self) -> Result<(), RelayError> {
        let client = self.pool.get().await?;
        let opened = client
            .prepare_cached(include_str!("sql/campaigns_announce_opened.sql"))
            .await?;
        client.execute(&opened, &[&None::<Vec<Uuid>>]).await?;
        let closed = client
            .prepare_cached(include_str!("sql/campaigns_announce_closed.sql"))
            .await?;
        client.execute(&closed, &[]).await?;
        Ok(())
    }

    /// One round: the oldest unpublished rows, produced, acknowledged, marked. Returns how many.
    async fn publish_once(&self) -> Result<usize, RelayError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let select = tx
            .prepare_cached(include_str!("sql/outbox_select_unpublished.sql"))
            .await?;
        let rows = tx.query(&select, &[&self.batch]).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut sends = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<_, i64>("id")?);
            sends.push(self.send(self.envelope(row)?));
        }
        for sent in futures_util::future::join_all(sends).await {
            // One missing acknowledgement rolls the whole round back: its rows are published
            // again (the acknowledged ones twice, with the same event ids).
            sent.map_err(RelayError::Kafka)?;
        }
        let mark = tx
            .prepare_cached(include_str!("sql/outbox_update_published_by_ids.sql"))
            .await?;
        tx.execute(&mark, &[&ids]).await?;
        if self.notify {
            let queue = tx
                .prepare_cached(include_str!("sql/notifications_insert_by_outbox_ids.sql"))
                .await?;
            tx.execute(&queue, &[&ids]).await?;
        }
        tx.commit().await?;
        self.metrics.outbox_published.inc_by(ids.len() as u64);
        Ok(ids.len())
    }

    /// The record of one outbox row.
    fn envelope(&self, row: &tokio_postgres::Row) -> Result<Envelope<'_>, tokio_postgres::Error> {
        let event_id: Uuid = row.try_get("event_id")?;
        let campaign_id: Uuid = row.try_get("campaign_id")?;
        let kind: &str = row.try_get("kind")?;
        let millis = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let rfc3339 = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let campaign_event = |ce_type, kind: campaign_event::Kind| {
            let occurred_at: OffsetDateTime = row.try_get("occurred_at")?;
            let figure = |name| {
                row.try_get::<_, i32>(name)
                    .map(|n| u64::try_from(n).unwrap_or_default())
            };
            let message = CampaignEvent {
                event_id: event_id.to_string(),
                campaign_id: campaign_id.to_string(),
                kind: kind as i32,
                occurred_at_ms: millis(occurred_at),
                issued: figure("issued")?,
                total_stock: figure("total_stock")?,
            };
            Ok(Envelope {
                topic: &self.events_topic,
                key: campaign_id.to_string(),
                payload: message.encode_to_vec(),
                event_id: event_id.to_string(),
                ce_type,
                schema: topics::CAMPAIGN_EVENT_SCHEMA,
                time: rfc3339(occurred_at),
                traceparent: None,
            })
        };
        match kind {
            "campaign.opened" => {
                campaign_event(topics::CAMPAIGN_OPENED_TYPE, campaign_event::Kind::Opened)
            }
            "campaign.sold-out" => campaign_event(
                topics::CAMPAIGN_SOLD_OUT_TYPE,
                campaign_event::Kind::SoldOut,
            ),
            "campaign.closed" => {
                campaign_event(topics::CAMPAIGN_CLOSED_TYPE, campaign_event::Kind::Closed)
            }
            _ => {
                let coupon = IssuedCoupon {
                    event_id,
                    coupon_id: row.try_get("coupon_id")?,
                    campaign_id,
                    user_id: row.try_get("user_id")?,
                    seq: row.try_get("seq")?,
                    issued_at: row.try_get("issued_at")?,
                    expires_at: row.try_get("expires_at")?,
                };
                Ok(Envelope {
                    topic: &self.topic,
                    key: topics::record_key(&campaign_id.to_string(), &coupon.user_id),
                    payload: coupon.message().encode_to_vec(),
                    event_id: event_id.to_string(),
                    ce_type: topics::COUPON_ISSUED_TYPE,
                    schema: topics::COUPON_ISSUED_SCHEMA,
                    time: rfc3339(coupon.issued_at),
                    traceparent: row.try_get("traceparent")?,
                })
            }
        }
    }

    async fn send(&self, event: Envelope<'_>) -> Result<(), rdkafka::error::KafkaError> {
        // A traced admission continues here: a span per event, child of the ingress's produce
        // span, whose context the event carries on (or the stored one, when export is off).
        // The span lives until this function returns, so it covers the wait for Kafka.
        let mut trace = Vec::new();
        let _span = event.traceparent.as_ref().map(|parent| {
            let span = tracing::info_span!("relay.publish", otel.kind = "producer");
            service::tracing_context::set_parent(&span, [("traceparent", parent.as_bytes())]);
            trace = service::tracing_context::headers_of(&span)
                .into_iter()
                .collect();
            if trace.is_empty() {
                trace.push(("traceparent".to_owned(), parent.clone()));
            }
            span
        });
        let headers = service::kafka::event_headers(
            &service::kafka::Event {
                id: &event.event_id,
                ce_type: event.ce_type,
                time: &event.time,
                schema: event.schema,
            },
            trace,
        );
        let record = FutureRecord::to(event.topic)
            .key(&event.key)
            .payload(&event.payload)
            .headers(headers);
        match self.producer.send_result(record) {
            Err((e, _)) => Err(e),
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_canceled) => Err(rdkafka::error::KafkaError::Canceled),
            },
        }
    }

    async fn count_backlog(&self) {
        let Ok(client) = self.pool.get().await else {
            return;
        };
        let Ok(statement) = client
            .prepare_cached(include_str!("sql/outbox_count_unpublished.sql"))
            .await
        else {
            return;
        };
        if let Ok(row) = client.query_one(&statement, &[]).await {
            self.metrics.outbox_backlog.set(row.get::<_, i64>(0));
        }
    }
}

/// One record to publish.
struct Envelope<'a> {
    topic: &'a str,
    key: String,
    payload: Vec<u8>,
    event_id: String,
    ce_type: &'static str,
    schema: &'static str,
    time: String,
    traceparent: Option<String>,
}

/// The coupon of a `coupon.issued` outbox row.
struct IssuedCoupon {
    event_id: Uuid,
    coupon_id: Uuid,
    campaign_id: Uuid,
    user_id: String,
    seq: i32,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl IssuedCoupon {
    fn message(&self) -> CouponIssued {
        let issuance = IssuanceId {
            campaign: CampaignId(self.campaign_id),
            reservation: self.coupon_id,
        };
        let millis = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        CouponIssued {
            event_id: self.event_id.to_string(),
            issuance_id: issuance.to_string(),
            coupon_id: self.coupon_id.to_string(),
            campaign_id: self.campaign_id.to_string(),
            user_id: self.user_id.clone(),
            seq: u32::try_from(self.seq).unwrap_or_default(),
            issued_at_ms: millis(self.issued_at),
            expires_at_ms: millis(self.expires_at),
        }
    }
}
