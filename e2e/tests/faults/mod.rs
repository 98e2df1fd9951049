//! The fault suite: each case runs a burst of distinct users against a campaign, injects one
//! fault mid-burst, recovers, waits for quiescence, then checks every invariant against Redis,
//! PostgreSQL, the topics and the client's own log of answers (`World::check`).
//!
//! The services a case breaks are its own (a private Redis and broker on free ports, the ingress
//! and consumer as real processes), so cases run in parallel with everything else.

mod cases;
mod operator;
mod redis_loss;
mod release;
mod repair;
