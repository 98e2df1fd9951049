//! The ingress's Prometheus metrics, served on the operations listener's `/metrics`. Every label takes its values from
//! a small fixed set (routes, status codes, outcomes), never from user input.

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use service::metrics::{Process, latency_histogram};

type Label = (&'static str, &'static str);

pub struct Metrics {
    registry: Registry,
    pub process: Process,
    http_requests: Family<[Label; 2], Counter>,
    http_duration: Family<[Label; 1], Histogram, fn() -> Histogram>,
    reservations: Family<[Label; 1], Counter>,
    redis_duration: Family<[Label; 1], Histogram, fn() -> Histogram>,
    produce: Family<[Label; 1], Counter>,
    produce_duration: Histogram,
    pub producer_queue: Gauge,
    pub journal_entries: Gauge,
    pub rolled_forward: Counter,
    pub connections_refused: Counter,
    pub shed: Counter,
    pub jwks_refreshes: Gauge,
    readiness_checks: Counter,
    dependency_up: Family<[Label; 1], Gauge>,
    /// Campaigns fenced now (this pod's view): admitting nobody until re-seeded.
    pub gate_fenced: Gauge,
    /// Fences this pod saw appear.
    pub gate_fences: Counter,
    /// Loss checks run because a script call answered NOSCRIPT.
    pub gate_secured: Counter,
    gate_reseeds: Counter,
    gate_fence_duration: Histogram,
    /// Long-polls parked now (`issue::outcomes`).
    pub issuance_waiters: Gauge,
    /// Parked long-polls woken (by their issuance's outcome, or all at once after a reconnect).
    pub issuance_wakeups: Counter,
    /// Times the outcome listener lost (or could not open) its PostgreSQL connection.
    pub outcome_listener_reconnects: Counter,
}

/// How a reservation ended, as counted.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Accepted,
    Duplicate,
    SoldOut,
    NotOpen,
    UnknownCampaign,
    /// The campaign is fenced (Redis may have lost its admissions).
    Fenced,
    /// An operator's change is being applied.
    Held,
    /// Redis failed or timed out.
    Unavailable,
}

