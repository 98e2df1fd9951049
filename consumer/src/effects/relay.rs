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
//! `opened` first, if not yet queued); the [`Announcer`], which the relay runs once per poll
//! interval, queues `opened` and `closed` once their moment passed. Each has one event id per
//! (campaign, kind), queued once under a row lock and a flag however many pods run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use schema::proto::{CampaignEvent, campaign_event};
use schema::time::{rfc3339, unix_ms};
use schema::topics;
use service::backoff::Backoff;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use super::Error;
use super::announce::Announcer;
use super::coupon::IssuedCoupon;
use crate::metrics::Metrics;

pub struct Relay {
    /// Connections to the ledger: one holds a round's transaction, and so the rows' locks.
    pool: deadpool_postgres::Pool,
    /// Idempotent with `acks=all`: a row is marked only once every in-sync replica has its
    /// event, and librdkafka's own retries never write it twice.
    producer: FutureProducer,
    /// `TOPIC_COUPON_ISSUED`, for `coupon.issued` rows.
    topic: String,
    /// `TOPIC_CAMPAIGN_EVENTS`, for `campaign.*` rows.
    events_topic: String,
    /// Most rows one round takes (`OUTBOX_BATCH`): bounds the transaction and the sends in flight.
    batch: i64,
    /// Wait after a round that found nothing, and the announcer's period (`OUTBOX_POLL_MS`).
    poll: Duration,
    /// Queue a webhook notification per published event.
    notify: bool,
    /// Queues campaign events whose moment passed; run from the relay's loop, so it needs no
    /// task or schedule of its own.
    announcer: Announcer,
    /// Published events and the backlog gauge.
    metrics: Arc<Metrics>,
}

impl Relay {
    pub fn new(
        config: &crate::Config,
        pool: deadpool_postgres::Pool,
        metrics: Arc<Metrics>,
    ) -> Result<Relay, rdkafka::error::KafkaError> {
        let producer = config
            .kafka
            .producer("coupon-relay")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Relay {
            announcer: Announcer::new(pool.clone()),
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
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut counted: Option<Instant> = None;
        let mut announced: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            if announced.is_none_or(|at| at.elapsed() >= self.poll) {
                if let Err(e) = self.announcer.announce().await {
                    tracing::warn!(error = %e, "queueing campaign events failed; retrying");
                }
                announced = Some(Instant::now());
            }
            let wait = match self.publish_once().await {
                Ok(published) if published > 0 => {
                    backoff.reset();
                    continue;
                }
                Ok(_) => {
                    backoff.reset();
                    if counted.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        self.count_backlog().await;
                        counted = Some(Instant::now());
                    }
                    self.poll
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relaying the outbox failed; retrying");
                    backoff.next_delay()
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

    /// One round: the oldest unpublished rows, produced, acknowledged, marked. Returns how many.
    async fn publish_once(&self) -> Result<usize, Error> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let select = tx
            .prepare_cached(include_str!("../sql/outbox_select_unpublished.sql"))
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
            sent.map_err(Error::Kafka)?;
        }
        let mark = tx
            .prepare_cached(include_str!("../sql/outbox_update_published_by_ids.sql"))
            .await?;
        tx.execute(&mark, &[&ids]).await?;
        if self.notify {
            let queue = tx
                .prepare_cached(include_str!(
                    "../sql/notifications_insert_by_outbox_ids.sql"
                ))
                .await?;
            tx.execute(&queue, &[&ids]).await?;
        }
        tx.commit().await?;
        self.metrics.outbox_published.inc_by(ids.len() as u64);
        Ok(ids.len())
    }

    /// The record of one outbox row.
    fn envelope(&self, row: &tokio_postgres::Row) -> Result<Envelope<'_>, Error> {
        use campaign_event::Kind;
        let kind: &str = row.try_get("kind")?;
        let envelope = match kind {
            "coupon.issued" => self.coupon_issued(row)?,
            "campaign.opened" => {
                self.campaign_event(row, topics::CAMPAIGN_OPENED_TYPE, Kind::Opened)?
            }
            "campaign.sold-out" => {
                self.campaign_event(row, topics::CAMPAIGN_SOLD_OUT_TYPE, Kind::SoldOut)?
            }
            "campaign.closed" => {
                self.campaign_event(row, topics::CAMPAIGN_CLOSED_TYPE, Kind::Closed)?
            }
            // The outbox's CHECK (migration V5) admits only the kinds above, so another one was
            // written by a newer version sharing this ledger during a rollout. Publishing it as
            // something else would mislead every consumer downstream: the round fails before
            // anything is sent, and the row waits for a relay that knows its kind.
            other => {
                return Err(Error::UnknownOutboxKind {
                    id: row.try_get("id")?,
                    kind: other.to_owned(),
                });
            }
        };
        Ok(envelope)
    }

