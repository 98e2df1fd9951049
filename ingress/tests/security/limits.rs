//! Requests and connections beyond the ingress's limits: refused or shed at once, without
//! waiting and without changing anything. And nothing private on the public listener: metrics
//! only on the operations listener, readiness probes answered from a cached check.

use std::io::{Read, Write};
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused_and_change_nothing() {
    let stack = Stack::ingress_only().await;
    let campaign = stack.open_campaign(5, 1).await;
    let before = stack.fixture.footprint().await;
    let url = format!("{}/v1/campaigns/{campaign}/issuances", stack.base);
    let token = testkit::token("olga", None, 600);
    let big_header = stack
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("x-padding", "p".repeat(16 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(big_header.status(), 431);
    let mut many = stack.http.post(&url).bearer_auth(&token);
    for n in 0..100 {
        many = many.header(format!("x-h{n}"), "v");
    }
    assert_eq!(many.send().await.unwrap().status(), 431);
    let big_body = stack
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\":\"{}\"}}", "b".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(big_body.status(), 413);
    assert_eq!(stack.fixture.footprint().await, before);
    assert_eq!(stack.request(&campaign, "olga").await.status(), 202);
}

/// Slowloris: a connection that sends part of a head and stalls is closed after the header
/// read timeout, while other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_head_is_cut_off_while_others_are_served() {
    let stack = Stack::ingress_with(&["--header-read-timeout-ms=500"]).await;
    let campaign = stack.open_campaign(50, 1).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let stalled = tokio::task::spawn_blocking(move || {
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .write_all(b"POST /v1/campaigns/x/issuances HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut buffer = [0u8; 1024];
        // The server ends the connection: end of stream, a reset, or a 408 then end of stream.
        loop {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => continue,
            }
        }
    });
    for n in 0..20 {
        let response = stack.request(&campaign, &format!("patient-{n}")).await;
        assert_eq!(response.status(), 202);
    }
    let cut_after = stalled.await.unwrap();
    assert!(
        cut_after < Duration::from_secs(20),
        "the stalled connection stayed open for {cut_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after_and_change_nothing() {
    let stack = Stack::ingress_with(&[
        "--rate-limit-user-per-sec=1",
        "--rate-limit-user-burst=2",
        "--rate-limit-ip-per-sec=1",
        "--rate-limit-ip-burst=6",
        "--trusted-proxies=127.0.0.1/32,::1/128",
    ])
    .await;
    let campaign = stack.open_campaign(50, 1).await;
    let url = format!("{}/v1/campaigns/{campaign}/issuances", stack.base);
    let from = |client: &str, user: &str| {
        stack
            .http
            .post(&url)
            .bearer_auth(testkit::token(user, None, 600))
            .header("x-forwarded-for", format!("198.51.100.250, {client}"))
            .send()
    };
    // One user: past the burst of two, 429 (requests sent at once, so a slow machine cannot
    // refill the allowance between them).
    assert_eq!(from("192.0.2.1", "ursula").await.unwrap().status(), 202);
    let before = stack.fixture.footprint().await;
    let answers = futures_util::future::join_all(
        (0..6).map(|n| from(&format!("192.0.2.{}", 10 + n), "ursula")),
    )
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    assert!(
        statuses.iter().all(|s| [409, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 3,
        "{statuses:?}"
    );
    for answer in answers
        .iter()
        .map(|a| a.as_ref().unwrap())
        .filter(|a| a.status() == 429)
    {
        let retry: u64 = answer.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "Retry-After {retry}");
    }
    assert_eq!(
        stack.fixture.footprint().await,
        before,
        "refused requests changed nothing"
    );

    // One client address: past the burst of six, 429 for any user from it.
    let answers = futures_util::future::join_all(
        (0..12).map(|n| from("203.0.113.7", &format!("ip-user-{n}"))),
    )
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        statuses.iter().all(|s| [202, 429].contains(s)),
        "{statuses:?}"
    );
    assert!((6..=8).contains(&admitted), "{statuses:?}");
    let figures = stack.admin_campaign(&campaign).await;
    assert_eq!(
        figures["accepted"],
        1 + admitted,
        "only admitted requests reserved"
    );
    // Another address behind the same proxy is its own client (with a user the burst above did
    // not admit, whichever of its users got through).
    assert_eq!(
        from("203.0.113.8", "ip-user-other").await.unwrap().status(),
        202
    );
}

/// Load shedding: with every in-flight permit taken (a client dribbling its body), the next
/// request is answered 503 at once instead of waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_are_shed_at_once() {
    let stack = Stack::ingress_with(&["--max-in-flight=1"]).await;
    let campaign = stack.open_campaign(5, 1).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let token = testkit::token("slow-body", None, 600);
    let head = format!(
        "POST /v1/campaigns/{campaign}/issuances HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    // The holder's request waits for its body while holding the only permit. It holds it once
    // the server has answered nothing for a while (had it lost a race for the permit, it would
    // have been answered 503 at once).
    let holder = testkit::eventually(
        Duration::from_secs(10),
        "a request holding the permit",
        || {
            let address = address.clone();
            let head = head.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut holder = std::net::TcpStream::connect(&address).ok()?;
                    holder.write_all(head.as_bytes()).ok()?;
                    holder
                        .set_read_timeout(Some(Duration::from_millis(300)))
                        .ok()?;
                    let mut buffer = [0u8; 64];
                    match holder.read(&mut buffer) {
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            Some(holder)
                        }
                        _ => None,
                    }
                })
                .await
                .ok()
                .flatten()
            }
        },
    )
    .await;
    let shed = testkit::eventually(Duration::from_secs(10), "a shed request", || async {
        let response = stack.request(&campaign, "impatient").await;
        (response.status() == 503).then_some(response)
    })
    .await;
    assert!(shed.headers().contains_key("retry-after"));
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["detail"], "overloaded; retry");
    drop(holder);
    // Once the permit is back, requests go through.
    testkit::eventually(Duration::from_secs(10), "service again", || async {
        (stack.request(&campaign, "patient").await.status() == 202).then_some(())
    })
    .await;
}

