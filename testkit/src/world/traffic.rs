//! The traffic of a fault case: users who each request a few times in a row, their requests
//! spread over the world's ingress processes, retrying as a well-behaved client does: after a
//! 503 or 429 it waits what `Retry-After` says, after a cut connection a moment, for a bounded
//! time. Every attempt is kept with its instants, so a case can tell how long admissions paused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use super::World;
use crate::{Answer, Api};

/// How long a client keeps retrying one request.
pub const RETRY_FOR: Duration = Duration::from_secs(30);

/// One answer a client saw, retries included.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub user: String,
    /// 0 when the connection failed.
    pub status: u16,
    /// The `Retry-After` header, in seconds, when the answer carried one.
    pub retry_after: Option<u64>,
    pub sent: Instant,
    pub answered: Instant,
}

/// What a rush saw: the final answer of each request (what [`World::check`] takes) and every
/// attempt on the way.
#[derive(Debug, Default, Clone)]
pub struct Rush {
    pub answers: Vec<Answer>,
    pub attempts: Vec<Attempt>,
}

impl Rush {
    pub fn extend(&mut self, other: Rush) {
        self.answers.extend(other.answers);
        self.attempts.extend(other.attempts);
    }

    /// Final answers with this status.
    pub fn count(&self, status: u16) -> usize {
        self.answers.iter().filter(|a| a.status == status).count()
    }

    /// [`fence`] of this rush's attempts.
    pub fn fence(&self) -> Option<Duration> {
        fence(&self.attempts)
    }
}

/// The pause in admissions as clients saw it: from the first 503 with `Retry-After` to the
/// first 202 answering a request sent after it. `None` without such a 503 or such a 202.
pub fn fence(attempts: &[Attempt]) -> Option<Duration> {
    let first = attempts
        .iter()
        .filter(|a| a.status == 503 && a.retry_after.is_some())
        .map(|a| a.answered)
        .min()?;
    let next = attempts
        .iter()
        .filter(|a| a.status == 202 && a.sent >= first)
        .map(|a| a.answered)
        .min()?;
    Some(next - first)
}

impl World {
    /// Each user requests `times` times in a row (a 202 or a refusal ends one request, a 503 is
    /// retried); users run `concurrency` at once, and a user's `k`-th request goes to ingress
    /// process `(user index + k) % processes`. `progress` counts finished requests.
    pub async fn rush(
        &self,
        campaign: &str,
        users: Vec<String>,
        times: usize,
        concurrency: usize,
        progress: Arc<AtomicUsize>,
    ) -> Rush {
        let apis = self.apis();
        let rushes: Vec<Rush> = futures_util::stream::iter(users.into_iter().enumerate())
            .map(|(n, user)| {
                let (apis, progress) = (&apis, progress.clone());
                async move {
                    let mut rush = Rush::default();
                    for k in 0..times {
                        let api = apis[(n + k) % apis.len()];
                        let (answer, attempts) = api.request_retrying(campaign, &user).await;
                        progress.fetch_add(1, Ordering::SeqCst);
                        rush.answers.push(answer);
                        rush.attempts.extend(attempts);
                    }
                    rush
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut all = Rush::default();
        rushes.into_iter().for_each(|rush| all.extend(rush));
        all
    }
}

impl Api {
    /// One issuance request of `user`, retried for at most [`RETRY_FOR`] while it is answered
    /// 503 or 429 with `Retry-After` (after that many seconds) or its connection fails (after
    /// 200 ms). The final answer and every attempt.
    pub async fn request_retrying(&self, campaign: &str, user: &str) -> (Answer, Vec<Attempt>) {
        let url = format!("{}/v1/campaigns/{campaign}/issuances", self.base);
        let started = Instant::now();
        let mut attempts = Vec::new();
        loop {
            let sent = Instant::now();
            let response = self
                .http
                .post(&url)
                .bearer_auth(self.token_for(user, None))
                .send()
                .await;
            let (status, retry_after, body) = match response {
                Ok(response) => {
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    (status, retry_after, body)
                }
                Err(_) => (0, None, Value::Null),
            };
            attempts.push(Attempt {
                user: user.to_owned(),
                status,
                retry_after,
                sent,
                answered: Instant::now(),
            });
            let wait = match (status, retry_after) {
                (503 | 429, Some(secs)) => Some(Duration::from_secs(secs)),
                (0, _) => Some(Duration::from_millis(200)),
                _ => None,
            };
            match wait {
                Some(wait) if started.elapsed() + wait < RETRY_FOR => {
                    tokio::time::sleep(wait).await;
                }
                _ => {
                    let answer = Answer {
                        user: user.to_owned(),
                        status,
                        issuance_id: body["issuance_id"].as_str().map(str::to_owned),
                        elapsed: started.elapsed(),
                    };
                    return (answer, attempts);
                }
            }
        }
    }
}
