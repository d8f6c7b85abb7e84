//! The appliance's alerts (homemx-status's `AlertBoard`): raised by whoever notices trouble
//! (outbound TLS stripping, NDNs, unlock failures, peers down), shown on the status page and
//! mailed to postmaster. Every raise is also an alarm in the event log. The kinds in force are
//! persisted in the encrypted key-value store (by the alert-mail task, whenever they change)
//! and restored at unlock, so an alert survives a reboot until its condition clears.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_status::alert::{AlertBoard, AlertKind};

/// The alerts in force.
pub static ALERTS: Mutex<CriticalSectionRawMutex, RefCell<AlertBoard>> = Mutex::new(RefCell::new(AlertBoard::new()));

/// Set when the set of alert kinds changed and is not yet persisted.
static CHANGED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Raises `kind` (or counts it again) and logs why.
pub fn raise(kind: AlertKind, why: core::fmt::Arguments<'_>) {
    let now = embassy_time::Instant::now().as_millis();
    ALERTS.lock(|board| {
        if board.borrow_mut().raise(kind, now) != homemx_status::alert::Raised::Again {
            CHANGED.store(true, core::sync::atomic::Ordering::Relaxed);
        }
    });
    crate::event_log::record(homemx_wire::message::LogLevel::Alarm, format_args!("ALERT {}: {}", kind.name(), why));
}

/// Clears `kind` (the condition ended).
pub fn clear(kind: AlertKind) {
    ALERTS.lock(|board| {
        if board.borrow_mut().clear(kind) {
            CHANGED.store(true, core::sync::atomic::Ordering::Relaxed);
        }
    });
}

fn persisted_key() -> u64 {
    crate::vault::Settings::key_for("alerts", b"in-force")
}

/// Writes the kinds in force to the encrypted store if they changed (one byte per kind).
pub async fn persist_if_changed() {
    if !CHANGED.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut kinds: heapless::Vec<u8, { homemx_status::MAX_ALERTS }> = heapless::Vec::new();
    ALERTS.lock(|board| {
        for alert in board.borrow().alerts() {
            let _ = kinds.push(alert.kind.index() as u8);
        }
    });
    let mut vault = crate::vault::VAULT.lock().await;
    if let Some(stores) = vault.as_mut().and_then(|vault| vault.open_stores()) {
        if stores.settings.store(persisted_key(), &kinds).await.is_ok() {
            CHANGED.store(false, core::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Raises the kinds that were in force before the reboot (call at unlock, vault held).
pub async fn restore(vault: &mut crate::vault::Vault) {
    let Some(stores) = vault.open_stores() else {
        return;
    };
    let mut kinds = [0u8; homemx_status::MAX_ALERTS];
    let Ok(Some(length)) = stores.settings.fetch(persisted_key(), &mut kinds).await else {
        return;
    };
    let now = embassy_time::Instant::now().as_millis();
    for &index in &kinds[..length.min(kinds.len())] {
        if let Some(kind) = AlertKind::ALL.get(usize::from(index)) {
            ALERTS.lock(|board| {
                board.borrow_mut().raise(*kind, now);
            });
            crate::event_warning!("alert {} was in force before the restart", kind.name());
        }
    }
}
