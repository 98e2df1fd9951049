//! `couponctl republish`: publishes a campaign's `coupon.issued.v1` events again from the
//! ledger, for a team that starts reading after the topic's retention dropped them.
//!
//! Each event is rebuilt from its coupon row by the relay's own code
//! ([`consumer::effects::relay::Envelope::coupon_issued`]), so it carries the original event id
//! (`ce_id` = `event_id` = the coupon id), key, payload and headers; downstream readers that
//! de-duplicate on `ce_id` see a republished event as a redelivery. Records carry one more
//! header, [`REPUBLISHED_HEADER`] = `true`, and no `traceparent` (the admission's trace ended
//! long ago).
//!
//! The ledger is read in pages (keyset pagination on the coupons' unique index), one page in
//! flight at a time, so memory stays bounded however large the campaign. Every statement runs in
//! a read-only session: the ledger is never changed, and Redis is never contacted. Each page's
//! deliveries are awaited; a failed one stops the command with a non-zero exit. Running it again
//! is always safe: it only repeats events.

use std::time::Duration;

use anyhow::{Context, bail};
use consumer::effects::coupon::IssuedCoupon;
use consumer::effects::relay::Envelope;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use schema::ids::CampaignId;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::Client;

/// The header that marks a republished record (value `true`); the original records lack it.
pub const REPUBLISHED_HEADER: &str = "republished";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign whose coupons' events to publish again.
    #[arg(long)]
    campaign: String,
    /// The topic to produce to: the shared `coupon.issued.v1` topic, or a team's own replay
    /// topic. It must exist; nothing is created.
    #[arg(long, env = "TOPIC_COUPON_ISSUED", default_value = schema::topics::COUPON_ISSUED)]
    topic: String,
    /// Only coupons issued at or after this moment (RFC 3339, e.g. 2026-11-29T10:00:00Z).
    #[arg(long, value_parser = parse_rfc3339)]
    since: Option<OffsetDateTime>,
    /// Count the events that would be republished; connect to no broker, produce nothing.
    #[arg(long)]
    dry_run: bool,
    /// Coupons read from the ledger, and events in flight, at once.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    page_size: i64,
    #[command(flatten)]
    postgres: service::PostgresArgs,
    #[command(flatten)]
    kafka: service::KafkaArgs,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

pub async fn run(args: Args, profile: service::Profile) -> anyhow::Result<()> {
    let campaign: CampaignId = args
        .campaign
        .parse()
        .with_context(|| format!("--campaign {:?}", args.campaign))?;
    let db = args
        .postgres
        .clone()
        .in_profile(profile)
        .connect()
        .await
        .context("connecting to DATABASE_URL")?;
    // Every statement of this session is refused a write: republishing never changes the ledger.
    db.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await
        .context("making the ledger session read-only")?;
    let Some(row) = db
        .query_opt(
            include_str!("sql/campaigns_select_issued_by_id.sql"),
            &[&campaign.0],
        )
        .await?
    else {
        bail!("no campaign {campaign} in the ledger; nothing republished");
    };
    println!(
        "campaign {campaign}: {} coupon(s) in the ledger",
        row.get::<_, i32>(0)
    );
    let producer = match args.dry_run {
        true => None,
        false => Some(producer_for(&args.kafka, &args.topic).await?),
    };
    let pages = Pages {
        db: &db,
        campaign: &campaign,
        since: args.since,
        size: args.page_size,
    };
    let counted = pages
        .publish(producer.as_ref(), &args.topic)
        .await
        .with_context(|| format!("republishing campaign {campaign} to {}", args.topic))?;
    match producer {
        Some(_) => println!(
            "republished {} coupon.issued event(s) to {} in {} page(s); 0 failed",
            counted.events, args.topic, counted.pages
        ),
        None => println!(
            "dry run: {} coupon.issued event(s) would be republished to {}; nothing produced",
            counted.events, args.topic
        ),
    }
    Ok(())
}

