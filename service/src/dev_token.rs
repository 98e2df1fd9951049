//! Development tokens: HS256, signed with the secret an ingress takes in `JWT_HS256_SECRET`. They
//! serve `couponctl token` and `demo`, the benchmark's load generator and the tests; no service
//! mints a token. Built only with the `dev-token` feature.

use jsonwebtoken::{EncodingKey, Header};

/// How long a minted token stays valid, in seconds.
pub const VALID_SECS: i64 = 3600;

/// The signing secret of a development stack, and the issuer and audience the ingress expects
/// (its `JWT_ISSUER` and `JWT_AUDIENCE`, read from the same environment).
#[derive(Debug, Clone, clap::Args)]
pub struct DevSecret {
    /// The development HS256 secret the ingress accepts.
    #[arg(
        long = "secret",
        env = "JWT_HS256_SECRET",
        default_value = "dev-secret",
        hide_env_values = true
    )]
    pub value: String,

    /// `iss` of minted tokens, when the ingress requires one.
    #[arg(long = "issuer", env = "JWT_ISSUER")]
    pub issuer: Option<String>,

    /// `aud` of minted tokens, when the ingress requires one.
    #[arg(long = "audience", env = "JWT_AUDIENCE")]
    pub audience: Option<String>,
}

impl DevSecret {
    /// A token for `sub` (with `role` when given), issued at `now` (Unix seconds), valid for
    /// [`VALID_SECS`], with the configured issuer and audience.
    pub fn mint(
        &self,
        sub: &str,
        role: Option<&str>,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.mint_for(sub, role, self.audience.as_deref(), now)
    }

    /// As [`DevSecret::mint`], for another audience (the order service's, say).
    pub fn mint_for(
        &self,
        sub: &str,
        role: Option<&str>,
        audience: Option<&str>,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub,
            role,
            issuer: self.issuer.as_deref(),
            audience,
        };
        sign(self.value.as_bytes(), &claims, now, now + VALID_SECS)
    }
}

/// What a minted token says beyond its times.
#[derive(Debug, Clone, Copy, Default)]
pub struct Claims<'a> {
    pub sub: &'a str,
    pub role: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// An HS256 token with `sub`, `iat`, `exp` and, when given, `role`.
pub fn mint(
    secret: &[u8],
    sub: &str,
    role: Option<&str>,
    issued_at: i64,
    expires_at: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub,
        role,
        ..Claims::default()
    };
    sign(secret, &claims, issued_at, expires_at)
}

/// An HS256 token with the claims given, `iat` and `exp`.
pub fn sign(
    secret: &[u8],
    claims: &Claims<'_>,
    issued_at: i64,
    expires_at: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut json = serde_json::json!({"sub": claims.sub, "iat": issued_at, "exp": expires_at});
    for (name, value) in [
        ("role", claims.role),
        ("iss", claims.issuer),
        ("aud", claims.audience),
    ] {
        if let Some(value) = value {
            json[name] = value.into();
        }
    }
    jsonwebtoken::encode(&Header::default(), &json, &EncodingKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn a_minted_token_carries_its_claims_and_verifies_with_the_secret() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let secret = DevSecret {
            value: "a-development-secret".to_owned(),
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("coupons".to_owned()),
        };
        let token = secret.mint("alice", Some("admin"), now).expect("mints");
        let mut validation = Validation::default();
        validation.set_issuer(&["https://idp.example"]);
        validation.set_audience(&["coupons"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"a-development-secret"),
            &validation,
        )
        .expect("verifies");
        assert_eq!(decoded.claims["sub"], "alice");
        assert_eq!(decoded.claims["role"], "admin");
        assert_eq!(decoded.claims["iss"], "https://idp.example");
        assert_eq!(decoded.claims["aud"], "coupons");
        let service = secret
            .mint_for("orders", Some("service"), Some("order-service"), now)
            .expect("mints");
        let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&service)
            .expect("decodes")
            .claims;
        assert_eq!(claims["aud"], "order-service");
        assert_eq!(decoded.claims["exp"], now + VALID_SECS);
        let other = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"another-secret"),
            &Validation::default(),
        );
        assert!(other.is_err());
    }
}
