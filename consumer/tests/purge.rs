//! Retention on the real PostgreSQL: the purge deletes only `coupon.issued` outbox rows published
//! and notifications delivered longer ago than the retention, in batches, skipping rows another
//! transaction holds; and a redelivered issuance whose outbox row is gone queues nothing again.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use consumer::effects::purge::{Purged, Purger, Table};
use consumer::metrics::Metrics;
use consumer::persist::decode::Issuance;
use consumer::persist::store::Ledger;
use testkit::Fixture;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

const DAY: f64 = 86_400.0;
const RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// A migrated database with one campaign and coupons written by the consumer's own batch
/// transaction (each with its unpublished `coupon.issued` outbox row).
struct Setup {
    fixture: Fixture,
    db: tokio_postgres::Client,
    pool: deadpool_postgres::Pool,
    campaign: Uuid,
    issuances: Vec<Issuance>,
}

impl Setup {
    async fn new(coupons: usize) -> Setup {
        let fixture = Fixture::new(1).await;
        let db = fixture.db().await;
        let campaign = Uuid::now_v7();
        db.execute(
            "INSERT INTO campaigns (id, name, total_stock, starts_at, ends_at, discount_kind,
                                    discount_value, coupon_valid_days)
             VALUES ($1, 'retention', 1000, now() - interval '1 hour',
                     now() + interval '1 hour', 'fixed', 100, 7)",
            &[&campaign],
        )
        .await
        .unwrap();
        let pool = service::PostgresArgs {
            url: fixture.database_url.clone(),
            pool_wait_ms: 5_000,
            sslmode: None,
            sslrootcert: None,
            profile: service::Profile::Development,
        }
        .pool(4)
        .unwrap();
        let issuances: Vec<Issuance> = (0..coupons)
            .map(|n| Issuance {
                id: Uuid::now_v7(),
                campaign,
                user: format!("user-{n}"),
                seq: 1,
                requested_at: OffsetDateTime::now_utc(),
                traceparent: None,
            })
            .collect();
        let written = Ledger::new(pool.clone()).write(&issuances).await.unwrap();
        assert_eq!(written.inserted, coupons as u64);
        Setup {
            fixture,
            db,
            pool,
            campaign,
            issuances,
        }
    }

    fn coupon(&self, n: usize) -> Uuid {
        self.issuances[n].id
    }

    fn purger(&self, batch: usize, metrics: &Arc<Metrics>) -> Purger {
        Purger::with(self.pool.clone(), RETENTION, batch, metrics.clone())
    }

    /// Marks coupon `n`'s outbox row published `days` ago (and created a day before that).
    async fn published(&self, n: usize, days: f64) {
        self.db
            .execute(
                "UPDATE outbox
                 SET published_at = now() - make_interval(secs => $2),
                     created_at = now() - make_interval(secs => $2 + 86400)
                 WHERE event_id = $1",
                &[&self.coupon(n), &(days * DAY)],
            )
            .await
            .unwrap();
    }

    /// Queues coupon `n`'s notification `days` ago in `status`, delivered then if it is.
    async fn notification(&self, n: usize, status: &str, days: f64) {
        self.db
            .execute(
                "INSERT INTO notifications (delivery_id, event_id, coupon_id, status, attempts,
                                            next_attempt_at, created_at, delivered_at)
                 VALUES ($1, $1, $1, $2, 1, now() - make_interval(secs => $3),
                         now() - make_interval(secs => $3),
                         CASE WHEN $2 = 'delivered' THEN now() - make_interval(secs => $3) END)",
                &[&self.coupon(n), &status, &(days * DAY)],
            )
            .await
            .unwrap();
    }

    /// The coupons whose outbox row (or notification) is still there, by index.
    async fn left(&self, table: Table) -> Vec<usize> {
        let sql = match table {
            Table::Outbox => "SELECT event_id FROM outbox WHERE kind = 'coupon.issued'",
            Table::Notifications => "SELECT delivery_id FROM notifications",
        };
        let ids: Vec<Uuid> = self
            .db
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut left: Vec<usize> = (0..self.issuances.len())
            .filter(|n| ids.contains(&self.coupon(*n)))
            .collect();
        left.sort_unstable();
        left
    }

    async fn campaign_events(&self) -> i64 {
        self.db
            .query_one(
                "SELECT count(*) FROM outbox WHERE campaign_id = $1",
                &[&self.campaign],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// The purge's metric lines.
fn purged_metric(metrics: &Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|line| line.starts_with("coupon_outbox_purged_rows_total{"))
        .map(str::to_owned)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[tokio::test]
async fn purges_only_what_was_published_or_delivered_before_the_retention() {
    let setup = Setup::new(6).await;
    // Outbox: 0 and 3 published 8 days ago (purged), 1 an hour ago, 2 published just before
    // the cut-off, 4 and 5 never published (their rows are a day old, as created_at has it).
    setup.published(0, 8.0).await;
    setup.published(1, 1.0 / 24.0).await;
    setup.published(2, 6.9).await;
    setup.published(3, 30.0).await;
    setup
        .db
        .execute(
            "UPDATE outbox SET created_at = now() - interval '30 days' WHERE published_at IS NULL",
            &[],
        )
        .await
        .unwrap();
    // A campaign event published a month ago stays: its row is what queues it once.
    setup
        .db
        .execute(
            "INSERT INTO outbox (event_id, kind, campaign_id, issued, total_stock, occurred_at,
                                 published_at)
             VALUES (gen_random_uuid(), 'campaign.sold-out', $1, 6, 6, now(),
                     now() - interval '30 days')",
            &[&setup.campaign],
        )
        .await
        .unwrap();
    // Notifications: 0 delivered 8 days ago (purged), 1 an hour ago, 2 pending and 3 dead for
    // a month (kept: the operator replays dead ones), 4 delivered a month ago (purged).
    setup.notification(0, "delivered", 8.0).await;
    setup.notification(1, "delivered", 1.0 / 24.0).await;
    setup.notification(2, "pending", 30.0).await;
    setup.notification(3, "dead", 30.0).await;
    setup.notification(4, "delivered", 30.0).await;

    let campaign_events = setup.campaign_events().await;
    let metrics = Arc::new(Metrics::new());
    let (_running, stop) = watch::channel(false);
    let purged = setup.purger(100, &metrics).purge(&stop).await.unwrap();

    assert_eq!(
        purged,
        Purged {
            outbox: 2,
            notifications: 2
        }
    );
    assert_eq!(setup.left(Table::Outbox).await, [1, 2, 4, 5]);
    assert_eq!(setup.left(Table::Notifications).await, [1, 2, 3]);
    assert_eq!(setup.campaign_events().await, campaign_events);
    assert_eq!(
        purged_metric(&metrics),
        [
            r#"coupon_outbox_purged_rows_total{table="notifications"} 2"#,
            r#"coupon_outbox_purged_rows_total{table="outbox"} 2"#,
        ]
    );
    // A second round finds nothing more.
    let again = setup.purger(100, &metrics).purge(&stop).await.unwrap();
    assert_eq!(again, Purged::default());
}

#[tokio::test]
async fn deletes_batch_after_batch_until_less_than_a_batch_is_left() {
    let setup = Setup::new(25).await;
    for n in 0..25 {
        setup.published(n, 8.0).await;
        if n < 23 {
            setup.notification(n, "delivered", 8.0).await;
        }
    }
    let metrics = Arc::new(Metrics::new());
    let purger = setup.purger(10, &metrics);

    // One statement deletes one batch, the oldest first.
    assert_eq!(purger.delete_batch(Table::Outbox).await.unwrap(), 10);
    assert_eq!(setup.left(Table::Outbox).await.len(), 15);

    let (_running, stop) = watch::channel(false);
    let purged = purger.purge(&stop).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            outbox: 15,
            notifications: 23
        }
    );
    assert!(setup.left(Table::Outbox).await.is_empty());
    assert!(setup.left(Table::Notifications).await.is_empty());
    assert_eq!(
        purged_metric(&metrics),
        [
            r#"coupon_outbox_purged_rows_total{table="notifications"} 23"#,
            r#"coupon_outbox_purged_rows_total{table="outbox"} 25"#,
        ]
    );
}

