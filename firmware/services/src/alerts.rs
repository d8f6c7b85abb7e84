//! The appliance's alerts (homemx-status's `AlertBoard`): raised by whoever notices trouble
//! (outbound TLS stripping, NDNs, unlock failures, peers down), shown on the status page and
//! mailed to postmaster. Every raise is also an alarm in the event log. The kinds in force are
//! persisted in the encrypted key-value store (by the alert mailer, a job of the courier, whenever they change,
//! and at once when the owner acknowledges one) and restored at unlock, so an alert survives a
//! reboot until its condition clears: a verified success with the peer that caused it
//! ([`clear_for`]), or the owner's acknowledgement for the alerts about events
//! ([`acknowledge`]).
//!
//! Owns: the alert board (`ALERTS`) and its changed-since-persisted flag. Calls: `event_log`.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_status::alert::{AlertBoard, AlertKind, Peer};

/// The alerts in force.
static ALERTS: Mutex<CriticalSectionRawMutex, RefCell<AlertBoard>> = Mutex::new(RefCell::new(AlertBoard::new()));

/// Set when the set of alert kinds changed and is not yet persisted.
static CHANGED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Reads the alert board (for the status page and the alert mail).
pub fn read<R>(reader: impl FnOnce(&AlertBoard) -> R) -> R {
    ALERTS.lock(|board| reader(&board.borrow()))
}

/// Raises `kind` (or counts it again) and logs why.
pub fn raise(kind: AlertKind, why: core::fmt::Arguments<'_>) {
    raise_with_peers(kind, 0, why);
}

/// Raises `kind` because of `peer` (cleared by a verified success with that peer,
/// [`clear_for`]) and logs why.
pub fn raise_for(kind: AlertKind, peer: Peer, why: core::fmt::Arguments<'_>) {
    raise_with_peers(kind, peer.bit(), why);
}

fn raise_with_peers(kind: AlertKind, peers: homemx_status::alert::PeerSet, why: core::fmt::Arguments<'_>) {
    let now = embassy_time::Instant::now().as_millis();
    ALERTS.lock(|board| {
        if board.borrow_mut().raise_from(kind, peers, now) != homemx_status::alert::Raised::Again {
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

/// A verified success with `peer` disproves its part of each of `kinds`; an alert ends when no
/// peer that caused it is left (logged).
pub fn clear_for(kinds: &[AlertKind], peer: Peer) {
    for &kind in kinds {
        let ended = ALERTS.lock(|board| {
            let mut board = board.borrow_mut();
            if !board.clear_for(kind, peer) {
                return None;
            }
            CHANGED.store(true, core::sync::atomic::Ordering::Relaxed);
            Some(board.get(kind).is_none())
        });
        if ended == Some(true) {
            crate::event_info!("alert {} ended: a verified connection to the {} succeeded", kind.name(), peer.name());
        }
    }
}

/// The owner's acknowledgement of the active alert named `name` (only for kinds that need one);
/// the caller persists it at once.
pub fn acknowledge(name: &str) -> Result<(), homemx_wire::message::ErrorCode> {
    use homemx_wire::message::ErrorCode;
    let kind = AlertKind::from_name(name).ok_or(ErrorCode::NotFound)?;
    if !kind.needs_acknowledgement() {
        return Err(ErrorCode::NotAcknowledgeable);
    }
    let cleared = ALERTS.lock(|board| board.borrow_mut().clear(kind));
    if !cleared {
        return Err(ErrorCode::NotFound);
    }
    CHANGED.store(true, core::sync::atomic::Ordering::Relaxed);
    crate::event_info!("alert {} acknowledged by the owner", kind.name());
    Ok(())
}

/// First byte of the record format with peers: then (kind index, peer set) pairs. A record
/// without it is the older format, one kind index per byte (peer unknown).
const WITH_PEERS: u8 = 0xa1;
pub const RECORD_CAPACITY: usize = 1 + 2 * homemx_status::MAX_ALERTS;

/// The kinds in force and the peers that caused them, encoded for the encrypted store, if
/// they changed since the last [`record_persisted`] (the status page's service writes it).
pub fn changed_record() -> Option<heapless::Vec<u8, RECORD_CAPACITY>> {
    if !CHANGED.load(core::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let mut kinds: heapless::Vec<u8, RECORD_CAPACITY> = heapless::Vec::new();
    let _ = kinds.push(WITH_PEERS);
    ALERTS.lock(|board| {
        for alert in board.borrow().alerts() {
            let _ = kinds.push(alert.kind.index() as u8);
            let _ = kinds.push(alert.peers);
        }
    });
    Some(kinds)
}

/// The record from [`changed_record`] is stored.
pub fn record_persisted() {
    CHANGED.store(false, core::sync::atomic::Ordering::Relaxed);
}

/// Raises the kinds that were in force before the reboot, from their stored record.
pub fn restore(record: &[u8]) {
    let now = embassy_time::Instant::now().as_millis();
    let restore_one = |index: u8, peers: homemx_status::alert::PeerSet| {
        if let Some(kind) = AlertKind::ALL.get(usize::from(index)) {
            ALERTS.lock(|board| {
                board.borrow_mut().raise_from(*kind, peers, now);
            });
            crate::event_warning!("alert {} was in force before the restart", kind.name());
        }
    };
    match record.split_first() {
        Some((&WITH_PEERS, pairs)) => pairs.chunks_exact(2).for_each(|pair| restore_one(pair[0], pair[1])),
        _ => record.iter().for_each(|&index| restore_one(index, 0)),
    }
}
