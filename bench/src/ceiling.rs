//! `coupon-bench ceiling`: the trivial server the benchmark measures the ingress against. Same
//! hyper version and connection settings as the ingress; it answers every request 202 with a
//! body of the ingress's size and does nothing else.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: std::net::SocketAddr,
}

const BODY: &str = r#"{"issuance_id":"0190000000007000800000000000000001900000000070008000000000000000","campaign_id":"01900000-0000-7000-8000-000000000000","status":"accepted"}"#;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("ceiling server on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_request| async {
                let mut response =
                    hyper::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                *response.status_mut() = hyper::StatusCode::ACCEPTED;
                Ok::<_, Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
