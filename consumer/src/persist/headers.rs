//! Reading a record's headers without trusting them. The Kafka binding panics on a header name
//! that is not UTF-8, and any client that reaches the broker can write one (the protocol does
//! not forbid it and brokers pass it on): such a record is poison to dead-letter, never a crash
//! that would stop its partition for good.

use rdkafka::message::{Headers as _, Message};

/// Whether every header name of the record can be read (is UTF-8). Only then may its headers
/// be iterated.
pub fn readable(message: &impl Message) -> bool {
    let Some(headers) = message.headers() else {
        return true;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for index in 0..headers.count() {
            let _ = headers.try_get(index);
        }
    }))
    .is_ok()
}
