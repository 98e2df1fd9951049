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
///
/// Every `X-Forwarded-For` field counts, as one list in the order the fields came: a proxy
/// appends its entry to the last field or adds a field after the others, so read right to left
/// over all fields the entries run from the nearest hop to the client's own claims. Those left
/// of the client's entry are never read, whatever bytes they hold. Empty list elements are
/// skipped; `address:port` is read as the address. When every entry names a trusted proxy, the
/// left-most of them is the client (a caller inside the trusted network).
///
/// An entry that must be read but is no address (text that is not one, bytes that are not
/// visible ASCII) means the trusted chain names no client: the request is refused (400) rather
/// than counted against the proxy's address, which would throttle everyone behind it.
pub fn client_address(
    peer: SocketAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Result<IpAddr, Problem> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.ip().to_canonical();
    if !is_trusted(&peer) {
        return Ok(peer);
    }
    let fields: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    let mut client = peer;
    for entry in fields
        .iter()
        .rev()
        .flat_map(|field| field.rsplit(|b| *b == b','))
    {
        let entry = entry.trim_ascii();
        if entry.is_empty() {
            continue;
        }
        client = forwarded_address(entry).ok_or_else(|| {
            Problem::BadRequest(
                "X-Forwarded-For holds an entry that is not an IP address".to_owned(),
            )
        })?;
        if !is_trusted(&client) {
            return Ok(client);
        }
    }
    Ok(client)
}

/// One `X-Forwarded-For` entry: an IP address, optionally with a port (`192.0.2.7:443`,
/// `[2001:db8::1]:443`).
fn forwarded_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().unwrap()]
    }

    const PROXY: &str = "10.1.2.3:5000";

    fn from_proxy(values: &[&[u8]]) -> Result<IpAddr, Problem> {
        client_address(PROXY.parse().unwrap(), &headers(values), &trusted())
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let stranger: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let spoofed = headers(&[b"198.51.100.1, 192.0.2.7"]);
        assert_eq!(
            client_address(stranger, &spoofed, &trusted()),
            Ok(ip("203.0.113.9")),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            from_proxy(&[b"198.51.100.1, 192.0.2.7"]),
            Ok(ip("192.0.2.7")),
            "the right-most untrusted entry is the client"
        );
        assert_eq!(
            from_proxy(&[b"192.0.2.7", b"10.9.9.9"]),
            Ok(ip("192.0.2.7")),
            "trusted hops are skipped"
        );
        assert_eq!(from_proxy(&[]), Ok(ip("10.1.2.3")), "no header: the peer");
        assert_eq!(
            from_proxy(&[b"10.5.5.5, 10.6.6.6"]),
            Ok(ip("10.5.5.5")),
            "only trusted hops: the left-most of them"
        );
    }

    #[test]
    fn repeated_fields_are_read_as_one_list_from_the_right() {
        // The client sent its own field; the proxy added one after it.
        assert_eq!(
            from_proxy(&[b"198.51.100.1", b"192.0.2.7"]),
            Ok(ip("192.0.2.7")),
            "the client's own field does not decide"
        );
        assert_eq!(
            from_proxy(&[b"198.51.100.1, 10.2.2.2", b"10.9.9.9"]),
            Ok(ip("198.51.100.1")),
            "trusted hops in both fields are skipped, right to left"
        );
        assert_eq!(
            from_proxy(&[b"192.0.2.7, , ", b""]),
            Ok(ip("192.0.2.7")),
            "empty elements are skipped"
        );
        assert_eq!(
            from_proxy(&[b"192.0.2.7:4711"]),
            Ok(ip("192.0.2.7")),
            "a port is dropped"
        );
        assert_eq!(from_proxy(&[b"[2001:db8::1]:443"]), Ok(ip("2001:db8::1")));
        assert_eq!(
            from_proxy(&[b"::ffff:192.0.2.7"]),
            Ok(ip("192.0.2.7")),
            "an IPv4-mapped address is the IPv4 address"
        );
    }

    #[test]
    fn bytes_that_are_not_an_address_are_skipped_or_refused_never_the_proxy() {
        // Left of the client's entry: never read, whatever the bytes.
        assert_eq!(
            from_proxy(&[b"\xff\xfe, 192.0.2.7"]),
            Ok(ip("192.0.2.7")),
            "non-ASCII the client sent in the proxy's field"
        );
        assert_eq!(
            from_proxy(&[b"caf\xc3\xa9", b"192.0.2.7"]),
            Ok(ip("192.0.2.7")),
            "non-ASCII in a field of its own"
        );
        // Where the client's entry should be: refused, not the proxy's address.
        for bad in [
            &b"\xff"[..],
            b"not-an-ip",
            b"192.0.2.7, \xc3\xa9",
            b"unknown, 10.9.9.9",
        ] {
            let refused = from_proxy(&[bad]);
            assert!(
                matches!(refused, Err(Problem::BadRequest(_))),
                "{}: {refused:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Any `X-Forwarded-For` fields: never a panic; an untrusted peer is always its own
        /// client address; and behind a trusted proxy that appended the client's address, that
        /// address is the client whatever the client sent before it.
        #[test]
        fn forwarded_for_never_panics_and_the_appended_entry_wins(
            sent in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        proptest::strategy::Just(b','),
                        proptest::strategy::Just(b' '),
                        0x21u8..=0x7e,
                        0x80u8..=0xff
                    ],
                    0..60,
                ),
                0..4,
            ),
            own_field in proptest::bool::ANY,
        ) {
            let stranger: SocketAddr = "192.0.2.1:1".parse().unwrap();
            let mut map = HeaderMap::new();
            for field in &sent {
                map.append("x-forwarded-for", HeaderValue::from_bytes(field).unwrap());
            }
            proptest::prop_assert_eq!(
                client_address(stranger, &map, &trusted()),
                Ok(stranger.ip())
            );
            let _ = client_address(PROXY.parse().unwrap(), &map, &trusted());
            // The proxy appends what it saw, in a field of its own or to the last one.
            let appended = "198.51.100.77";
            let mut fields: Vec<Vec<u8>> = sent.clone();
            match fields.last_mut() {
                Some(last) if !own_field => last.extend_from_slice(format!(", {appended}").as_bytes()),
                _ => fields.push(appended.as_bytes().to_vec()),
            }
            let fields: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(from_proxy(&fields), Ok(ip(appended)));
        }
    }
}