/// What Kafka said about one produced event.
#[derive(Debug, Clone, Copy)]
pub enum Produced {
    Persisted,
    NotPersisted,
    Uncertain,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            process: Process::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            reservations: Family::default(),
            redis_duration: Family::new_with_constructor(latency_histogram),
            produce: Family::default(),
            produce_duration: latency_histogram(),
            producer_queue: Gauge::default(),
            journal_entries: Gauge::default(),
            rolled_forward: Counter::default(),
            connections_refused: Counter::default(),
            shed: Counter::default(),
            jwks_refreshes: Gauge::default(),
            readiness_checks: Counter::default(),
            dependency_up: Family::default(),
            gate_fenced: Gauge::default(),
            gate_fences: Counter::default(),
            gate_secured: Counter::default(),
            gate_reseeds: Counter::default(),
            gate_fence_duration: Histogram::new([
                1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
            ]),
            issuance_waiters: Gauge::default(),
            issuance_wakeups: Counter::default(),
            outcome_listener_reconnects: Counter::default(),
        };
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.registry = registry;
        metrics
    }

    /// Names and explains every series in the registry.
    fn register(&self, registry: &mut Registry) {
        let metrics = self;
        metrics.process.register(registry);
        registry.register(
            "coupon_http_requests",
            "HTTP requests answered, by route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "coupon_http_request_duration_seconds",
            "Time from request head to response, by route",
            metrics.http_duration.clone(),
        );
        registry.register(
            "coupon_reservations",
            "Reservation attempts by outcome",
            metrics.reservations.clone(),
        );
        registry.register(
            "coupon_redis_duration_seconds",
            "Redis round trips of the gate, by operation",
            metrics.redis_duration.clone(),
        );
        registry.register(
            "coupon_kafka_produce",
            "Produced events by Kafka's answer",
            metrics.produce.clone(),
        );
        registry.register(
            "coupon_kafka_produce_duration_seconds",
            "Time from produce to delivery report",
            metrics.produce_duration.clone(),
        );
        registry.register(
            "coupon_producer_queue_messages",
            "Events in the producer's queue awaiting a delivery report",
            metrics.producer_queue.clone(),
        );
        registry.register(
            "coupon_journal_entries",
            "Reservations of live campaigns awaiting Kafka's confirmation",
            metrics.journal_entries.clone(),
        );
        registry.register(
            "coupon_journal_rolled_forward",
            "Reservations re-produced by the sweeper",
            metrics.rolled_forward.clone(),
        );
        registry.register(
            "coupon_connections_refused",
            "Connections closed at once because INGRESS_MAX_CONNECTIONS were open",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "coupon_requests_shed",
            "Requests answered 503 at once because INGRESS_MAX_IN_FLIGHT were in progress",
            metrics.shed.clone(),
        );
        registry.register(
            "coupon_jwks_refreshes",
            "Re-reads of the JWKS prompted by unknown key ids since start",
            metrics.jwks_refreshes.clone(),
        );
        registry.register(
            "coupon_readiness_checks",
            "Background dependency checks run for /readyz (one Kafka metadata request each)",
            metrics.readiness_checks.clone(),
        );
        registry.register(
            "coupon_dependency_up",
            "Whether the last readiness check reached the dependency (1) or not (0)",
            metrics.dependency_up.clone(),
        );
        metrics.register_gate(registry);
        metrics.register_waiters(registry);
    }

    /// The series of long-polls and the listener that wakes them.
    fn register_waiters(&self, registry: &mut Registry) {
        registry.register(
            "coupon_issuance_waiters",
            "Long-polls on an issuance's outcome parked now",
            self.issuance_waiters.clone(),
        );
        registry.register(
            "coupon_issuance_wakeups",
            "Parked long-polls woken by an outcome notification (or all at once after a reconnect)",
            self.issuance_wakeups.clone(),
        );
        registry.register(
            "coupon_outcome_listener_reconnects",
            "Times the outcome listener lost or could not open its PostgreSQL connection",
            self.outcome_listener_reconnects.clone(),
        );
    }

    /// The series of the gate's loss checks and re-seeding.
    fn register_gate(&self, registry: &mut Registry) {
        let metrics = self;
        registry.register(
            "coupon_gate_fenced_campaigns",
            "Campaigns fenced now: Redis may have lost their admissions, nobody is admitted until re-seeded",
            metrics.gate_fenced.clone(),
        );
        registry.register(
            "coupon_gate_fences",
            "Fences this process saw appear (a Redis restart, failover, restore or lost keys)",
            metrics.gate_fences.clone(),
        );
        registry.register(
            "coupon_gate_loss_checks",
            "Loss checks run because a script call answered NOSCRIPT",
            metrics.gate_secured.clone(),
        );
        registry.register(
            "coupon_gate_reseeds",
            "Campaigns this process re-seeded from the caught-up ledger",
            metrics.gate_reseeds.clone(),
        );
        registry.register(
            "coupon_gate_fence_duration_seconds",
            "How long a campaign admitted nobody, from fence to re-seed",
            metrics.gate_fence_duration.clone(),
        );
    }

    /// A fenced campaign was re-seeded after `fenced_ms`.
    pub fn gate_reseeded(&self, fenced_ms: i64) {
        self.gate_reseeds.inc();
        self.gate_fence_duration
            .observe(fenced_ms.max(0) as f64 / 1_000.0);
    }

    pub fn request(&self, route: &'static str, status: u16, started: Instant) {
        self.http_requests
            .get_or_create(&[
                ("route", route),
                ("status", service::metrics::status_label(status)),
            ])
            .inc();
        self.http_duration
            .get_or_create(&[("route", route)])
            .observe(service::metrics::seconds_since(started));
    }

    pub fn reservation(&self, outcome: Outcome, started: Instant) {
        let label = match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::SoldOut => "sold_out",
            Outcome::NotOpen => "not_open",
            Outcome::UnknownCampaign => "unknown_campaign",
            Outcome::Fenced => "fenced",
            Outcome::Held => "held",
            Outcome::Unavailable => "unavailable",
        };
        self.reservations.get_or_create(&[("outcome", label)]).inc();
        self.redis("reserve", started);
    }

    pub fn redis(&self, op: &'static str, started: Instant) {
        self.redis_duration
            .get_or_create(&[("op", op)])
            .observe(service::metrics::seconds_since(started));
    }

    pub fn produced(&self, result: Produced, started: Instant) {
        let label = match result {
            Produced::Persisted => "persisted",
            Produced::NotPersisted => "not_persisted",
            Produced::Uncertain => "uncertain",
        };
        self.produce.get_or_create(&[("result", label)]).inc();
        self.produce_duration
            .observe(service::metrics::seconds_since(started));
    }

    /// One readiness check ran: which dependencies answered.
    pub fn readiness_checked(&self, redis: bool, kafka: bool, postgres: bool) {
        self.readiness_checks.inc();
        for (dependency, up) in [("redis", redis), ("kafka", kafka), ("postgres", postgres)] {
            self.dependency_up
                .get_or_create(&[("dependency", dependency)])
                .set(i64::from(up));
        }
    }

    /// The text exposition, with the process figures read now.
    pub fn render(&self) -> String {
        self.process.refresh();
        service::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
