//! Where the webhook client may connect. A receiver must be on a public address: loopback,
//! link-local (the cloud metadata address 169.254.169.254 among them), unspecified, private,
//! shared, multicast and reserved ranges, in IPv4 and IPv6 (IPv4-mapped, -compatible, NAT64 and
//! 6to4 addresses judged by the IPv4 address they carry), are refused unless a network of
//! `WEBHOOK_ALLOWED_NETWORKS` contains them.
//!
//! The check runs on the addresses the host name resolves to, at every connection ([`Resolver`],
//! the client's DNS resolver), so a name that later resolves elsewhere (DNS rebinding) is
//! refused too; an address written in `WEBHOOK_URL` itself is checked when the settings are
//! read ([`check_url`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses the webhook client may reach.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `WEBHOOK_ALLOWED_NETWORKS`: non-public networks allowed all the same.
    pub allowed: Vec<IpNet>,
}

impl Policy {
    /// Parses `WEBHOOK_ALLOWED_NETWORKS`: CIDRs or single addresses, separated by commas.
    pub fn parse(networks: &str) -> Result<Policy, String> {
        let mut allowed = Vec::new();
        for item in networks.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let network = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("WEBHOOK_ALLOWED_NETWORKS: {item:?} is not a CIDR"))?;
            allowed.push(network);
        }
        Ok(Policy { allowed })
    }

    /// Why `ip` may not be reached (the kind of range it is in), or `Ok` when it is public or
    /// allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let Some(kind) = not_public(ip) else {
            return Ok(());
        };
        let canonical = ip.to_canonical();
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            Ok(())
        } else {
            Err(kind)
        }
    }
}

/// The kind of non-public range `ip` is in; `None` for a public address.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => not_public_v4(v4),
        IpAddr::V6(v6) => not_public_v6(v6),
    }
}

fn not_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        () if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        () if a == 0 => "unspecified",
        () if ip.is_loopback() => "loopback",
        () if ip.is_link_local() => "link-local",
        () if ip.is_private() => "private",
        () if a == 100 && (b & 0xc0) == 64 => "shared (carrier-grade NAT)",
        () if ip.is_multicast() => "multicast",
        () if a >= 240 => "reserved",
        () if a == 192 && b == 0 && c == 0 => "reserved",
        () if a == 198 && (b & 0xfe) == 18 => "reserved",
        () => return None,
    })
}

fn not_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.is_loopback() => Some("loopback"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local"),
        [first, ..] if first & 0xffc0 == 0xfec0 => Some("site-local"),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("private (unique local)"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast"),
        // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): the IPv4 address decides.
        [0, 0, 0, 0, 0, 0, high, low] | [0x64, 0xff9b, 0, 0, 0, 0, high, low] => {
            not_public_v4(embedded(high, low))
        }
        // 6to4 (2002:a.b.c.d::/48).
        [0x2002, high, low, ..] => not_public_v4(embedded(high, low)),
        // Teredo and documentation prefixes.
        [0x2001, 0, ..] | [0x2001, 0xdb8, ..] => Some("reserved"),
        _ => None,
    }
}

/// Checks `WEBHOOK_URL` as the settings are read: a URL, `https` in production, and an address
/// written in it must pass the policy (a host name is checked at each connection instead).
pub fn check_url(url: &str, production: bool, policy: &Policy) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|_| "WEBHOOK_URL is not a valid URL".to_owned())?;
    match parsed.scheme() {
        "https" => {}
        "http" if !production => {}
        "http" => {
            return Err(
                "WEBHOOK_URL must be https:// in production (http:// needs COUPON_ENV=development)"
                    .to_owned(),
            );
        }
        _ => return Err("WEBHOOK_URL must be an https:// or http:// URL".to_owned()),
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "WEBHOOK_URL names no host".to_owned())?;
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>()
        && let Err(kind) = policy.check(ip)
    {
        return Err(format!(
            "WEBHOOK_URL names a {kind} address; list its network in WEBHOOK_ALLOWED_NETWORKS to allow it"
        ));
    }
    Ok(())
}