#[tokio::test]
async fn skips_rows_another_transaction_holds_instead_of_waiting() {
    let setup = Setup::new(5).await;
    for n in 0..3 {
        setup.published(n, 8.0).await;
        setup.notification(n, "delivered", 8.0).await;
    }
    // Another transaction (a relay's round, a notifier's claim) holds coupon 0's rows.
    let mut holder = setup.fixture.db().await;
    let held = holder.transaction().await.unwrap();
    for sql in [
        "SELECT id FROM outbox WHERE event_id = $1 FOR UPDATE",
        "SELECT id FROM notifications WHERE delivery_id = $1 FOR UPDATE",
    ] {
        assert_eq!(held.query(sql, &[&setup.coupon(0)]).await.unwrap().len(), 1);
    }

    let metrics = Arc::new(Metrics::new());
    let purger = setup.purger(100, &metrics);
    let (_running, stop) = watch::channel(false);
    let purged = tokio::time::timeout(Duration::from_secs(10), purger.purge(&stop))
        .await
        .expect("the purge waited on a locked row")
        .unwrap();
    assert_eq!(
        purged,
        Purged {
            outbox: 2,
            notifications: 2
        }
    );
    assert_eq!(setup.left(Table::Outbox).await, [0, 3, 4]);
    assert_eq!(setup.left(Table::Notifications).await, [0]);

    // While a purge statement's delete of coupon 4's row is uncommitted, the relay takes and
    // marks the unpublished row (coupon 3's) at once: the purge never touches what it works on.
    setup.published(4, 8.0).await;
    let mut purging = setup.fixture.db().await;
    let purge_tx = purging.transaction().await.unwrap();
    let outbox_purge = include_str!("../src/sql/outbox_delete_published.sql");
    let retention = RETENTION.as_secs_f64();
    assert_eq!(
        purge_tx
            .execute(outbox_purge, &[&retention, &100_i64])
            .await
            .unwrap(),
        1,
        "coupon 4's row; coupon 0's is still held"
    );
    let relay_select = include_str!("../src/sql/outbox_select_unpublished.sql");
    let relay_mark = include_str!("../src/sql/outbox_update_published_by_ids.sql");
    let relay = setup.fixture.db().await;
    let round = async {
        let rows = relay.query(relay_select, &[&10_i64]).await.unwrap();
        let ids: Vec<i64> = rows.iter().map(|row| row.get("id")).collect();
        let events: Vec<Uuid> = rows.iter().map(|row| row.get("event_id")).collect();
        let marked = relay.execute(relay_mark, &[&ids]).await.unwrap();
        (events, marked)
    };
    let (events, marked) = tokio::time::timeout(Duration::from_secs(10), round)
        .await
        .expect("the relay waited on the purge");
    // Coupon 3's row, and the campaign's `opened` event the first batch queued.
    assert!(events.contains(&setup.coupon(3)), "{events:?}");
    assert_eq!(marked, events.len() as u64);
    purge_tx.rollback().await.unwrap();

    // Once released, the held rows go too.
    held.rollback().await.unwrap();
    let purged = purger.purge(&stop).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            outbox: 2,
            notifications: 1
        }
    );
    assert_eq!(setup.left(Table::Outbox).await, [3]);
}

