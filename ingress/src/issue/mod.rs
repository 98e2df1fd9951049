//! The issuance path: [`handler`] reserves in the gate, produces the event through
//! [`publish`] and answers; [`sweeper`] settles the journal (clears confirmed reservations, rolls
//! overdue ones forward) and runs [`recovery`] (fences and re-seeds campaigns whose admissions
//! Redis may have lost). [`outcomes`] parks long-polls on an issuance's outcome and wakes them
//! from one PostgreSQL `LISTEN` per process.

pub mod delivery;
pub mod handler;
pub mod outcomes;
pub mod publish;
pub mod recovery;
pub mod sweeper;
