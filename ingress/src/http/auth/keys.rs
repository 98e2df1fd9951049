//! Where the key set comes from and when it is read again: a JWKS file, or a JWKS URL fetched
//! over https (no redirects, 5 s timeout, 1 MiB cap).

use std::path::Path;

use super::{AuthError, Expectations, KeyError, Principal, Verifier, bearer};

/// The verifier in use, and where a newer key set comes from: the JWKS file is read again when
/// a token names a key id the current set lacks (a rotation), at most once per `min_interval`
/// and by one request at a time, so a flood of unknown key ids costs one read per interval.
/// No lock is held across a read: while one is under way, other callers go on with the keys in
/// use instead of queueing behind it.
pub struct Keys {
    current: std::sync::RwLock<std::sync::Arc<Verifier>>,
    source: Option<Source>,
    expect: Expectations,
    /// When the last read started; `None` before the first.
    last_refresh: std::sync::Mutex<Option<std::time::Instant>>,
    /// Whether a read is under way.
    refreshing: std::sync::atomic::AtomicBool,
    min_interval: std::time::Duration,
    /// Key set reads after start-up.
    pub refreshes: std::sync::atomic::AtomicU64,
}

impl Keys {
    /// The key source the settings name: a JWKS file or URL, else the HS256 secret.
    pub async fn load(config: &crate::Config) -> anyhow::Result<Keys> {
        use anyhow::Context as _;
        let expect = expectations(config);
        if config.common.profile.is_production()
            && expect.roles.service_tokens == super::ServiceTokens::Refused
        {
            tracing::warn!(
                "JWT_SERVICE_AUDIENCE is not set: no token is accepted as the order service, so redeem and refund answer 403"
            );
        }
        let min_interval = std::time::Duration::from_millis(config.jwks_refresh_min_interval_ms);
        Ok(match (&config.jwks_file, &config.jwks_url) {
            (Some(path), _) => {
                Keys::jwks_file(path, expect, min_interval).context("loading JWT_JWKS_FILE")?
            }
            (None, Some(url)) => Keys::jwks_url(url, expect, min_interval)
                .await
                .context("loading JWT_JWKS_URL")?,
            (None, None) => Keys::hs256(config.hs256_secret().as_bytes(), expect),
        })
    }

    /// Development mode: one HS256 secret, nothing to refresh.
    pub fn hs256(secret: &[u8], expect: Expectations) -> Keys {
        Keys::with(
            Verifier::hs256(secret, &expect),
            None,
            expect,
            std::time::Duration::MAX,
        )
    }

    /// Production mode: the keys of a JWKS file, re-read on an unknown key id.
    pub fn jwks_file(
        path: &Path,
        expect: Expectations,
        min_interval: std::time::Duration,
    ) -> Result<Keys, KeyError> {
        let verifier = Verifier::from_jwks_file(path, &expect)?;
        Ok(Keys::with(
            verifier,
            Some(Source::File(path.to_owned())),
            expect,
            min_interval,
        ))
    }

    /// Production mode: the keys the identity provider publishes at `url`, fetched now (the
    /// ingress does not start without them), again on an unknown key id, and periodically so a
    /// withdrawn key stops working.
    pub async fn jwks_url(
        url: &str,
        expect: Expectations,
        min_interval: std::time::Duration,
    ) -> Result<Keys, KeyError> {
        let source = Source::url(url)?;
        let verifier = Verifier::from_jwks(&source.load().await?, &expect)?;
        Ok(Keys::with(verifier, Some(source), expect, min_interval))
    }

    fn with(
        verifier: Verifier,
        source: Option<Source>,
        expect: Expectations,
        min_interval: std::time::Duration,
    ) -> Keys {
        Keys {
            current: std::sync::RwLock::new(std::sync::Arc::new(verifier)),
            source,
            expect,
            last_refresh: std::sync::Mutex::new(None),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            min_interval,
            refreshes: Default::default(),
        }
    }

    fn current(&self) -> std::sync::Arc<Verifier> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Verifies an `Authorization` header value.
    pub async fn verify_header(&self, header: Option<&[u8]>) -> Result<Principal, AuthError> {
        let token = bearer(header)?;
        let verifier = self.current();
        match verifier.verify(token) {
            Err(AuthError::KeyRejected) if self.source.is_some() && !verifier.knows_kid(token) => {
                self.refresh().await;
                self.current().verify(token)
            }
            outcome => outcome,
        }
    }