/// A connection the policy refused: every address the host resolved to is non-public.
#[derive(Debug)]
pub struct Refused {
    kind: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "webhook address refused: the host resolves to a {} address (see WEBHOOK_ALLOWED_NETWORKS)",
            self.kind
        )
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The refusal somewhere in an error's causes, if that is why it failed.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(refused) = error.downcast_ref::<Refused>() {
                return Some(refused);
            }
            cause = error.source();
        }
        None
    }
}

/// The webhook client's DNS resolver: the system's, keeping only the addresses the policy
/// allows. None left is a [`Refused`] error, counted in `refused`.
pub struct Resolver {
    pub policy: Arc<Policy>,
    pub refused: Counter,
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let refused = self.refused.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let mut kind = None;
            let allowed: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| match policy.check(addr.ip()) {
                    Ok(()) => true,
                    Err(k) => {
                        kind.get_or_insert(k);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                refused.inc();
                let kind = kind.unwrap_or("unresolvable");
                return Err(Box::new(Refused { kind }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn refuses_every_non_public_range_in_both_families() {
        for (address, kind) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("169.254.169.254", "the cloud metadata address"),
            ("169.254.1.1", "link-local"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fe80::1", "link-local"),
            ("fd00:ec2::254", "private (unique local)"),
            ("fc00::1", "private (unique local)"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "the cloud metadata address"),
            ("::ffff:10.0.0.1", "private"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "the cloud metadata address"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(not_public(ip(address)), Some(kind), "{address}");
            assert_eq!(Policy::default().check(ip(address)), Err(kind), "{address}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(not_public(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_admits_its_networks_only() {
        let policy = Policy::parse(" 127.0.0.1/32, 10.0.0.0/8 ,fd00::/8,").expect("valid");
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("10.200.0.1")), Ok(()));
        assert_eq!(policy.check(ip("fd12::1")), Ok(()));
        assert_eq!(policy.check(ip("127.0.0.2")), Err("loopback"));
        assert_eq!(policy.check(ip("::1")), Err("loopback"));
        assert_eq!(
            policy.check(ip("169.254.169.254")),
            Err("the cloud metadata address")
        );
        assert_eq!(
            Policy::parse("192.168.0.7")
                .expect("one address")
                .allowed
                .len(),
            1
        );
        assert!(Policy::parse("").expect("empty").allowed.is_empty());
        assert!(Policy::parse("10.0.0.0/33").is_err());
        assert!(Policy::parse("localhost").is_err());
    }

    #[test]
    fn the_url_must_be_https_in_production_and_name_no_refused_address() {
        let none = Policy::default();
        let loopback = Policy::parse("127.0.0.0/8,::1").expect("valid");
        assert_eq!(
            check_url("https://hooks.example.com/c", true, &none),
            Ok(())
        );
        assert!(check_url("http://hooks.example.com/c", true, &none).is_err());
        assert_eq!(
            check_url("http://hooks.example.com/c", false, &none),
            Ok(())
        );
        assert!(check_url("ftp://hooks.example.com/c", false, &none).is_err());
        assert!(check_url("not a url", false, &none).is_err());
        for refused in [
            "https://127.0.0.1:8443/c",
            "https://[::1]/c",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:169.254.169.254]/",
            "https://10.0.0.5/c",
            "https://0.0.0.0/c",
        ] {
            let problem = check_url(refused, true, &none).expect_err(refused);
            assert!(problem.contains("WEBHOOK_ALLOWED_NETWORKS"), "{problem}");
        }
        assert_eq!(
            check_url("https://127.0.0.1:8443/c", true, &loopback),
            Ok(())
        );
        assert_eq!(check_url("https://[::1]/c", true, &loopback), Ok(()));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        let resolver = Resolver {
            policy: Arc::new(Policy::default()),
            refused: Counter::default(),
        };
        let name: Name = "localhost".parse().expect("a name");
        let error = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(error) => error,
        };
        assert!(Refused::find(error.as_ref()).is_some(), "{error}");
        assert_eq!(resolver.refused.get(), 1);
        let allowed = Resolver {
            policy: Arc::new(Policy::parse("127.0.0.0/8,::1").expect("valid")),
            refused: Counter::default(),
        };
        let name: Name = "localhost".parse().expect("a name");
        let addresses: Vec<SocketAddr> = allowed.resolve(name).await.expect("allowed").collect();
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(|a| a.ip().is_loopback()));
    }
}
