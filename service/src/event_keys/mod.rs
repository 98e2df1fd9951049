//! Signed requested-issuance events: the ingress (and every other legitimate producer) puts a
//! MAC over the record's key and value in the `coupon-signature` header; the consumer verifies
//! it and dead-letters what does not verify, so a record written to the topic by anyone without
//! the keys never becomes a coupon.
//!
//! Header value: `v1,<key id>,<base64 of HMAC-SHA256(secret, message)>`, where message is
//! `coupon-signature:v1:<key id>\n`, the record key's length as 4 bytes big-endian, the record
//! key, then the value (the protobuf payload). The key id is bound into the MAC.
//!
//! Keys live in PostgreSQL (`event_keys`, migration V8): [`KeySet`] is one reading of that table
//! (pure: signing and verifying), [`EventKeys`] the process-wide set, loaded at start and
//! refreshed every `EVENT_KEYS_REFRESH_MS` ([`Args`]). The ingress signs with the newest key
//! whose activation has passed; the consumer accepts every key not retired, pending ones
//! included, and reloads once when it meets a key id it does not know.

mod shared;

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use shared::{EventKeys, LoadError, load, read};

/// The record header carrying the signature.
pub const HEADER: &str = "coupon-signature";
/// The only signature version so far.
const VERSION: &str = "v1";

/// How often the processes re-read the keys.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// How often the event keys (the `event_keys` table) are re-read, in ms. A rotated key
    /// must activate later than every process's next refresh (`couponctl event-keys rotate`).
    #[arg(
        id = "event_keys_refresh_ms",
        value_name = "EVENT_KEYS_REFRESH_MS",
        long = "event-keys-refresh-ms",
        env = "EVENT_KEYS_REFRESH_MS",
        default_value_t = 60_000,
        value_parser = clap::value_parser!(u64).range(100..=3_600_000)
    )]
    pub refresh_ms: u64,
}

/// One key of the set.
#[derive(Clone)]
pub struct Key {
    pub id: i32,
    secret: Vec<u8>,
    /// From when the ingress may sign with it.
    pub activates_at: Instant,
    /// From when it is no longer accepted; `None` while not retired.
    pub retires_at: Option<Instant>,
}

impl Key {
    pub fn new(
        id: i32,
        secret: Vec<u8>,
        activates_at: Instant,
        retires_at: Option<Instant>,
    ) -> Key {
        Key {
            id,
            secret,
            activates_at,
            retires_at,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.retires_at.is_none_or(|at| at > now)
    }
}

/// The secret is never printed.
impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

/// Why a record's signature is refused; its label names the reason in metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `coupon-signature` header.
    Missing,
    /// A header that is not `v1,<key id>,<base64 of 32 bytes>`.
    Malformed,
    /// A key id the set does not hold (never created, or retired).
    UnknownKey(i32),
    /// The MAC does not match the record under the named key.
    Mismatch(i32),
}

impl Refusal {
    /// Every label value, so a metric has its series from the start.
    pub const LABELS: [&'static str; 4] = ["missing", "malformed", "unknown-key", "mismatch"];

    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey(_) => "unknown-key",
            Refusal::Mismatch(_) => "mismatch",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing => write!(f, "unsigned event: no {HEADER} header"),
            Refusal::Malformed => write!(f, "malformed {HEADER} header"),
            Refusal::UnknownKey(id) => {
                write!(f, "event signed with an unknown or retired key ({id})")
            }
            Refusal::Mismatch(id) => write!(f, "event signature does not match (key {id})"),
        }
    }
}

impl std::error::Error for Refusal {}

/// One reading of the key table.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// In activation order, oldest first (the table's `activates_at`, then `id`).
    keys: Vec<Key>,
}

impl KeySet {
    /// `keys` in activation order, oldest first.
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key to sign with at `now`: the newest whose activation has passed, not retired.
    pub fn signing_key(&self, now: Instant) -> Option<&Key> {
        self.keys
            .iter()
            .rev()
            .find(|k| k.activates_at <= now && k.live(now))
    }

    /// The `coupon-signature` header value for a record, or `None` when no key is active.
    pub fn sign(&self, record_key: &[u8], value: &[u8]) -> Option<String> {
        let key = self.signing_key(Instant::now())?;
        Some(header_value(key.id, &key.secret, record_key, value))
    }

    /// Checks a record's `coupon-signature` header (`None`: the record has none) against
    /// every key not retired at `now`. Returns the id of the key that signed it.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        record_key: &[u8],
        value: &[u8],
        now: Instant,
    ) -> Result<i32, Refusal> {
        let (id, tag) = parse(header.ok_or(Refusal::Missing)?)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id && k.live(now))
            .ok_or(Refusal::UnknownKey(id))?;
        mac(id, &key.secret, record_key, value)
            .verify_slice(&tag)
            .map_err(|_| Refusal::Mismatch(id))?;
        Ok(id)
    }
}

/// The header value of a record signed with key `id`.
pub fn header_value(id: i32, secret: &[u8], record_key: &[u8], value: &[u8]) -> String {
    let tag = mac(id, secret, record_key, value).finalize().into_bytes();
    format!("{VERSION},{id},{}", STANDARD.encode(tag))
}