    /// Re-reads the key set unless that happened within `min_interval` or another read is under
    /// way (then the caller goes on with the keys in use).
    pub async fn refresh(&self) {
        use std::sync::atomic::Ordering;
        let Some(source) = &self.source else { return };
        {
            let mut last = match self.last_refresh.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if last.is_some_and(|at| at.elapsed() < self.min_interval)
                || self.refreshing.swap(true, Ordering::AcqRel)
            {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        // Cleared however this ends, also when the waiting request is dropped mid-read.
        let _under_way = Flag(&self.refreshing);
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let loaded = match source.load().await {
            Ok(document) => Verifier::from_jwks(&document, &self.expect),
            Err(e) => Err(e),
        };
        match loaded {
            Ok(verifier) => {
                tracing::info!("JWKS loaded again");
                let mut current = match self.current.write() {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *current = std::sync::Arc::new(verifier);
            }
            Err(e) => {
                tracing::warn!(error = %e, "loading the JWKS again failed; keeping the current keys")
            }
        }
    }

    /// Whether the keys come from a URL (and so are loaded again periodically, see `App::build`).
    pub fn from_url(&self) -> bool {
        matches!(self.source, Some(Source::Url { .. }))
    }
}

/// Clears a flag when dropped.
struct Flag<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Flag<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Where the key set comes from.
enum Source {
    File(std::path::PathBuf),
    Url { url: String, http: reqwest::Client },
}

/// A key set larger than this is refused: real ones are a few kilobytes.
const MAX_JWKS_BYTES: usize = 1 << 20;

impl Source {
    /// An `https://` URL, or `http://` to this host only (a local identity provider in tests).
    fn url(url: &str) -> Result<Source, KeyError> {
        if !jwks_url_is_allowed(url) {
            return Err(KeyError::Fetch(
                "JWT_JWKS_URL must be https:// (or http:// to localhost)".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KeyError::Fetch(e.to_string()))?;
        Ok(Source::Url {
            url: url.to_owned(),
            http,
        })
    }

    async fn load(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            Source::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await
                    .map_err(|_| KeyError::Empty)?
                    .map_err(KeyError::Read)
            }
            Source::Url { url, http } => {
                let fetch = |e: reqwest::Error| KeyError::Fetch(causes(&e.without_url()));
                let mut response = http
                    .get(url)
                    .header(http::header::ACCEPT, "application/json")
                    .send()
                    .await
                    .map_err(fetch)?
                    .error_for_status()
                    .map_err(fetch)?;
                let mut document = Vec::new();
                while let Some(chunk) = response.chunk().await.map_err(fetch)? {
                    if document.len() + chunk.len() > MAX_JWKS_BYTES {
                        return Err(KeyError::Fetch("the JWKS is larger than 1 MiB".to_owned()));
                    }
                    document.extend_from_slice(&chunk);
                }
                Ok(document)
            }
        }
    }
}

/// An error with its causes, outermost first (a TLS failure is only named by its causes).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `https://…`, or `http://` to localhost, 127.0.0.1 or [::1].
pub fn jwks_url_is_allowed(url: &str) -> bool {
    if url.starts_with("https://") {
        return url.len() > "https://".len();
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// What tokens must carry and which roles they name, from the settings.
fn expectations(config: &crate::Config) -> Expectations {
    use super::{Roles, ServiceTokens};
    let service_tokens = match (&config.jwt_service_audience, config.common.profile) {
        (Some(audience), _) => ServiceTokens::ByRoleAndAudience(audience.clone()),
        (None, service::Profile::Development) => ServiceTokens::ByRole,
        (None, service::Profile::Production) => ServiceTokens::Refused,
    };
    Expectations {
        leeway_secs: config.jwt_leeway_secs,
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        roles: Roles {
            claim: config.jwt_role_claim.clone(),
            admin: config.jwt_admin_role.clone(),
            service: config.jwt_service_role.clone(),
            service_tokens,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_urls_are_https_or_local() {
        for allowed in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8081/jwks.json",
            "http://localhost/jwks",
            "http://[::1]:9/k",
        ] {
            assert!(jwks_url_is_allowed(allowed), "{allowed}");
        }
        for refused in [
            "http://idp.example.com/jwks.json",
            "http://127.0.0.1.evil.com/jwks",
            "http://localhost@evil.com/",
            "ftp://x",
            "https://",
            "",
            "/etc/jwks.json",
        ] {
            assert!(!jwks_url_is_allowed(refused), "{refused}");
        }
    }
}
