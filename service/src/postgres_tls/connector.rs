//! The rustls side of [`super::Settings`]: a tokio-postgres `MakeTlsConnect` whose certificate
//! check follows the `sslmode`, with errors that name PostgreSQL, the host and the cause.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use super::{Roots, Settings, SslMode};

/// Makes the TLS session of each new connection (pools clone it).
#[derive(Clone)]
pub struct Connector {
    /// `None` with `sslmode=disable`: tokio-postgres then never starts TLS.
    tls: Option<tokio_rustls::TlsConnector>,
    mode: SslMode,
    /// Where the trusted roots come from, for errors.
    roots: Arc<str>,
}

impl Connector {
    pub(super) fn new(settings: &Settings) -> Result<Connector, String> {
        let roots: Arc<str> = match &settings.roots {
            Roots::File(path) => format!("sslrootcert {}", path.display()).into(),
            Roots::System => "the system's roots".into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match settings.mode {
            SslMode::Disable => {
                return Ok(Connector {
                    tls: None,
                    mode: settings.mode,
                    roots,
                });
            }
            SslMode::Require if !settings.roots_given => Arc::new(Unverified(provider.clone())),
            mode => {
                let store = Arc::new(root_store(&settings.roots)?);
                let chain = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                    .build()
                    .map_err(|e| format!("PostgreSQL CA certificates ({roots}): {e}"))?;
                match mode {
                    SslMode::VerifyFull => chain,
                    _ => Arc::new(ChainOnly(chain)),
                }
            }
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS to PostgreSQL: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // PostgreSQL 17's protocol name, required by its direct TLS negotiation.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Connector {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
            mode: settings.mode,
            roots,
        })
    }
}

/// The CA certificates of `roots`; none usable is an error.
fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let certificates = match roots {
        Roots::File(path) => {
            let read = |e: rustls::pki_types::pem::Error| {
                format!("PostgreSQL sslrootcert {}: {e}", path.display())
            };
            CertificateDer::pem_file_iter(path)
                .map_err(read)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(read)?
        }
        Roots::System => rustls_native_certs::load_native_certs().certs,
    };
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(match roots {
            Roots::File(path) => format!(
                "PostgreSQL sslrootcert {} holds no CA certificate",
                path.display()
            ),
            Roots::System => "PostgreSQL: no system CA certificates found; set sslrootcert \
                              (or PGSSLROOTCERT) to the server's CA bundle"
                .to_owned(),
        });
    }
    Ok(store)
}

/// Why TLS to PostgreSQL failed: the host, the mode and the cause, never a password.
#[derive(Debug)]
pub struct TlsError(String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl<S> MakeTlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = Connect;
    type Error = TlsError;

    fn make_tls_connect(&mut self, host: &str) -> Result<Connect, TlsError> {
        let name = match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            // Only verify-full checks the name; the others need none to connect.
            Err(_) if self.mode != SslMode::VerifyFull => {
                ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())
            }
            Err(e) => {
                return Err(TlsError(format!(
                    "TLS to PostgreSQL (sslmode=verify-full): {host:?} is no host name to \
                     verify the certificate against: {e}"
                )));
            }
        };
        Ok(Connect {
            tls: self.tls.clone(),
            name,
            host: host.to_owned(),
            mode: self.mode,
            roots: self.roots.clone(),
        })
    }
}

/// The TLS handshake of one connection.
pub struct Connect {
    tls: Option<tokio_rustls::TlsConnector>,
    name: ServerName<'static>,
    host: String,
    mode: SslMode,
    roots: Arc<str>,
}

impl Connect {
    fn failed(&self, error: &io::Error) -> TlsError {
        let certificate = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .and_then(|e| match e {
                rustls::Error::InvalidCertificate(cause) => Some(cause),
                _ => None,
            });
        let why = match certificate {
            Some(CertificateError::UnknownIssuer) => format!(
                "the server's certificate is not signed by a CA of {} (set sslrootcert or \
                 PGSSLROOTCERT to the CA bundle that signed it)",
                self.roots
            ),
            Some(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "the server's certificate does not name this host (verify-full checks the \
                  host name: connect by a name the certificate lists)"
                .to_owned(),
            Some(_) => "the server's certificate is refused".to_owned(),
            None => "the handshake failed".to_owned(),
        };
        TlsError(format!(
            "TLS to PostgreSQL at {} (sslmode={}): {why}: {error}",
            self.host,
            self.mode.name()
        ))
    }
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream<S>, TlsError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let Some(tls) = self.tls.clone() else {
                return Err(TlsError("TLS to PostgreSQL: sslmode=disable".to_owned()));
            };
            match tls.connect(self.name.clone(), stream).await {
                Ok(stream) => Ok(TlsStream(stream)),
                Err(error) => {
                    let failed = self.failed(&error);
                    tracing::warn!(error = %failed, "TLS to PostgreSQL failed");
                    Err(failed)
                }
            }
        })
    }
}

/// A TLS session to PostgreSQL. No channel binding: SCRAM authenticates without `-PLUS`.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the host name is not checked (the
/// WebPKI verifier checks the chain first, so a name mismatch means the chain was good).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict =
            self.0
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` without `sslrootcert`: encrypted, any certificate accepted (libpq's meaning). The
/// handshake's signatures are still checked against the certificate presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