/// The pipeline's producer settings (idempotent, `acks=all`), refusing to create `topic`:
/// a mistyped replay topic is an error, not a new topic.
async fn producer_for(kafka: &service::KafkaArgs, topic: &str) -> anyhow::Result<FutureProducer> {
    let producer: FutureProducer = kafka
        .producer("couponctl-republish")
        .set("allow.auto.create.topics", "false")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .context("creating the Kafka producer")?;
    let (client, name) = (producer.clone(), topic.to_owned());
    let partitions = tokio::task::spawn_blocking(move || {
        let metadata = client
            .client()
            .fetch_metadata(Some(&name), Duration::from_secs(10))?;
        Ok::<_, KafkaError>(
            metadata
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none())
                .map_or(0, |t| t.partitions().len()),
        )
    })
    .await?
    .with_context(|| {
        format!(
            "reading the metadata of topic {topic} from {}",
            kafka.brokers
        )
    })?;
    if partitions == 0 {
        bail!(
            "topic {topic} does not exist on {}; create it first (nothing republished)",
            kafka.brokers
        );
    }
    Ok(producer)
}

/// A campaign's coupons, page by page.
struct Pages<'a> {
    db: &'a Client,
    campaign: &'a CampaignId,
    since: Option<OffsetDateTime>,
    size: i64,
}

/// What a run published (or, dry, would have).
struct Counted {
    events: u64,
    pages: u64,
}

impl Pages<'_> {
    /// Every page in turn, each produced (unless `producer` is `None`: a dry run) and every
    /// delivery awaited before the next page is read.
    async fn publish(
        &self,
        producer: Option<&FutureProducer>,
        topic: &str,
    ) -> anyhow::Result<Counted> {
        let statement = self
            .db
            .prepare(include_str!("sql/coupons_select_page_by_campaign.sql"))
            .await?;
        // Before every coupon: user ids are never empty, and seq starts at 1.
        let mut after = (String::new(), 0_i32);
        let mut counted = Counted {
            events: 0,
            pages: 0,
        };
        loop {
            let rows = self
                .db
                .query(
                    &statement,
                    &[
                        &self.campaign.0,
                        &after.0,
                        &after.1,
                        &self.since,
                        &self.size,
                    ],
                )
                .await
                .context("reading the campaign's coupons")?;
            let Some(last) = rows.last() else {
                return Ok(counted);
            };
            after = (last.try_get("user_id")?, last.try_get("seq")?);
            let coupons = rows
                .iter()
                .map(IssuedCoupon::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(producer) = producer {
                produce_page(producer, topic, &coupons, counted.events).await?;
            }
            counted.events += coupons.len() as u64;
            counted.pages += 1;
        }
    }
}

/// Produces one page's events and waits for every acknowledgement. Any failure is an error
/// naming how many of the page failed, the first event id and cause, and how many went before.
async fn produce_page(
    producer: &FutureProducer,
    topic: &str,
    coupons: &[IssuedCoupon],
    delivered_before: u64,
) -> anyhow::Result<()> {
    let envelopes: Vec<Envelope<'_>> = coupons
        .iter()
        .map(|coupon| Envelope::coupon_issued(topic, coupon, None))
        .collect();
    let sends = envelopes.iter().map(|envelope| async move {
        let record = envelope.record([(REPUBLISHED_HEADER, "true")]);
        let outcome = match producer.send_result(record) {
            Err((e, _)) => Err(e),
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e),
                Err(_canceled) => Err(KafkaError::Canceled),
            },
        };
        outcome.map_err(|e| (envelope.event_id(), e))
    });
    let failed: Vec<(&str, KafkaError)> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if let Some((event_id, error)) = failed.first() {
        bail!(
            "{} of {} event(s) of this page were not acknowledged by Kafka (first: ce_id \
             {event_id}: {error}); {delivered_before} event(s) of earlier pages were; running \
             the command again is safe (readers de-duplicate on ce_id)",
            failed.len(),
            envelopes.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_rfc3339_only() {
        assert!(parse_rfc3339("2026-11-29T10:00:00Z").is_ok());
        assert!(parse_rfc3339("2026-11-29").is_err());
    }
}