/// The connection limit: past it, a new connection is closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed() {
    let stack = Stack::ingress_with(&["--max-connections=2"]).await;
    let address = stack.base.trim_start_matches("http://").to_owned();
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut extra = std::net::TcpStream::connect(&address).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut buffer = [0u8; 256];
        extra.read(&mut buffer)
    })
    .await
    .unwrap();
    assert!(
        matches!(outcome, Ok(0) | Err(_)),
        "the third connection was served: {outcome:?}"
    );
    // The operations listener has its own connections: the scrape gets through while the
    // public listener is full.
    let refused = sample(
        &scrape(&stack).await,
        "coupon_connections_refused_total",
        "",
    );
    assert!(refused >= Some(1.0), "{refused:?}");
    drop(held);
    testkit::eventually(Duration::from_secs(10), "health again", || async {
        let response = stack
            .http
            .get(format!("{}/healthz", stack.base))
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;
}

/// `/metrics` is not on the public listener (404, like any unknown path) but on the operations
/// listener, which also answers the probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_operations_listener_only() {
    let stack = Stack::ingress_only().await;
    let public = stack
        .http
        .get(format!("{}/metrics", stack.base))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
    let body = public.text().await.unwrap();
    assert!(
        !body.contains("coupon_"),
        "metrics on the public listener: {body}"
    );
    let metrics = stack
        .http
        .get(format!("{}/metrics", stack.ops))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let content_type = metrics.headers()["content-type"].to_str().unwrap();
    assert!(content_type.contains("openmetrics-text"), "{content_type}");
    let text = metrics.text().await.unwrap();
    let not_found = r#"route="other",status="404""#;
    assert_eq!(
        sample(&text, "coupon_http_requests_total", not_found),
        Some(1.0),
        "the public request was counted as no route:\n{text}"
    );
    for probe in ["/healthz", "/readyz"] {
        for base in [&stack.base, &stack.ops] {
            let status = stack
                .http
                .get(format!("{base}{probe}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{base}{probe}");
        }
    }
}

/// `/readyz` answers from the background dependency check (review M8): a flood of probes on
/// both listeners makes no Kafka metadata request of its own (the checks counted in the
/// metrics stay put), nor any Redis call (the ingress's private Redis counts its PINGs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readiness_probes_calls_no_dependency() {
    let redis = testkit::PrivateRedis::start().await;
    let stack = Stack::ingress_with(&[
        &format!("--redis-url={}", redis.url()),
        "--ready-check-interval-ms=60000",
    ])
    .await;
    let stack = &stack;
    let checks = || async {
        sample(&scrape(stack).await, "coupon_readiness_checks_total", "").unwrap_or(0.0)
    };
    let pings = || async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    testkit::eventually(Duration::from_secs(10), "the first check", || async {
        (checks().await >= 1.0).then_some(())
    })
    .await;
    let (checks_before, pings_before) = (checks().await, pings().await);
    let probes = (0..400).map(|n| {
        let base = if n % 4 == 0 { &stack.ops } else { &stack.base };
        let url = format!("{base}/readyz");
        async move { stack.http.get(url).send().await.unwrap().status() }
    });
    let statuses = futures_util::stream::iter(probes)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (checks_after, pings_after) = (checks().await, pings().await);
    // An interval that ends meanwhile allows one more check (one PING).
    assert!(
        checks_after - checks_before <= 1.0,
        "{checks_before} checks before 400 probes, {checks_after} after"
    );
    assert!(
        pings_after - pings_before <= 1,
        "{pings_before} PINGs before 400 probes, {pings_after} after"
    );
}

