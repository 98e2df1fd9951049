//! Abuse limits that need state: request rates per user and per client address, and which
//! address a request comes from.
//!
//! The limits are per ingress process (GCRA via `governor`): with N pods behind a load
//! balancer a client gets up to N times the rate. They exist to stop floods from one source
//! cheaply, before any Redis or Kafka work; the gate's per-user limit still decides who gets a
//! coupon.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use ipnet::IpNet;

use crate::http::problem::Problem;

pub struct RateLimits {
    /// Keyed by a keyed hash of the user id: a drop brings hundreds of thousands of distinct
    /// users, and eight bytes per key keep the map small. The hash key is random per process,
    /// so nobody can pick user ids that collide on purpose.
    user: Option<DefaultKeyedRateLimiter<u64>>,
    user_hash: std::collections::hash_map::RandomState,
    ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_sec: u32,
    burst: u32,
) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Some(RateLimiter::dashmap(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl RateLimits {
    pub fn new(config: &crate::Config) -> Arc<RateLimits> {
        let limits = Arc::new(RateLimits {
            user: limiter(config.rate_limit_user_per_sec, config.rate_limit_user_burst),
            user_hash: Default::default(),
            ip: limiter(config.rate_limit_ip_per_sec, config.rate_limit_ip_burst),
            clock: DefaultClock::default(),
        });
        // Forget keys whose allowance is full again, so the maps hold only recent callers.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                if let Some(user) = &limits.user {
                    user.retain_recent();
                    user.shrink_to_fit();
                }
                if let Some(ip) = &limits.ip {
                    ip.retain_recent();
                    ip.shrink_to_fit();
                }
            }
        });
        limits
    }

    /// Counts one request of `user`; 429 when over the rate.
    pub fn user(&self, user: &str) -> Result<(), Problem> {
        match &self.user {
            Some(limiter) => {
                use std::hash::BuildHasher as _;
                self.verdict(limiter.check_key(&self.user_hash.hash_one(user)))
            }
            None => Ok(()),
        }
    }

    /// Counts one request from `address`; 429 when over the rate.
    pub fn address(&self, address: IpAddr) -> Result<(), Problem> {
        match &self.ip {
            Some(limiter) => self.verdict(limiter.check_key(&address)),
            None => Ok(()),
        }
    }

    fn verdict(
        &self,
        checked: Result<(), governor::NotUntil<<DefaultClock as Clock>::Instant>>,
    ) -> Result<(), Problem> {
        checked.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Problem::TooManyRequests {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u32,
            }
        })
    }
}

/// The client's address: the peer itself, unless the peer is a trusted proxy; then the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (entries further left are
/// whatever the client claimed, and cannot be trusted).
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.ip().to_canonical();
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for entry in value.split(',').rev() {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip.to_canonical();
                    if !is_trusted(&client) {
                        return client;
                    }
                }
                Err(_) => return client,
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let spoofed = headers(&["198.51.100.1, 192.0.2.7"]);
        assert_eq!(
            client_address(stranger, &spoofed, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(proxy, &spoofed, &trusted),
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "the right-most untrusted entry is the client"
        );
        let chained = headers(&["192.0.2.7", "10.9.9.9"]);
        assert_eq!(
            client_address(proxy, &chained, &trusted),
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "trusted hops are skipped"
        );
        assert_eq!(
            client_address(proxy, &headers(&["not-an-ip"]), &trusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_address(proxy, &HeaderMap::new(), &trusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    proptest::proptest! {
        /// Any `X-Forwarded-For` value: never a panic, and an untrusted peer is always its own
        /// client address.
        #[test]
        fn forwarded_for_never_panics(value in "[ -~]{0,200}", trusted_peer in proptest::bool::ANY) {
            let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
            let peer: SocketAddr = if trusted_peer { "10.0.0.1:1" } else { "192.0.2.1:1" }.parse().unwrap();
            let mut map = HeaderMap::new();
            if let Ok(v) = value.parse() {
                map.insert("x-forwarded-for", v);
            }
            let client = client_address(peer, &map, &trusted);
            if !trusted_peer {
                proptest::prop_assert_eq!(client, peer.ip());
            }
        }
    }
}
