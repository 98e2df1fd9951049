//! `coupon-bench load`: an open-loop load generator for the benchmark. Requests leave on a fixed
//! schedule (rate × duration) whether or not earlier ones were answered, and each latency is
//! measured from its scheduled start, so a slow server cannot hide queueing (no coordinated
//! omission). Every request carries a different user's pre-minted token.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Campaign to request coupons of (`POST /v1/campaigns/{id}/issuances`).
    #[arg(long)]
    campaign: String,
    /// Offered requests per second.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Prefix of the user ids (`<prefix>-<n>`): a fresh prefix makes every user new.
    #[arg(long, default_value = "load")]
    users: String,
    #[command(flatten)]
    secret: service::dev_token::DevSecret,
    /// Sign with this PEM private key (the identity provider's kind: RS256 or ES256, `--alg`)
    /// instead of the HS256 development secret.
    #[arg(long, requires_all = ["alg", "kid"])]
    signing_key: Option<std::path::PathBuf>,
    /// The algorithm of `--signing-key`.
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// The key id the tokens name (`kid`), as the server's key set has it.
    #[arg(long)]
    kid: Option<String>,
    /// A process of the server under test (its pid): its CPU time over the run, per answered
    /// request, goes into the result (`server_cpu_us_per_request`).
    #[arg(long)]
    cpu_of: Option<u32>,
    /// Most requests in flight; a request that would exceed it is counted as dropped.
    #[arg(long, default_value_t = 4_096)]
    max_in_flight: usize,
    /// A label copied into the JSON result.
    #[arg(long, default_value = "")]
    label: String,
}

/// One run's figures, printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct Result {
    pub label: String,
    pub offered_rps: u32,
    pub achieved_rps: f64,
    pub requests: usize,
    pub dropped: usize,
    pub errors: usize,
    pub status: std::collections::BTreeMap<u16, usize>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// The server process's CPU time (user + system) over the run per answered request, in µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_request: Option<f64>,
    /// The token algorithm.
    pub alg: &'static str,
}

/// The identity provider's signing algorithms.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Alg {
    Rs256,
    Es256,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let total = (args.rate as usize) * (args.seconds as usize);
    let tokens = tokens(&args, total)?;
    let cpu_before = args.cpu_of.and_then(cpu_seconds);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url: Arc<str> =
        format!("{}/v1/campaigns/{}/issuances", args.base_url, args.campaign).into();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u16, Duration)>();
    let interval = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let started = Instant::now();
    let mut dropped = 0;
    for (n, token) in tokens.into_iter().enumerate() {
        let scheduled = started + interval * n as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
            dropped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (http, url, tx, in_flight) = (http.clone(), url.clone(), tx.clone(), in_flight.clone());
        tokio::spawn(async move {
            let status = match http.post(&*url).bearer_auth(token).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = tx.send((status, scheduled.elapsed()));
        });
    }
    drop(tx);
    let mut answers = Vec::with_capacity(total);
    while let Some(answer) = rx.recv().await {
        answers.push(answer);
    }
    let elapsed = started.elapsed();
    let answered = answers.iter().filter(|(status, _)| *status != 0).count();
    let cpu = cpu_before
        .zip(args.cpu_of.and_then(cpu_seconds))
        .map(|(before, after)| (after - before) * 1e6 / answered.max(1) as f64);
    let mut result = Result::of(args.label, args.rate, dropped, elapsed, answers);
    result.server_cpu_us_per_request = cpu;
    result.alg = match (&args.signing_key, args.alg) {
        (Some(_), Some(Alg::Rs256)) => "RS256",
        (Some(_), Some(Alg::Es256)) => "ES256",
        _ => "HS256",
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    service::metrics::cpu_seconds(&pid.to_string())
}

/// One token per request, each for a different user (`<prefix>-<n>`), signed with the HS256
/// development secret or `--signing-key`. Asymmetric signing is slow (about a millisecond an
/// RS256 token), so it runs on every core before the load starts.
fn tokens(args: &Args, total: usize) -> anyhow::Result<Vec<String>> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let sub = |n: usize| format!("{}-{n}", args.users);
    let Some(path) = &args.signing_key else {
        return (0..total)
            .map(|n| args.secret.mint(&sub(n), None, now))
            .collect::<std::result::Result<_, _>>()
            .context("minting tokens");
    };
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (alg, key) = match args.alg {
        Some(Alg::Rs256) => (
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
        ),
        _ => (
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(&pem)?,
        ),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = args.kid.clone();
    let mint = |n: usize| {
        let mut claims = serde_json::json!({"sub": sub(n), "iat": now, "exp": now + 3_600});
        if let Some(issuer) = &args.secret.issuer {
            claims["iss"] = issuer.as_str().into();
        }
        if let Some(audience) = &args.secret.audience {
            claims["aud"] = audience.as_str().into();
        }
        jsonwebtoken::encode(&header, &claims, &key)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = total.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..total)
            .step_by(chunk)
            .map(|from| scope.spawn(move || (from..(from + chunk).min(total)).map(mint).collect()))
            .collect();
        parts
            .into_iter()
            .map(|part| part.join().expect("minting thread"))
            .collect::<std::result::Result<Vec<Vec<String>>, _>>()
            .map(|parts| parts.concat())
            .context("signing tokens")
    })
}

impl Result {
    /// The figures of a run from its answers (status 0: no answer) and its wall time.
    fn of(
        label: String,
        offered_rps: u32,
        dropped: usize,
        elapsed: Duration,
        answers: Vec<(u16, Duration)>,
    ) -> Self {
        let mut status = std::collections::BTreeMap::new();
        let mut latencies = Vec::with_capacity(answers.len());
        for (code, latency) in answers {
            *status.entry(code).or_insert(0) += 1;
            latencies.push(latency);
        }
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len().saturating_sub(1)) as f64 * p) as usize)
                .map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
        };
        Result {
            label,
            offered_rps,
            achieved_rps: latencies.len() as f64 / elapsed.as_secs_f64(),
            requests: latencies.len(),
            dropped,
            errors: status
                .iter()
                .filter(|(code, _)| **code == 0 || **code >= 500)
                .map(|(_, n)| n)
                .sum(),
            status,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
            max_ms: pct(1.0),
            server_cpu_us_per_request: None,
            alg: "HS256",
        }
    }
}
