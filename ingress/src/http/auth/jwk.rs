//! Reading an identity provider's key set: each key on its own, so one key we cannot use (an
//! unknown type, a short RSA modulus, a key meant for encryption) is skipped with a warning
//! instead of taking the whole set down.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::KeyError;

/// The shortest RSA modulus accepted, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;

/// A usable verification key of a key set.
pub struct Usable {
    pub kid: String,
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

#[derive(serde::Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWKS document; the others are logged and skipped. A document that is
/// not a key set, or holds no usable key, is an error.
pub fn usable_keys(document: &[u8]) -> Result<Vec<Usable>, KeyError> {
    let set: Document = serde_json::from_slice(document)?;
    let mut usable = Vec::new();
    for (index, key) in set.keys.into_iter().enumerate() {
        match usable_key(key) {
            Ok(Some(key)) => usable.push(key),
            // A symmetric key or another curve: never accepted from a key set, so HS/RS
            // confusion stays impossible. Not worth a warning: identity providers publish them.
            Ok(None) => {}
            Err(reason) => tracing::warn!(index, %reason, "skipping an unusable JWKS key"),
        }
    }
    if usable.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(usable)
}

fn usable_key(value: serde_json::Value) -> Result<Option<Usable>, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let bits = rsa_modulus_bits(&rsa.n)?;
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA modulus of {bits} bits, under {MIN_RSA_BITS}"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return Ok(None),
    };
    if let Some(usage) = &jwk.common.public_key_use
        && *usage != PublicKeyUse::Signature
    {
        return Err("the key's `use` is not `sig`".to_owned());
    }
    let declared = jwk.common.key_algorithm;
    let expected = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        _ => KeyAlgorithm::ES256,
    };
    if declared.is_some_and(|declared| declared != expected) {
        return Err(format!("the key's `alg` is not {expected:?}"));
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some(Usable {
        kid: jwk.common.key_id.clone().unwrap_or_default(),
        algorithm,
        decoding,
    }))
}

/// The bit length of a base64url big-endian RSA modulus, leading zero bits not counted.
fn rsa_modulus_bits(n: &str) -> Result<usize, String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .map_err(|_| "the RSA modulus is not base64url".to_owned())?;
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return Err("the RSA modulus is zero".to_owned());
    };
    Ok((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    fn test_keys() -> Vec<serde_json::Value> {
        let document = include_str!("../../../tests/keys/jwks.json");
        let value: serde_json::Value = serde_json::from_str(document).unwrap();
        value["keys"].as_array().unwrap().clone()
    }

    #[test]
    fn modulus_bits_ignore_leading_zeros() {
        use base64::Engine as _;
        let encode = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        assert_eq!(rsa_modulus_bits(&encode(&[0x80; 256])), Ok(2048));
        assert_eq!(rsa_modulus_bits(&encode(&[0x01, 0xff])), Ok(9));
        let mut padded = vec![0u8];
        padded.extend([0x7f; 128]);
        assert_eq!(rsa_modulus_bits(&encode(&padded)), Ok(1023));
        assert!(rsa_modulus_bits(&encode(&[0, 0])).is_err());
        assert!(rsa_modulus_bits("not base64!").is_err());
    }

    #[test]
    fn bad_keys_are_skipped_and_good_ones_kept() {
        let good = test_keys();
        let count = good.len();
        let mut keys = good.clone();
        // An unknown key type, a broken key, a short RSA key, an encryption key, a wrong `alg`.
        keys.push(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "ed"}));
        keys.push(serde_json::json!({"kty": "RSA", "kid": "broken"}));
        keys.push(serde_json::json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"}));
        let mut encryption = good[0].clone();
        encryption["use"] = "enc".into();
        encryption["kid"] = "enc".into();
        keys.push(encryption);
        let mut wrong_alg = good[0].clone();
        wrong_alg["alg"] = "RS512".into();
        wrong_alg["kid"] = "rs512".into();
        keys.push(wrong_alg);
        let usable = usable_keys(&set(&keys)).expect("the good keys remain");
        assert_eq!(usable.len(), count);
        assert!(
            usable
                .iter()
                .all(|k| !["ed", "broken", "short", "enc", "rs512"].contains(&k.kid.as_str()))
        );
    }

    #[test]
    fn a_set_without_a_usable_key_is_refused() {
        let short = serde_json::json!({"kty": "RSA", "kid": "short", "n": "AQAB", "e": "AQAB"});
        assert!(matches!(usable_keys(&set(&[short])), Err(KeyError::Empty)));
        assert!(matches!(usable_keys(b"{}"), Err(KeyError::Parse(_))));
    }
}