    /// The `coupon.issued.v1` record of a `coupon.issued` row.
    fn coupon_issued(
        &self,
        row: &tokio_postgres::Row,
    ) -> Result<Envelope<'_>, tokio_postgres::Error> {
        let coupon = IssuedCoupon::from_row(row)?;
        let traceparent = row.try_get("traceparent")?;
        Ok(Envelope::coupon_issued(&self.topic, &coupon, traceparent))
    }

    /// The `coupon.campaign.events.v1` record of a `campaign.*` row.
    fn campaign_event(
        &self,
        row: &tokio_postgres::Row,
        ce_type: &'static str,
        kind: campaign_event::Kind,
    ) -> Result<Envelope<'_>, tokio_postgres::Error> {
        let event_id: Uuid = row.try_get("event_id")?;
        let campaign_id: Uuid = row.try_get("campaign_id")?;
        let occurred_at: OffsetDateTime = row.try_get("occurred_at")?;
        let figure = |name| {
            row.try_get::<_, i32>(name)
                .map(|n| u64::try_from(n).unwrap_or_default())
        };
        let message = CampaignEvent {
            event_id: event_id.to_string(),
            campaign_id: campaign_id.to_string(),
            kind: kind as i32,
            occurred_at_ms: unix_ms(occurred_at),
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
            subject: campaign_id.to_string(),
            time: rfc3339(occurred_at),
            traceparent: None,
        })
    }

    async fn send(&self, event: Envelope<'_>) -> Result<(), rdkafka::error::KafkaError> {
        // A traced admission continues here: a span per event, child of the ingress's produce
        // span, whose context the event carries on (or the stored one, when export is off).
        // The span lives until this function returns, so it covers the wait for Kafka.
        let mut trace = Vec::new();
        let _span = event.traceparent.as_ref().map(|parent| {
            let span = tracing::info_span!(
                "relay.publish",
                otel.name = %format!("send {}", event.topic),
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.operation.type = "send",
                messaging.operation.name = "send",
                messaging.destination.name = event.topic,
                messaging.message.id = event.event_id.as_str(),
            );
            service::tracing_context::set_parent(&span, [("traceparent", parent.as_bytes())]);
            trace = service::tracing_context::headers_of(&span)
                .into_iter()
                .collect();
            if trace.is_empty() {
                trace.push(("traceparent".to_owned(), parent.clone()));
            }
            span
        });
        match self.producer.send_result(event.record(trace)) {
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
            .prepare_cached(include_str!("../sql/outbox_count_unpublished.sql"))
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
pub struct Envelope<'a> {
    topic: &'a str,
    key: String,
    payload: Vec<u8>,
    event_id: String,
    ce_type: &'static str,
    schema: &'static str,
    /// `ce_subject`: the coupon's id, or the campaign's.
    subject: String,
    time: String,
    traceparent: Option<String>,
}

impl<'a> Envelope<'a> {
    /// The `coupon.issued.v1` record of `coupon` to `topic`: the one key, payload and event id
    /// of that coupon, whoever publishes it (this relay, or `couponctl republish`).
    pub fn coupon_issued(
        topic: &'a str,
        coupon: &IssuedCoupon,
        traceparent: Option<String>,
    ) -> Envelope<'a> {
        Envelope {
            topic,
            key: topics::record_key(&coupon.campaign_id.to_string(), &coupon.user_id),
            payload: coupon.message().encode_to_vec(),
            event_id: coupon.event_id.to_string(),
            ce_type: topics::COUPON_ISSUED_TYPE,
            schema: topics::COUPON_ISSUED_SCHEMA,
            subject: coupon.coupon_id.to_string(),
            time: rfc3339(coupon.issued_at),
            traceparent,
        }
    }

    /// `ce_id`.
    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    /// The record to produce: key, payload, and the event's headers after `first` (the trace
    /// context, or a republished record's mark).
    pub fn record<K, V>(
        &self,
        first: impl IntoIterator<Item = (K, V)>,
    ) -> FutureRecord<'_, String, Vec<u8>>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let headers = service::kafka::event_headers(
            &service::kafka::Event {
                id: &self.event_id,
                ce_type: self.ce_type,
                time: &self.time,
                schema: self.schema,
                subject: &self.subject,
            },
            first,
        );
        FutureRecord::to(self.topic)
            .key(&self.key)
            .payload(&self.payload)
            .headers(headers)
    }
}
