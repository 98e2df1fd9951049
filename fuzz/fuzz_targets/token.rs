//! The bearer token verifier on arbitrary bytes, as an `Authorization` header value and as a
//! bare token, with the development verifier (HS256) and a production-like one (the test JWKS,
//! issuer and audience required). No input may panic or be accepted: the fuzzer cannot sign,
//! and the seeds are correctly signed but expired.
#![no_main]

use std::sync::LazyLock;

use ingress::fuzzing::{dev_verifier, jwks_verifier};
use ingress::http::auth::Verifier;
use libfuzzer_sys::fuzz_target;

static VERIFIERS: LazyLock<[Verifier; 2]> = LazyLock::new(|| {
    let jwks = include_bytes!("../../ingress/tests/keys/jwks.json");
    [
        dev_verifier(),
        jwks_verifier(jwks).expect("the test key set loads"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let mut header = b"Bearer ".to_vec();
    header.extend_from_slice(data);
    for verifier in VERIFIERS.iter() {
        let raw = verifier.verify_header(Some(data));
        assert!(raw.is_err(), "a raw header was accepted: {raw:?}");
        let bearer = verifier.verify_header(Some(&header));
        assert!(bearer.is_err(), "a bearer token was accepted: {bearer:?}");
        if let Ok(token) = std::str::from_utf8(data) {
            let bare = verifier.verify(token);
            assert!(bare.is_err(), "a token was accepted: {bare:?}");
            let _ = verifier.knows_kid(token);
        }
    }
});
