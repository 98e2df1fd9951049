//! Bearer tokens as the identity provider would issue them, signed with the secret every
//! harness configures its ingress with.

/// The HS256 secret of the ingress under test.
pub const HS256_SECRET: &str = "test-secret-0123456789";

/// An HS256 token signed with [`HS256_SECRET`], valid for an hour unless `exp_offset` says
/// otherwise (seconds from now, negative for an expired token).
pub fn token(sub: &str, role: Option<&str>, exp_offset: i64) -> String {
    token_with_secret(sub, role, exp_offset, HS256_SECRET)
}

pub fn token_with_secret(sub: &str, role: Option<&str>, exp_offset: i64, secret: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    service::dev_token::mint(secret.as_bytes(), sub, role, now, now + exp_offset).unwrap()
}
