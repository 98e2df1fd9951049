//! The consumer's decoding of a requested-issuance record, on arbitrary key, headers and
//! payload. No input may panic; an accepted record yields one issuance valid in every field.
//!
//! Input layout (the seeds in corpus/event follow it; a short input simply ends early):
//! `key_len:u8 key  count:u8 (name_len:u8 name value_len:u8 value)*count  payload...`
//! where a length of 255 means "absent" (no key, a header without value) and an empty payload
//! is no payload.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use schema::campaign::PER_USER_LIMITS;
use schema::ids::UserId;

const ABSENT: u8 = u8::MAX;

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    /// A length-prefixed field, `None` when the length says absent.
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = self.byte();
        if len == ABSENT {
            return None;
        }
        let (field, rest) = self.0.split_at(usize::from(len).min(self.0.len()));
        self.0 = rest;
        Some(field)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let key = input.field();
    let count = input.byte();
    let mut headers: Vec<(Cow<'_, str>, Option<&[u8]>)> = Vec::new();
    for _ in 0..count {
        // rdkafka's header names are `&str`: a name that is not UTF-8 cannot be built in
        // memory (and makes rdkafka's header reading panic when a broker delivers one).
        let name = String::from_utf8_lossy(input.field().unwrap_or_default());
        headers.push((name, input.field()));
    }
    let payload = Some(input.0).filter(|p| !p.is_empty());
    let headers: Vec<(&str, Option<&[u8]>)> =
        headers.iter().map(|(n, v)| (n.as_ref(), *v)).collect();
    let Ok(issuances) = consumer::fuzzing::record(key, payload, &headers) else {
        return;
    };
    assert_eq!(issuances.len(), 1, "one record, one issuance");
    let issuance = &issuances[0];
    assert!(
        UserId::parse(&issuance.user).is_ok(),
        "user {:?}",
        issuance.user
    );
    let seq = u32::try_from(issuance.seq).expect("a positive seq");
    assert!(PER_USER_LIMITS.contains(&seq), "seq {seq}");
    assert!(issuance.requested_at.unix_timestamp_nanos() > 0);
});
