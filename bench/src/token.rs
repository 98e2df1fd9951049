//! User tokens for the load generator: HS256, as a local ingress accepts them with
//! `JWT_HS256_SECRET`.

use jsonwebtoken::{EncodingKey, Header};

/// The development signing secret of the stack under test.
#[derive(Debug, Clone, clap::Args)]
pub struct Secret {
    /// The development HS256 secret the ingress accepts.
    #[arg(
        long = "secret",
        env = "JWT_HS256_SECRET",
        default_value = "dev-secret",
        hide_env_values = true
    )]
    value: String,
}

impl Secret {
    /// A user token for `sub`, issued at `now` (Unix seconds) and valid for an hour.
    pub fn user_token(&self, sub: &str, now: i64) -> anyhow::Result<String> {
        let claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + 3600});
        let key = EncodingKey::from_secret(self.value.as_bytes());
        Ok(jsonwebtoken::encode(&Header::default(), &claims, &key)?)
    }
}
