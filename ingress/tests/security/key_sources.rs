//! Where the keys come from: a key-set file read again on an unknown key id, and the identity
//! provider's key-set URL, fetched at start, on an unknown key id and periodically, and refused
//! when its certificate is not trusted.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::{AUDIENCE, ISSUER, keys_dir, now, post_with, rsa_operator_token, signed};
use crate::support::Stack;

/// Key rotation: a token naming a key id the loaded set lacks makes the ingress read the JWKS
/// file again, so a key added to the mounted file works without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_from_the_key_set_file() {
    let full: Value =
        serde_json::from_slice(&std::fs::read(keys_dir().join("jwks.json")).unwrap()).unwrap();
    let only_rsa = json!({"keys": [full["keys"][0].clone()]});
    let file = std::env::temp_dir().join(format!("coupon-jwks-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, only_rsa.to_string()).unwrap();
    let mut stack = Stack::ingress_with(&[
        &format!("--jwks-file={}", file.display()),
        "--jwks-refresh-min-interval-ms=1",
    ])
    .await;
    stack.admin_token = Some(rsa_operator_token());
    let campaign = stack.open_campaign(5, 1).await;
    let ec_token = signed(
        Algorithm::ES256,
        Some("ec-1"),
        &json!({"sub": "rotated", "iat": now(), "exp": now() + 600}),
    );
    assert_eq!(post_with(&stack, &campaign, &ec_token).await.status(), 401);
    std::fs::write(&file, full.to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(post_with(&stack, &campaign, &ec_token).await.status(), 202);
    std::fs::remove_file(&file).unwrap();
}

/// The identity provider's key set, served over HTTP from memory; `document` can change.
struct KeySetServer {
    url: String,
    document: std::sync::Arc<std::sync::Mutex<String>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeySetServer {
    async fn start(document: &Value) -> KeySetServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let shared = std::sync::Arc::new(std::sync::Mutex::new(document.to_string()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, counted) = (shared.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = served.lock().unwrap().clone();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        KeySetServer {
            url,
            document: shared,
            fetches,
            task,
        }
    }

    fn serve(&self, document: &Value) {
        *self.document.lock().unwrap() = document.to_string();
    }
}

impl Drop for KeySetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keys from the identity provider's JWKS URL: fetched at start (the operator's RS256 token
/// works), again on an unknown key id (a rotated key works), and periodically (a withdrawn key
/// stops working). An ingress whose key set cannot be fetched does not start, and a plain
/// `http://` URL to another host is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_jwks_url_and_follow_it() {
    let full: Value =
        serde_json::from_slice(&std::fs::read(keys_dir().join("jwks.json")).unwrap()).unwrap();
    let only_rsa = json!({"keys": [full["keys"][0].clone()]});
    let idp = KeySetServer::start(&only_rsa).await;
    let mut stack = Stack::ingress_with(&[
        &format!("--jwks-url={}", idp.url),
        "--jwks-refresh-min-interval-ms=1",
        "--jwks-refresh-secs=1",
    ])
    .await;
    assert_eq!(idp.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    stack.admin_token = Some(rsa_operator_token());
    let campaign = stack.open_campaign(100, 1).await;
    let ec_token = |user: &str| {
        signed(
            Algorithm::ES256,
            Some("ec-1"),
            &json!({"sub": user, "iat": now(), "exp": now() + 600}),
        )
    };

    // Rotation: the EC key is unknown until the provider publishes it.
    assert_eq!(
        post_with(&stack, &campaign, &ec_token("ec-a"))
            .await
            .status(),
        401
    );
    idp.serve(&full);
    assert_eq!(
        post_with(&stack, &campaign, &ec_token("ec-b"))
            .await
            .status(),
        202
    );

    // Withdrawal: gone from the provider, refused within the refresh interval.
    idp.serve(&only_rsa);
    let mut n = 0;
    testkit::eventually(Duration::from_secs(10), "the withdrawn key refused", || {
        n += 1;
        let token = ec_token(&format!("ec-late-{n}"));
        let stack = &stack;
        let campaign = &campaign;
        async move { (post_with(stack, campaign, &token).await.status() == 401).then_some(()) }
    })
    .await;
    assert_eq!(
        post_with(
            &stack,
            &campaign,
            &signed(
                Algorithm::RS256,
                Some("rsa-1"),
                &json!({"sub": "still-rsa", "iat": now(), "exp": now() + 600}),
            )
        )
        .await
        .status(),
        202,
        "the remaining key still works"
    );

    // No key set, no ingress; and keys only over https unless local.
    let closed = testkit::free_port();
    let unreachable = ingress::Config::from_args([
        "coupon-ingress".to_owned(),
        // Production settings: the key set's URL, and tokens bound to an issuer and audience.
        format!("--jwt-issuer={ISSUER}"),
        format!("--jwt-audience={AUDIENCE}"),
        format!("--jwks-url=http://127.0.0.1:{closed}/jwks.json"),
        format!("--redis-url={}", testkit::redis_url()),
        format!("--kafka-brokers={}", testkit::kafka_brokers()),
        format!("--topic-requested={}", stack.fixture.topic),
        format!("--database-url={}", stack.fixture.database_url),
    ])
    .unwrap();
    let Err(failed) = ingress::App::build(unreachable).await else {
        panic!("an ingress without its key set started");
    };
    assert!(format!("{failed:#}").contains("JWT_JWKS_URL"), "{failed:#}");
    let plain = ingress::Config::from_args([
        "coupon-ingress",
        "--jwks-url=http://idp.example.com/jwks.json",
    ])
    .expect_err("refused");
    assert!(plain.to_string().contains("JWT_JWKS_URL"), "{plain}");
}

/// The key-set URL over TLS: a server whose certificate no trusted authority signed (here a
/// throwaway self-signed one, served by `openssl s_server`) is refused, so the ingress does not
/// start; the error names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_server_with_an_untrusted_certificate_is_refused() {
    let dir = std::env::temp_dir().join(format!("coupon-tls-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=coupon-test-untrusted"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (dev/test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = testkit::free_port();
    let server = testkit::Proc::spawn(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
    );
    testkit::wait_port(port, "openssl s_server").await;

    // The keys are loaded first: nothing else is reached when that fails.
    let config = ingress::Config::from_args([
        "coupon-ingress".to_owned(),
        // Production settings: the key set's URL, and tokens bound to an issuer and audience.
        format!("--jwt-issuer={ISSUER}"),
        format!("--jwt-audience={AUDIENCE}"),
        format!("--jwks-url=https://127.0.0.1:{port}/jwks.json"),
    ])
    .unwrap();
    let Err(failed) = ingress::App::build(config).await else {
        panic!("keys from an untrusted server were accepted");
    };
    let message = format!("{failed:#}");
    eprintln!("start-up refused: {message}");
    assert!(message.contains("JWT_JWKS_URL"), "{message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
    server.kill();
    std::fs::remove_dir_all(&dir).unwrap();
}