/// The background check alone notices a dependency going away and coming back: with Redis cut,
/// `/readyz` turns 503 on both listeners (and `coupon_dependency_up` says which), then 200 again
/// once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_through_the_background_check() {
    let url = testkit::redis_url();
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).unwrap();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        panic!("REDIS_URL is not plain TCP");
    };
    let proxy = testkit::FaultProxy::start((host.clone(), port)).await;
    let proxied = url.replacen(
        &format!("{host}:{port}"),
        &format!("127.0.0.1:{}", proxy.port),
        1,
    );
    assert_ne!(proxied, url);
    let stack = Stack::ingress_with(&[
        &format!("--redis-url={proxied}"),
        "--redis-timeout-ms=500",
        "--ready-check-interval-ms=200",
    ])
    .await;
    let ready = |status: u16| {
        let stack = &stack;
        async move {
            for base in [&stack.base, &stack.ops] {
                let response = stack.http.get(format!("{base}/readyz")).send().await.ok()?;
                if response.status() != status {
                    return None;
                }
            }
            Some(())
        }
    };
    ready(200).await.expect("ready at start");
    proxy.fail();
    testkit::eventually(Duration::from_secs(20), "not ready without Redis", || {
        ready(503)
    })
    .await;
    let problem: Value = stack
        .http
        .get(format!("{}/readyz", stack.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(problem["detail"], "redis is unreachable", "{problem}");
    let text = scrape(&stack).await;
    let down = r#"dependency="redis""#;
    assert_eq!(
        sample(&text, "coupon_dependency_up", down),
        Some(0.0),
        "{text}"
    );
    let kafka = r#"dependency="kafka""#;
    assert_eq!(
        sample(&text, "coupon_dependency_up", kafka),
        Some(1.0),
        "{text}"
    );
    proxy.restore();
    testkit::eventually(Duration::from_secs(30), "ready with Redis back", || {
        ready(200)
    })
    .await;
}

/// The operations listener's metrics.
async fn scrape(stack: &Stack) -> String {
    let response = stack
        .http
        .get(format!("{}/metrics", stack.ops))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the sample of metric `name` whose labels are exactly `labels` (as written in
/// the exposition, e.g. `route="other",status="404"`; empty for none).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.strip_prefix(' ')?.parse().ok())
}
