//! Bearer token verification: HS256 with a shared secret in development, RS256 or ES256 public
//! keys from a JWKS in production. The accepted algorithm is tied to the configured key, so a
//! token cannot choose a weaker one (`none` and HS/RS confusion are refused).
//!
//! [`Verifier`] checks a token against a key set in memory. [`Keys`] (in `keys`) holds the
//! verifier in use and reloads the key set from its file or URL: at start, periodically (URL),
//! and when a token names an unknown key id. That reload is the one network call a request
//! can wait on (URL mode, once per minimum interval, single flight).

mod keys;

pub use keys::{Keys, jwks_url_is_allowed};

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use schema::ids::UserId;

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub admin: bool,
}

/// Why a token was refused. Shown to the caller as 401 with this text; never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm or key not accepted")]
    KeyRejected,
    #[error("invalid token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token lacks exp or a valid sub claim")]
    Claims,
    #[error("token issuer or audience not accepted")]
    Audience,
    #[error("token issued in the future")]
    IssuedInFuture,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the JWKS file: {0}")]
    Read(#[from] std::io::Error),
    #[error("cannot fetch the JWKS: {0}")]
    Fetch(String),
    #[error("the JWKS is not a JSON Web Key Set: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("JWKS key {index} is unusable: {reason}")]
    Key { index: usize, reason: String },
    #[error("the JWKS holds no RS256 or ES256 key")]
    Empty,
}

fn bearer(header: Option<&[u8]>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?;
    let token = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
        .ok_or(AuthError::Missing)?;
    let token = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
    Ok(token.trim())
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    iat: Option<u64>,
}

/// What every token must carry beyond a valid signature, `exp` and `sub`.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (at most 30).
    pub leeway_secs: u64,
    /// When set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// When set, `aud` is required and must contain it.
    pub audience: Option<String>,
}

/// A verification key and the one algorithm it accepts.
struct Key {
    algorithm: Algorithm,
    decoding: DecodingKey,
    validation: Validation,
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    /// Keys by `kid`; a key without `kid` is stored under the empty string.
    keys: HashMap<String, Key>,
    /// Development mode has one secret and no key ids: a token's `kid` is then ignored.
    ignore_kid: bool,
    leeway_secs: u64,
}

impl Verifier {
    /// Development mode: one HS256 shared secret.
    pub fn hs256(secret: &[u8], expect: &Expectations) -> Self {
        let key = Key::new(Algorithm::HS256, DecodingKey::from_secret(secret), expect);
        Verifier {
            keys: HashMap::from([(String::new(), key)]),
            ignore_kid: true,
            leeway_secs: expect.leeway_secs,
        }
    }

    /// Production mode: the RSA (RS256) and P-256 (ES256) keys of a JWKS file.
    pub fn from_jwks_file(path: &Path, expect: &Expectations) -> Result<Self, KeyError> {
        Self::from_jwks(&std::fs::read(path)?, expect)
    }

    /// Production mode: the RSA (RS256) and P-256 (ES256) keys of a JWKS document.
    pub fn from_jwks(document: &[u8], expect: &Expectations) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_slice(document)?;
        let mut keys = HashMap::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                // Symmetric and other curves are not accepted from a key set: skipping them
                // keeps HS/RS confusion impossible.
                _ => continue,
            };
            let decoding = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Key {
                index,
                reason: e.to_string(),
            })?;
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.insert(kid, Key::new(algorithm, decoding, expect));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Verifier {
            keys,
            ignore_kid: false,
            leeway_secs: expect.leeway_secs,
        })
    }

    /// Whether a token's `kid` names none of the keys (a key set refresh may know it).
    pub fn knows_kid(&self, token: &str) -> bool {
        match jsonwebtoken::decode_header(token) {
            Ok(header) => {
                self.ignore_kid || self.keys.contains_key(header.kid.as_deref().unwrap_or(""))
            }
            // Malformed: a refresh cannot help.
            Err(_) => true,
        }
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_header(&self, header: Option<&[u8]>) -> Result<Principal, AuthError> {
        self.verify(bearer(header)?)
    }

    /// Verifies a compact JWS and returns the caller.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // `kid` is only a map key: never a path, URL or query.
        let kid = header.kid.as_deref().unwrap_or("");
        let only_key = || {
            let usable = self.keys.len() == 1 && (kid.is_empty() || self.ignore_kid);
            usable.then(|| self.keys.values().next()).flatten()
        };
        let key = self
            .keys
            .get(kid)
            .or_else(only_key)
            .ok_or(AuthError::KeyRejected)?;
        if header.alg != key.algorithm {
            return Err(AuthError::KeyRejected);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &key.validation)
            .map_err(|e| map_error(e.kind()))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now + self.leeway_secs)
        {
            return Err(AuthError::IssuedInFuture);
        }
        let user = UserId::parse(&data.claims.sub).map_err(|_| AuthError::Claims)?;
        Ok(Principal {
            user,
            admin: data.claims.role.as_deref() == Some("admin"),
        })
    }
}