#[tokio::test]
async fn a_redelivered_issuance_whose_outbox_row_was_purged_queues_nothing_again() {
    let setup = Setup::new(2).await;
    setup.published(0, 8.0).await;
    setup.notification(0, "delivered", 8.0).await;
    let metrics = Arc::new(Metrics::new());
    let (_running, stop) = watch::channel(false);
    let purged = setup.purger(100, &metrics).purge(&stop).await.unwrap();
    assert_eq!(
        purged,
        Purged {
            outbox: 1,
            notifications: 1
        }
    );

    // Kafka redelivers the first issuance (a rewound group, a replayed partition): the ledger
    // recognises it by its coupon, which retention never deletes.
    let ledger = Ledger::new(setup.pool.clone());
    let written = ledger.write(&setup.issuances[..1]).await.unwrap();
    assert_eq!((written.inserted, written.redelivered), (0, 1));
    assert_eq!(
        setup.left(Table::Outbox).await,
        [1],
        "no second coupon.issued row"
    );
    assert!(setup.left(Table::Notifications).await.is_empty());
    let coupons: i64 = setup
        .db
        .query_one("SELECT count(*) FROM coupons", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(coupons, 2);
}

#[tokio::test]
async fn the_consumer_runs_the_purge_beside_the_relay() {
    let setup = Setup::new(2).await;
    setup.published(0, 8.0).await;
    setup.notification(0, "delivered", 8.0).await;
    let fixture = &setup.fixture;
    let mut args = fixture.consumer_args();
    args.push("--outbox-retention-secs=86400".to_owned());
    let config = consumer::Config::from_args(args).unwrap();
    let persister = consumer::Persister::build(config).unwrap();
    let metrics = persister.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(persister.run(async {
        let _ = stopped.await;
    }));

    // The first round runs at start; the relay publishes coupon 1's row meanwhile (kept).
    testkit::eventually(
        Duration::from_secs(20),
        "the purge's first round",
        || async {
            let gone = setup.left(Table::Outbox).await == [1]
                && setup.left(Table::Notifications).await.is_empty();
            gone.then_some(())
        },
    )
    .await;
    assert_eq!(
        purged_metric(&metrics),
        [
            r#"coupon_outbox_purged_rows_total{table="notifications"} 1"#,
            r#"coupon_outbox_purged_rows_total{table="outbox"} 1"#,
        ]
    );
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the consumer stops in time")
        .unwrap()
        .unwrap();
}
