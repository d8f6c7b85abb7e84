//! The appliance's alerts (homemx-status's `AlertBoard`): raised by whoever notices trouble
//! (outbound TLS stripping, NDNs, unlock failures, peers down), shown on the status page and
//! mailed to postmaster. Every raise is also a warning in the event log.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_status::alert::{AlertBoard, AlertKind};

/// The alerts in force.
pub static ALERTS: Mutex<CriticalSectionRawMutex, RefCell<AlertBoard>> = Mutex::new(RefCell::new(AlertBoard::new()));

/// Raises `kind` (or counts it again) and logs why.
pub fn raise(kind: AlertKind, why: core::fmt::Arguments<'_>) {
    let now = embassy_time::Instant::now().as_millis();
    ALERTS.lock(|board| {
        board.borrow_mut().raise(kind, now);
    });
    crate::event_log::record(homemx_wire::message::LogLevel::Alarm, format_args!("ALERT {}: {}", kind.name(), why));
}

/// Clears `kind` (the condition ended).
pub fn clear(kind: AlertKind) {
    ALERTS.lock(|board| {
        board.borrow_mut().clear(kind);
    });
}