impl Key {
    fn new(algorithm: Algorithm, decoding: DecodingKey, expect: &Expectations) -> Self {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.leeway = expect.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        if let Some(issuer) = &expect.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &expect.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Key {
            algorithm,
            decoding,
            validation,
        }
    }
}

fn map_error(kind: &jsonwebtoken::errors::ErrorKind) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::KeyRejected,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" || claim == "aud" => {
            AuthError::Audience
        }
        ErrorKind::MissingRequiredClaim(_) => AuthError::Claims,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthError::Audience,
        // Every other kind is a token we could not parse or validate: refusing is always safe.
        _ => AuthError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn leeway(leeway_secs: u64) -> Expectations {
        Expectations {
            leeway_secs,
            ..Expectations::default()
        }
    }

    fn now() -> u64 {
        time::OffsetDateTime::now_utc().unix_timestamp() as u64
    }

    fn token(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    #[test]
    fn hs256_token_names_the_user_and_role() {
        let v = Verifier::hs256(b"dev-secret", &leeway(5));
        let t = token(
            Algorithm::HS256,
            b"dev-secret",
            serde_json::json!({"sub": "u1", "role": "admin", "exp": now() + 60}),
        );
        let p = v.verify(&t).expect("valid");
        assert_eq!(p.user.as_str(), "u1");
        assert!(p.admin);
    }

    #[test]
    fn refuses_wrong_secret_expired_missing_exp_and_other_hmac() {
        let v = Verifier::hs256(b"dev-secret", &leeway(0));
        let exp = now() + 60;
        let wrong = token(
            Algorithm::HS256,
            b"other-secret",
            serde_json::json!({"sub": "u", "exp": exp}),
        );
        assert_eq!(v.verify(&wrong), Err(AuthError::Signature));
        let expired = token(
            Algorithm::HS256,
            b"dev-secret",
            serde_json::json!({"sub": "u", "exp": now() - 10}),
        );
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));
        let no_exp = token(
            Algorithm::HS256,
            b"dev-secret",
            serde_json::json!({"sub": "u"}),
        );
        assert_eq!(v.verify(&no_exp), Err(AuthError::Claims));
        let hs512 = token(
            Algorithm::HS512,
            b"dev-secret",
            serde_json::json!({"sub": "u", "exp": exp}),
        );
        assert_eq!(v.verify(&hs512), Err(AuthError::KeyRejected));
        let future = token(
            Algorithm::HS256,
            b"dev-secret",
            serde_json::json!({"sub": "u", "exp": exp, "nbf": now() + 30}),
        );
        assert_eq!(v.verify(&future), Err(AuthError::NotYetValid));
    }

    #[test]
    fn refuses_alg_none_and_garbage() {
        let v = Verifier::hs256(b"dev-secret", &leeway(0));
        // {"alg":"none","typ":"JWT"} . {"sub":"u","exp":9999999999} . (empty signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(v.verify(none).is_err());
        assert_eq!(v.verify("garbage"), Err(AuthError::Malformed));
        assert_eq!(v.verify_header(None), Err(AuthError::Missing));
        assert_eq!(v.verify_header(Some(b"Basic abc")), Err(AuthError::Missing));
    }

    proptest::proptest! {
        /// Token decoding on hostile input: never a panic, never an acceptance.
        #[test]
        fn arbitrary_tokens_are_refused_without_panic(token in ".{0,400}", raw in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let v = Verifier::hs256(b"dev-secret", &leeway(5));
            proptest::prop_assert!(v.verify(&token).is_err());
            proptest::prop_assert!(v.verify_header(Some(&raw)).is_err());
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(&raw);
            proptest::prop_assert!(v.verify_header(Some(&bearer)).is_err());
        }

        /// Well-formed segments with arbitrary JSON inside: still refused without panic.
        #[test]
        fn arbitrary_json_segments_are_refused(header in "[ -~]{0,120}", claims in "[ -~]{0,200}", signature in "[A-Za-z0-9_-]{0,90}") {
            use base64::Engine as _;
            let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
            let token = format!("{}.{}.{signature}", b64(&header), b64(&claims));
            let v = Verifier::hs256(b"dev-secret", &leeway(5));
            proptest::prop_assert!(v.verify(&token).is_err());
        }
    }
}
