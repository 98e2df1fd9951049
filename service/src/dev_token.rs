//! Development tokens: HS256, signed with the secret an ingress takes in `JWT_HS256_SECRET`. They
//! serve `couponctl token` and `demo`, the benchmark's load generator and the tests; no service
//! mints a token. Built only with the `dev-token` feature.

use jsonwebtoken::{EncodingKey, Header};

/// How long a minted token stays valid, in seconds.
pub const VALID_SECS: i64 = 3600;

/// The signing secret of a development stack.
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
}

impl DevSecret {
    /// A token for `sub` (with `role` when given), issued at `now` (Unix seconds), valid for
    /// [`VALID_SECS`].
    pub fn mint(
        &self,
        sub: &str,
        role: Option<&str>,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        mint(self.value.as_bytes(), sub, role, now, now + VALID_SECS)
    }
}

/// An HS256 token with `sub`, `iat`, `exp` and, when given, `role`.
pub fn mint(
    secret: &[u8],
    sub: &str,
    role: Option<&str>,
    issued_at: i64,
    expires_at: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut claims = serde_json::json!({"sub": sub, "iat": issued_at, "exp": expires_at});
    if let Some(role) = role {
        claims["role"] = role.into();
    }
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
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
        };
        let token = secret.mint("alice", Some("admin"), now).expect("mints");
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"a-development-secret"),
            &Validation::default(),
        )
        .expect("verifies");
        assert_eq!(decoded.claims["sub"], "alice");
        assert_eq!(decoded.claims["role"], "admin");
        assert_eq!(decoded.claims["exp"], now + VALID_SECS);
        let other = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_secret(b"another-secret"),
            &Validation::default(),
        );
        assert!(other.is_err());
    }
}
