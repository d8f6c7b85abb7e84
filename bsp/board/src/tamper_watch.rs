//! What a new reading of the tamper loop means, fail-secure: the one rule the application's
//! tamper task applies to every read of a [`crate::TamperLoop`].
//!
//! A loop that reads open locks the device. A loop that was read (closed or open) and then
//! stops answering (the QEMU board's expander unplugged, its bus cut or held) counts as opened
//! and stays open: an attacker who silences the input must not read as "no loop fitted", which
//! only the first read may conclude. Pure and host-tested; calls nothing.

use crate::TamperState;

/// What the device does after a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperChange {
    /// Nothing new.
    None,
    /// The loop opened (or was open at the first read): lock and alert.
    Opened,
    /// A loop that was there stopped answering: lock and alert as for [`Self::Opened`].
    Vanished,
    /// The loop closed again (the owner may unlock; the alert stays until acknowledged).
    Closed,
    /// The first read found no loop: nothing will change on this board.
    NotFitted,
}

/// The state the device holds and the change, after a read that found `now` where the state
/// held was `before` (`None` before the first read).
pub fn tamper_transition(before: Option<TamperState>, now: TamperState) -> (TamperState, TamperChange) {
    use TamperState::{Closed, NotFitted, Open};
    match (before, now) {
        (Some(Open), Open) => (Open, TamperChange::None),
        (_, Open) => (Open, TamperChange::Opened),
        (Some(Open), Closed) => (Closed, TamperChange::Closed),
        (None, NotFitted) => (NotFitted, TamperChange::NotFitted),
        (Some(Closed), NotFitted) => (Open, TamperChange::Vanished),
        // Still silent after it vanished: it stays open.
        (Some(Open), NotFitted) => (Open, TamperChange::None),
        (_, state) => (state, TamperChange::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TamperState::{Closed, NotFitted, Open};

    #[test]
    fn an_open_loop_locks_once_and_closing_it_is_reported() {
        assert_eq!(tamper_transition(None, Closed), (Closed, TamperChange::None));
        assert_eq!(tamper_transition(None, Open), (Open, TamperChange::Opened), "open at the first read");
        assert_eq!(tamper_transition(Some(Closed), Open), (Open, TamperChange::Opened));
        assert_eq!(tamper_transition(Some(Open), Open), (Open, TamperChange::None), "one alert per opening");
        assert_eq!(tamper_transition(Some(Open), Closed), (Closed, TamperChange::Closed));
        assert_eq!(tamper_transition(Some(Closed), Closed), (Closed, TamperChange::None));
    }

    #[test]
    fn only_the_first_read_may_find_no_loop() {
        assert_eq!(tamper_transition(None, NotFitted), (NotFitted, TamperChange::NotFitted));
    }

    #[test]
    fn a_loop_that_stops_answering_is_opened_not_unfitted() {
        // The attack: unplug the expander (or hold its bus) while the loop is closed, then open
        // the case. The device must lock at the silence and stay locked while it lasts.
        assert_eq!(tamper_transition(Some(Closed), NotFitted), (Open, TamperChange::Vanished));
        assert_eq!(tamper_transition(Some(Open), NotFitted), (Open, TamperChange::None), "still open, no second alert");
        // It answers again, closed: the owner may unlock (the alert stays).
        assert_eq!(tamper_transition(Some(Open), Closed), (Closed, TamperChange::Closed));
    }
}
