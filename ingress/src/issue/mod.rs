//! The issuance path: [`handler`] reserves in the gate, produces the event through
//! [`publish`] and answers; [`sweeper`] settles the journal (clears confirmed reservations, rolls
//! overdue ones forward, re-seeds campaigns the gate lost).

pub mod handler;
pub mod publish;
pub mod sweeper;
