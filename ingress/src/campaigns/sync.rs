//! Keeping the gate's copy of operator decisions in step with the ledger: the sweeper hands
//! every live campaign's settings (with their version) to [`reapply`] on each round.

use crate::App;

/// Re-applies the ledger's settings of `live` campaigns to the gate.
pub async fn reapply(_app: &App, _live: &[gate::ledger::Settings]) {}
