//! Entry points for the fuzz targets in `fuzz/` (not part of the crate's API): the token
//! verifiers as the two profiles configure them. The route table, the paging query and the
//! problem responses are reached through `http` directly.

use crate::http::auth::{Expectations, KeyError, Verifier};

/// The issuer the production-like verifier requires.
pub const ISSUER: &str = "https://issuer.fuzz.test";
/// The audience the production-like verifier requires.
pub const AUDIENCE: &str = "coupon-api";

/// The development verifier: HS256 with the development secret, no issuer or audience.
pub fn dev_verifier() -> Verifier {
    Verifier::hs256(b"dev-secret", &expectations())
}

/// A production-like verifier: the RS256/ES256 keys of a JWKS `document`, requiring
/// [`ISSUER`] and [`AUDIENCE`].
pub fn jwks_verifier(document: &[u8]) -> Result<Verifier, KeyError> {
    let mut expect = expectations();
    expect.issuer = Some(ISSUER.to_owned());
    expect.audience = Some(AUDIENCE.to_owned());
    Verifier::from_jwks(document, &expect)
}

/// The settings both profiles share; any setting added later keeps its default.
fn expectations() -> Expectations {
    Expectations {
        leeway_secs: 5,
        ..Expectations::default()
    }
}
