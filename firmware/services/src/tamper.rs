//! The tamper loop (seed 000 §8.3: a door contact or motion detector, wired normally closed):
//! the board's [`homemx_board::TamperLoop`] read every [`POLL_INTERVAL`].
//!
//! What a reading means is `homemx_board::tamper_watch`'s rule (host-tested): a loop that was
//! read and then stops answering counts as opened, and only the first read may find none.
//!
//! When the loop opens, this task records it ([`loop_open`] turns true) and wakes the console
//! ([`crate::channels::TAMPER_OPENED`]), which holds the store's lifecycle and does the rest
//! with the owner's own lock path: the `tamper` alert (with the time) is raised and persisted
//! with the event's time while the stores are still open, then the device locks (keys wiped,
//! spool closed, TLS server identity forgotten; the MX answers 421). While the loop is open
//! the console refuses to unlock (`ErrorCode::TamperLoopOpen`). Closing the loop only lets the
//! owner unlock again: the alert stays until `homemx alert ack tamper`.
//!
//! The persisted event ([`TamperEvent`], written by `status_page::persist_tamper_event`): the
//! wall-clock second of the opening (0 while the clock was not set) and the uptime second, in
//! the encrypted key-value store beside the alert record; at the next unlock after a restart the alert comes back
//! through the alert record and the event's time is logged again. An opening while the device
//! is already locked cannot be written (the store is closed): the alert and the event are kept
//! in RAM ([`hold_until_unlock`]) and written at the next unlock; a restart before that unlock
//! loses them, unless the loop is still open at boot, which raises them again at once.
//!
//! Owns: the tamper task, the board's tamper loop and the loop's last state. Calls: `channels`,
//! `event_log`, `network` (the parts' types), `wall_clock`.

use core::cell::Cell;
use core::sync::atomic::{AtomicU8, Ordering};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;

use embassy_time::{Duration, Instant, Timer};
use homemx_board::tamper_watch::{tamper_transition, TamperChange};
use homemx_board::{TamperLoop, TamperState};

use crate::bsp;
use crate::network::PartsTypes;

type Input = <bsp::Parts as PartsTypes>::Tamper;

/// How often the loop is read: fast enough that a door is noticed before anyone reaches the
/// device, slow enough to cost nothing (one I²C register read on QEMU, one register on the H5).
pub const POLL_INTERVAL: Duration = Duration::from_millis(150);

const NOT_READ: u8 = 0;
const CLOSED: u8 = 1;
const OPEN: u8 = 2;
const NOT_FITTED: u8 = 3;

/// The loop's state as last read.
static STATE: AtomicU8 = AtomicU8::new(NOT_READ);

/// An event that happened while the device was locked, written at the next unlock.
static HELD_EVENT: Mutex<CriticalSectionRawMutex, Cell<Option<TamperEvent>>> = Mutex::new(Cell::new(None));

/// Keeps `event` (the loop opened while locked) until the next unlock writes it (the first
/// such event since the last unlock is kept: the earliest opening is the one that matters).
pub fn hold_until_unlock(event: TamperEvent) {
    HELD_EVENT.lock(|held| {
        if held.get().is_none() {
            held.set(Some(event));
        }
    });
}

/// The event held since the device was locked, if any (taken: written once).
pub fn take_held() -> Option<TamperEvent> {
    HELD_EVENT.lock(Cell::take)
}

/// Whether the loop is open now (unlock is refused).
pub fn loop_open() -> bool {
    STATE.load(Ordering::Relaxed) == OPEN
}

/// The loop's state for the status page (not fitted before the first read).
pub fn state() -> TamperState {
    match STATE.load(Ordering::Relaxed) {
        CLOSED => TamperState::Closed,
        OPEN => TamperState::Open,
        _ => TamperState::NotFitted,
    }
}

fn encoded(state: TamperState) -> u8 {
    match state {
        TamperState::Closed => CLOSED,
        TamperState::Open => OPEN,
        TamperState::NotFitted => NOT_FITTED,
    }
}

fn decoded(state: u8) -> Option<TamperState> {
    match state {
        CLOSED => Some(TamperState::Closed),
        OPEN => Some(TamperState::Open),
        NOT_FITTED => Some(TamperState::NotFitted),
        _ => None,
    }
}

/// Reads the loop forever and reports its changes.
#[embassy_executor::task]
pub async fn tamper_task(mut input: Input) -> ! {
    loop {
        let before = decoded(STATE.load(Ordering::Relaxed));
        let (held, change) = tamper_transition(before, input.state());
        STATE.store(encoded(held), Ordering::Relaxed);
        match change {
            TamperChange::None => {}
            TamperChange::Opened => crate::channels::TAMPER_OPENED.signal(()),
            TamperChange::Vanished => {
                crate::event_warning!("tamper: the loop's input stopped answering; treated as opened");
                crate::channels::TAMPER_OPENED.signal(())
            }
            TamperChange::Closed => crate::event_info!("tamper: the loop is closed again; the owner may unlock (the alert stays until acknowledged)"),
            TamperChange::NotFitted => {
                crate::event_info!("tamper: no tamper loop fitted");
                // No loop on this board: nothing will ever change.
                core::future::pending::<()>().await
            }
        }
        Timer::after(POLL_INTERVAL).await;
    }
}

/// A tamper event: when the loop opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TamperEvent {
    /// Wall-clock seconds (`None`: the clock was not set).
    pub unix_seconds: Option<u64>,
    /// Seconds since that boot.
    pub uptime_seconds: u32,
}

impl TamperEvent {
    /// The event happening now.
    pub fn now() -> TamperEvent {
        TamperEvent {
            unix_seconds: crate::wall_clock::unix_seconds(),
            uptime_seconds: Instant::now().as_secs().min(u64::from(u32::MAX)) as u32,
        }
    }

    /// The stored form: the wall-clock second (0: not set) then the uptime second, little-endian.
    pub fn encode(&self) -> [u8; EVENT_RECORD_LENGTH] {
        let mut record = [0u8; EVENT_RECORD_LENGTH];
        record[..8].copy_from_slice(&self.unix_seconds.unwrap_or(0).to_le_bytes());
        record[8..].copy_from_slice(&self.uptime_seconds.to_le_bytes());
        record
    }

    /// The event from its stored form.
    pub fn decode(record: &[u8]) -> Option<TamperEvent> {
        let unix = u64::from_le_bytes(record.get(..8)?.try_into().ok()?);
        let uptime = u32::from_le_bytes(record.get(8..12)?.try_into().ok()?);
        Some(TamperEvent { unix_seconds: (unix != 0).then_some(unix), uptime_seconds: uptime })
    }
}

impl core::fmt::Display for TamperEvent {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.unix_seconds {
            Some(unix) => write!(formatter, "unix time {unix} (boot + {} s)", self.uptime_seconds),
            None => write!(formatter, "boot + {} s (clock not set)", self.uptime_seconds),
        }
    }
}

/// Bytes of a stored [`TamperEvent`].
pub const EVENT_RECORD_LENGTH: usize = 12;
