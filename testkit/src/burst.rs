//! Many users at once: one request per user with bounded concurrency, each answer logged as
//! the client saw it (a cut connection included), so a test can inject a fault mid-burst and
//! check afterwards that no answer was a lie.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;

use crate::Api;

/// One answer the client saw.
#[derive(Debug, Clone)]
pub struct Answer {
    pub user: String,
    /// 0 when the connection failed (the ingress was killed).
    pub status: u16,
    pub issuance_id: Option<String>,
    /// How long the answer took (in failure messages, to tell a slow 503 from a hang).
    pub elapsed: Duration,
}

impl Api {
    /// Sends one request per user with bounded concurrency; `progress` counts answers so a
    /// test can inject its fault mid-burst.
    pub async fn burst(
        &self,
        campaign: &str,
        users: Vec<String>,
        concurrency: usize,
        progress: Arc<AtomicUsize>,
    ) -> Vec<Answer> {
        let url = format!("{}/v1/campaigns/{campaign}/issuances", self.base);
        futures_util::stream::iter(users)
            .map(|user| {
                let (url, progress) = (&url, progress.clone());
                async move {
                    let answer = self.answer(url, user).await;
                    progress.fetch_add(1, Ordering::SeqCst);
                    answer
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await
    }

    async fn answer(&self, url: &str, user: String) -> Answer {
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .bearer_auth(self.token_for(&user, None))
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Answer {
                    user,
                    status,
                    issuance_id: body["issuance_id"].as_str().map(str::to_owned),
                    elapsed: started.elapsed(),
                }
            }
            Err(_) => Answer {
                user,
                status: 0,
                issuance_id: None,
                elapsed: started.elapsed(),
            },
        }
    }
}

/// Waits until `progress` reached `count` answers.
pub async fn after(progress: &AtomicUsize, count: usize) {
    crate::eventually(Duration::from_secs(60), "burst progress", || async {
        (progress.load(Ordering::SeqCst) >= count).then_some(())
    })
    .await;
}

/// Users `prefix-n` for every `n` of `range`.
pub fn users(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| format!("{prefix}-{n}")).collect()
}
