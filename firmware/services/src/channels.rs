//! Every signal between services, in one place: who wakes whom, and why. A service waits on
//! its own signals; anyone may raise them. Nothing here holds state beyond "something is
//! due" (the state itself has one owner each: the vault, the settings, the alert board).
//!
//! | signal            | raised by                                         | waited on by                 |
//! |-------------------|---------------------------------------------------|------------------------------|
//! | [`DELIVERY_DUE`]  | MX (message committed), fetch, console, NDNs, alert mail, the vault (counters) | delivery task |
//! | [`RETRY_ALL_NOW`] | console (unlock, `flush`), delivery (after a reset) | delivery task                |
//! | [`FETCH_NOW`]     | console (unlock, `fetch-now`), the line coming back, DynDNS | delivery task (provider work) |
//! | [`CHECK_NOW`]     | console (unlock, `fetch-now`), DynDNS after a fetch | delivery task (provider work) |
//! | [`ACME_NOW`]      | console (`tls renew`)                              | delivery task (provider work) |
//! | [`WIPE_REQUEST`] / [`WIPE_DONE`] | `stack::wipe_dead_frames`          | `stack::wipe_task`           |
//! | [`DEVICE_STATE`] (a watch) | the store, after every lifecycle change | the status page, health |
//! | [`TAMPER_OPENED`] | the tamper task (the loop opened)                  | console task (locks)         |
//!
//! Each signal has exactly one waiting task (the table's last column): embassy-sync's `Signal`
//! keeps one waker, and two tasks waiting on the same one wake each other on every poll, a
//! spin that only ends when the signal is raised. embassy-net's `Stack::wait_config_up` is
//! the same (the simulator found the boot and SNTP tasks spinning through DHCP that way).
//!
//! Calls nothing; everyone may use it.
//!
//! Owns: the wake-up signals and the device-state watch, nothing else. Calls: nothing.

use core::sync::atomic::AtomicBool;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_sync::watch::Watch;

/// A wake-up that carries nothing but "due".
pub type Wake = Signal<CriticalSectionRawMutex, ()>;

/// Wakes the delivery task: a message was committed, or the queue changed.
pub static DELIVERY_DUE: Wake = Signal::new();

/// Set at unlock and by `flush`: the next delivery pass tries every queued message regardless
/// of its retry time. Retry times count in seconds since boot (the wall clock may not be
/// known), so times written before a reset mean nothing after it; and the appliance coming
/// back is exactly when waiting mail should go out.
pub static RETRY_ALL_NOW: AtomicBool = AtomicBool::new(false);

/// A fetch from the backup MX now (unlock, the owner's `fetch-now`, the line coming back).
pub static FETCH_NOW: Wake = Signal::new();

/// A DynDNS check at the next wake-up of the provider work (unlock, `fetch-now`).
pub static CHECK_NOW: Wake = Signal::new();

/// An ACME run at the next wake-up of the provider work (`homemx tls renew`).
pub static ACME_NOW: Wake = Signal::new();

/// The tamper loop opened: the console locks the device and raises the alert.
pub static TAMPER_OPENED: Wake = Signal::new();

/// Asks `stack::wipe_task` to wipe the dead stack.
pub static WIPE_REQUEST: Wake = Signal::new();
/// `stack::wipe_task` finished a wipe.
pub static WIPE_DONE: Wake = Signal::new();

/// Whether the device is provisioned and unlocked, as the store last published it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, defmt::Format)]
pub enum DeviceState {
    /// No data key yet (or the flash could not be mounted).
    Unprovisioned,
    /// Provisioned, locked: no configuration or mail is readable.
    Locked,
    /// Unlocked: the stores are open.
    Unlocked,
}

/// The device state, published by the store (`store::Lifecycle`) after every change.
pub static DEVICE_STATE: Watch<CriticalSectionRawMutex, DeviceState, 2> = Watch::new();
