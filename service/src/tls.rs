//! TLS for the HTTP clients (the JWKS fetch, webhooks, trace export): rustls with the ring
//! provider. Every process installs it before building a client; doing so twice is harmless.

/// Makes ring the process's default rustls provider, unless one is installed already.
pub fn install() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
