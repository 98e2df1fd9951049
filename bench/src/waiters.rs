//! `coupon-bench waiters`: parks many long-polls on the ingress, the way phones wait for their
//! outcome after a 202. Each of `count` users taps once (`POST …/issuances`, at most
//! `post_concurrency` at a time); every accepted tap then opens one
//! `GET /v1/issuances/{id}` with `Prefer: wait=<wait>`, all at once, each on its own connection.
//! The run ends when every long-poll has answered, and prints one JSON line: the answers, how
//! many the server really parked (`Preference-Applied`), and for each `issued` answer the time
//! from the coupon's `issued_at` (the ledger's transaction start) to the answer's arrival: an
//! upper bound of commit-to-wake-up.
//!
//! `loadtest/bench` pauses the consumer while the waiters park, so they stay parked until it
//! resumes, then measures memory and PostgreSQL's query rate with them parked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt as _;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the ingress.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Campaign the users tap (its stock should cover `count`).
    #[arg(long)]
    campaign: String,
    /// Users, one tap and one long-poll each.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Seconds each long-poll asks to wait (`Prefer: wait=N`).
    #[arg(long, default_value_t = 30)]
    wait: u64,
    /// Taps in flight at once while the users tap.
    #[arg(long, default_value_t = 256)]
    post_concurrency: usize,
    /// Prefix of the user ids (`<prefix>-<n>`).
    #[arg(long, default_value = "waiter")]
    users: String,
    #[command(flatten)]
    secret: service::dev_token::DevSecret,
    /// Seconds to pause between the taps and the long-polls (the benchmark reads the server's
    /// memory then, with the taps' state and no waiter).
    #[arg(long, default_value_t = 0)]
    pause: u64,
    /// A label copied into the JSON result.
    #[arg(long, default_value = "")]
    label: String,
}

/// One run's figures, printed as one JSON line.
#[derive(Debug, Serialize)]
struct Report {
    label: String,
    users: usize,
    taps: BTreeMap<u16, usize>,
    long_polls: usize,
    /// Long-polls the server answered with `Preference-Applied` (it honoured the wait).
    wait_applied: usize,
    /// The long-polls' final statuses (`error` for no answer).
    outcomes: BTreeMap<String, usize>,
    /// Long-poll duration, from its request to its answer.
    long_poll_p50_ms: f64,
    long_poll_p99_ms: f64,
    /// From the coupon's `issued_at` to the answer's arrival, over the `issued` answers.
    wake_p50_ms: f64,
    wake_p99_ms: f64,
    wake_max_ms: f64,
}

/// One long-poll's answer.
struct Answer {
    status: String,
    applied: bool,
    elapsed: Duration,
    /// Milliseconds from `issued_at` to arrival, for an `issued` answer.
    wake_ms: Option<f64>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let tokens: Vec<String> = (0..args.count)
        .map(|n| args.secret.mint(&format!("{}-{n}", args.users), None, now))
        .collect::<Result<_, _>>()
        .context("minting tokens")?;
    let taps_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{}/v1/campaigns/{}/issuances", args.base_url, args.campaign);
    let tapped: Vec<(u16, Option<(String, String)>)> = futures_util::stream::iter(tokens)
        .map(|token| tap(&taps_client, &url, &args.base_url, token))
        .buffer_unordered(args.post_concurrency)
        .collect()
        .await;
    let mut taps = BTreeMap::new();
    let mut accepted = Vec::new();
    for (status, location) in tapped {
        *taps.entry(status).or_insert(0) += 1;
        accepted.extend(location);
    }
    eprintln!("[waiters] {} taps accepted", accepted.len());
    tokio::time::sleep(Duration::from_secs(args.pause)).await;
    eprintln!("[waiters] parking the long-polls");

    // Every long-poll on a connection of its own, as phones would hold them.
    let polls_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.wait + 30))
        .pool_max_idle_per_host(accepted.len())
        .build()?;
    let prefer: Arc<str> = format!("wait={}", args.wait).into();
    let polls = accepted.into_iter().map(|(location, token)| {
        let (client, prefer) = (polls_client.clone(), prefer.clone());
        tokio::spawn(async move { long_poll(&client, &location, &token, &prefer).await })
    });
    let mut answers = Vec::new();
    for poll in polls.collect::<Vec<_>>() {
        answers.push(poll.await?);
    }
    println!(
        "{}",
        serde_json::to_string(&Report::of(&args, taps, answers))?
    );
    Ok(())
}

/// One tap: its status, and for a 202 the absolute `Location` with the user's token.
async fn tap(
    client: &reqwest::Client,
    url: &str,
    base: &str,
    token: String,
) -> (u16, Option<(String, String)>) {
    let Ok(response) = client.post(url).bearer_auth(&token).send().await else {
        return (0, None);
    };
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(|l| format!("{base}{l}"));
    (
        status,
        location.filter(|_| status == 202).map(|l| (l, token)),
    )
}

async fn long_poll(client: &reqwest::Client, url: &str, token: &str, prefer: &str) -> Answer {
    let started = Instant::now();
    let failed = |elapsed| Answer {
        status: "error".into(),
        applied: false,
        elapsed,
        wake_ms: None,
    };
    let Ok(response) = client
        .get(url)
        .bearer_auth(token)
        .header("Prefer", prefer)
        .send()
        .await
    else {
        return failed(started.elapsed());
    };
    let applied = response.headers().contains_key("preference-applied");
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return failed(started.elapsed());
    };
    let arrived = OffsetDateTime::now_utc();
    let status = body["status"].as_str().unwrap_or("unknown").to_owned();
    let wake_ms = body["coupon"]["issued_at"]
        .as_str()
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map(|issued| (arrived - issued).as_seconds_f64() * 1_000.0);
    Answer {
        status,
        applied,
        elapsed: started.elapsed(),
        wake_ms,
    }
}

impl Report {
    fn of(args: &Args, taps: BTreeMap<u16, usize>, answers: Vec<Answer>) -> Self {
        let mut outcomes = BTreeMap::new();
        let mut polls: Vec<f64> = Vec::with_capacity(answers.len());
        let mut wakes: Vec<f64> = Vec::new();
        let mut wait_applied = 0;
        for answer in &answers {
            *outcomes.entry(answer.status.clone()).or_insert(0) += 1;
            polls.push(answer.elapsed.as_secs_f64() * 1_000.0);
            wakes.extend(answer.wake_ms);
            wait_applied += usize::from(answer.applied);
        }
        Report {
            label: args.label.clone(),
            users: args.count,
            taps,
            long_polls: answers.len(),
            wait_applied,
            outcomes,
            long_poll_p50_ms: percentile(&mut polls, 0.50),
            long_poll_p99_ms: percentile(&mut polls, 0.99),
            wake_p50_ms: percentile(&mut wakes, 0.50),
            wake_p99_ms: percentile(&mut wakes, 0.99),
            wake_max_ms: percentile(&mut wakes, 1.0),
        }
    }
}

/// The `p` quantile (nearest rank below) of `values`; 0 when empty.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    values
        .get((values.len().saturating_sub(1) as f64 * p) as usize)
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_take_the_nearest_rank_below() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut values, 0.5), 50.0);
        assert_eq!(percentile(&mut values, 0.99), 99.0);
        assert_eq!(percentile(&mut values, 1.0), 100.0);
        assert_eq!(percentile(&mut [], 0.5), 0.0);
    }
}
