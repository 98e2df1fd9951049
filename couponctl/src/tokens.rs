//! Development HS256 tokens, as the ingress accepts them with `JWT_HS256_SECRET`.

use jsonwebtoken::{EncodingKey, Header};

/// The signing secret, shared by every subcommand that talks to the API.
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
    /// A token for `sub` (with `role: admin` when asked), valid for an hour from `now`.
    pub fn mint(&self, sub: &str, admin: bool, now: i64) -> anyhow::Result<String> {
        let mut claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + 3600});
        if admin {
            claims["role"] = "admin".into();
        }
        Ok(jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.value.as_bytes()),
        )?)
    }
}