fn mac(id: i32, secret: &[u8], record_key: &[u8], value: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("{HEADER}:{VERSION}:{id}\n").as_bytes());
    let length = u32::try_from(record_key.len()).unwrap_or(u32::MAX);
    mac.update(&length.to_be_bytes());
    mac.update(record_key);
    mac.update(value);
    mac
}

/// `v1,<id>,<base64>` to the key id and the 32-byte tag.
fn parse(header: &[u8]) -> Result<(i32, Vec<u8>), Refusal> {
    let text = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
    let mut parts = text.split(',');
    let (Some(VERSION), Some(id), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let id: i32 = id
        .parse()
        .ok()
        .filter(|id| *id > 0)
        .ok_or(Refusal::Malformed)?;
    let tag = STANDARD.decode(tag).map_err(|_| Refusal::Malformed)?;
    if tag.len() != 32 {
        return Err(Refusal::Malformed);
    }
    Ok((id, tag))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn set(now: Instant) -> KeySet {
        KeySet::new(vec![
            Key::new(1, SECRET.to_vec(), now - Duration::from_secs(60), None),
            Key::new(2, b"another-secret-of-32-bytes-long!".to_vec(), now, None),
            Key::new(
                3,
                b"a-pending-secret-of-32-bytes-xx!".to_vec(),
                now + Duration::from_secs(60),
                None,
            ),
        ])
    }

    #[test]
    fn the_header_is_hmac_sha256_of_the_documented_message() {
        // Expected value from an independent HMAC-SHA256 implementation (Python's hmac):
        // hmac.new(SECRET, b"coupon-signature:v1:7\n" + (9).to_bytes(4, "big") + b"c:user-1x"
        //          + b"\x0a\x03abc", "sha256").digest(), base64-encoded.
        assert_eq!(
            header_value(7, SECRET, b"c:user-1x", b"\x0a\x03abc"),
            "v1,7,k5TFxtoRE4Nok+99TYaSUBfc6wzdC1zcHYBA99BA6G8="
        );
    }

    #[test]
    fn signs_with_the_newest_active_key_and_verifies_with_any_live_one() {
        let now = Instant::now();
        let keys = set(now);
        assert_eq!(keys.signing_key(now).map(|k| k.id), Some(2));
        assert_eq!(
            keys.signing_key(now + Duration::from_secs(61))
                .map(|k| k.id),
            Some(3)
        );
        for id in [1, 2, 3] {
            let key = keys.keys.iter().find(|k| k.id == id).unwrap();
            let header = header_value(id, &key.secret, b"k", b"payload");
            assert_eq!(
                keys.verify(Some(header.as_bytes()), b"k", b"payload", now),
                Ok(id)
            );
        }
    }

    #[test]
    fn refuses_missing_malformed_unknown_retired_and_altered_signatures() {
        let now = Instant::now();
        let mut keys = set(now);
        let good = header_value(1, SECRET, b"k", b"payload");
        let verify = |keys: &KeySet, header: Option<&str>, key: &[u8], value: &[u8]| {
            keys.verify(header.map(str::as_bytes), key, value, now)
        };
        assert_eq!(verify(&keys, None, b"k", b"payload"), Err(Refusal::Missing));
        for bad in [
            "",
            "v1",
            "v2,1,AAAA",
            "v1,x,AAAA",
            "v1,0,AAAA",
            "v1,1,!!",
            "v1,1,AAAA",
            "v1,1,AAAA,",
        ] {
            assert_eq!(
                verify(&keys, Some(bad), b"k", b"payload"),
                Err(Refusal::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(&keys, Some(&good), b"k", b"payload!"),
            Err(Refusal::Mismatch(1))
        );
        assert_eq!(
            verify(&keys, Some(&good), b"k2", b"payload"),
            Err(Refusal::Mismatch(1))
        );
        // The key id is part of the MAC: the same tag under another id does not verify.
        let moved = good.replacen("v1,1,", "v1,2,", 1);
        assert_eq!(
            verify(&keys, Some(&moved), b"k", b"payload"),
            Err(Refusal::Mismatch(2))
        );
        let forged = header_value(1, b"a guess at the secret, 32 bytes!", b"k", b"payload");
        assert_eq!(
            verify(&keys, Some(&forged), b"k", b"payload"),
            Err(Refusal::Mismatch(1))
        );
        let unknown = header_value(9, SECRET, b"k", b"payload");
        assert_eq!(
            verify(&keys, Some(&unknown), b"k", b"payload"),
            Err(Refusal::UnknownKey(9))
        );
        keys.keys[0].retires_at = Some(now);
        assert_eq!(
            verify(&keys, Some(&good), b"k", b"payload"),
            Err(Refusal::UnknownKey(1))
        );
    }

    #[test]
    fn nothing_signs_without_an_active_key() {
        let now = Instant::now();
        assert_eq!(KeySet::default().sign(b"k", b"v"), None);
        let pending = KeySet::new(vec![Key::new(
            1,
            SECRET.to_vec(),
            now + Duration::from_secs(60),
            None,
        )]);
        assert_eq!(pending.sign(b"k", b"v"), None);
        let retired = KeySet::new(vec![Key::new(1, SECRET.to_vec(), now, Some(now))]);
        assert_eq!(retired.sign(b"k", b"v"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_verify_nor_panic(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let now = Instant::now();
            proptest::prop_assert!(set(now).verify(Some(&header), b"k", &value, now).is_err());
        }
    }
}
