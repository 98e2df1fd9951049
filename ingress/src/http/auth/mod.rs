//! Bearer token verification: HS256 with a shared secret in development, RS256 or ES256 public
//! keys from a JWKS in production. The accepted algorithm is tied to the configured key, so a
//! token cannot choose a weaker one (`none` and HS/RS confusion are refused).
//!
//! [`Verifier`] checks a token against a key set in memory and says who calls: an end user, an
//! operator (`admin`) or the order service (`service`), from a configurable role claim. [`Keys`]
//! (in `keys`) holds the verifier in use and reloads the key set from its file or URL: at start,
//! periodically (URL), and when a token names an unknown key id. That reload is the one network
//! call a request can wait on (URL mode, once per minimum interval, single flight); `jwk` reads a
//! key set one key at a time.

mod claims;
mod jwk;
mod keys;

use claims::Claims;
pub use claims::{Expectations, Roles, ServiceTokens};
pub use keys::{Keys, jwks_url_is_allowed};

use std::collections::HashMap;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use schema::ids::UserId;

/// What a verified caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An end user (the phone): issuance, status, their coupons.
    User,
    /// An operator: the `/v1/admin` routes.
    Admin,
    /// The order service: redeem and refund, for any user.
    Service,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: UserId,
    pub role: Role,
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
    #[error("the JWKS holds no usable RS256 or ES256 signing key")]
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
    expect: Expectations,
}

impl Verifier {
    /// Development mode: one HS256 shared secret.
    pub fn hs256(secret: &[u8], expect: &Expectations) -> Self {
        let key = Key::new(Algorithm::HS256, DecodingKey::from_secret(secret), expect);
        Verifier {
            keys: HashMap::from([(String::new(), key)]),
            ignore_kid: true,
            expect: expect.clone(),
        }
    }

    /// Production mode: the RSA (RS256) and P-256 (ES256) keys of a JWKS file.
    pub fn from_jwks_file(path: &Path, expect: &Expectations) -> Result<Self, KeyError> {
        Self::from_jwks(&std::fs::read(path)?, expect)
    }

    /// Production mode: the RSA (RS256, at least 2048 bits) and P-256 (ES256) signing keys of a
    /// JWKS document; keys we cannot use are skipped.
    pub fn from_jwks(document: &[u8], expect: &Expectations) -> Result<Self, KeyError> {
        let keys = jwk::usable_keys(document)?
            .into_iter()
            .map(|key| (key.kid, Key::new(key.algorithm, key.decoding, expect)))
            .collect();
        Ok(Verifier {
            keys,
            ignore_kid: false,
            expect: expect.clone(),
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
            .is_some_and(|iat| iat > now + self.expect.leeway_secs)
        {
            return Err(AuthError::IssuedInFuture);
        }
        self.expect.principal(data.claims)
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
        let audiences = expect.audiences();
        if !audiences.is_empty() {
            validation.set_audience(&audiences);
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
        assert_eq!(p.role, Role::Admin);
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

    fn production(service_tokens: ServiceTokens) -> Expectations {
        Expectations {
            leeway_secs: 5,
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("coupons".to_owned()),
            roles: Roles {
                service_tokens,
                ..Roles::default()
            },
        }
    }

    fn claims(sub: &str, role: serde_json::Value, aud: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"sub": sub, "role": role, "aud": aud,
            "iss": "https://idp.example", "exp": now() + 60})
    }

    #[test]
    fn the_order_service_needs_its_role_and_in_production_its_audience() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let expect = production(ServiceTokens::ByRoleAndAudience("orders".to_owned()));
        let v = Verifier::hs256(secret, &expect);
        let role = |c: serde_json::Value| {
            v.verify(&token(Algorithm::HS256, secret, c))
                .map(|p| p.role)
        };
        assert_eq!(
            role(claims("svc", "service".into(), "orders".into())),
            Ok(Role::Service)
        );
        // A user's token claiming the role, without the service audience: only a user.
        assert_eq!(
            role(claims("u", "service".into(), "coupons".into())),
            Ok(Role::User)
        );
        // The service audience alone opens no user or operator route.
        assert_eq!(
            role(claims("u", "admin".into(), "orders".into())),
            Err(AuthError::Audience)
        );
        assert_eq!(
            role(claims("u", "admin".into(), "coupons".into())),
            Ok(Role::Admin)
        );
        // Another app's audience at the same identity provider: refused, admin or not.
        assert_eq!(
            role(claims("u", "admin".into(), "crm".into())),
            Err(AuthError::Audience)
        );
        // Roles as arrays (groups), and a custom claim name.
        assert_eq!(
            role(claims(
                "u",
                serde_json::json!(["x", "admin"]),
                serde_json::json!(["coupons"])
            )),
            Ok(Role::Admin)
        );
        let mut custom = production(ServiceTokens::Refused);
        custom.roles.claim = "groups".to_owned();
        custom.roles.admin = "coupon-operators".to_owned();
        let v = Verifier::hs256(secret, &custom);
        let mut c = claims("u", "admin".into(), "coupons".into());
        assert_eq!(
            v.verify(&token(Algorithm::HS256, secret, c.clone()))
                .map(|p| p.role),
            Ok(Role::User)
        );
        c["groups"] = serde_json::json!(["coupon-operators"]);
        assert_eq!(
            v.verify(&token(Algorithm::HS256, secret, c))
                .map(|p| p.role),
            Ok(Role::Admin)
        );
        // Without a service audience in production, no token is the order service.
        let c = claims("svc", "service".into(), "coupons".into());
        assert_eq!(
            v.verify(&token(Algorithm::HS256, secret, c))
                .map(|p| p.role),
            Ok(Role::User)
        );
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
