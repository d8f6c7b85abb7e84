//! Mail-flow facts for the status page and `/status.json`: counters since boot and the state
//! of the smarthost connection. Written by the MX, the submission listener and the delivery
//! task; read by the status page. Nothing here is secret (counts, times, TLS details).
//!
//! Owns: the mail-flow counters and smarthost state (`MAIL_STATUS`). Calls: `mailbox_probe`, `wall_clock`.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_status::{MailboxFailure, MailboxReach};

/// Counters and the smarthost state.
#[derive(Clone, Copy, Default)]
pub struct MailStatus {
    /// Messages accepted from the internet (port 25).
    pub received: u32,
    /// Messages accepted from LAN clients for the outside.
    pub submitted: u32,
    /// Recipients delivered to the LAN mailbox host.
    pub delivered_local: u32,
    /// Recipients accepted by the smarthost.
    pub relayed: u32,
    /// Delivery attempts that ended deferred.
    pub deferred: u32,
    /// Recipients that failed for good.
    pub bounced: u32,
    /// Non-delivery reports generated.
    pub ndns: u32,
    /// Last smarthost success: Unix seconds (0: time unknown then) and uptime seconds.
    pub smarthost_success: Option<(u64, u64)>,
    /// How the smarthost was verified at the last success: true = pinned key, false = CA.
    pub smarthost_pinned: bool,
    /// The last smarthost problem, as text for the page.
    pub smarthost_problem: Option<&'static str>,
    /// When the last smarthost problem happened (Unix seconds, if the time was known).
    pub smarthost_failure_unix: Option<u64>,
    /// The LAN mailbox host at the last deliveries and probes (monotonic ms), for the headline.
    pub mailbox: MailboxReach,
    /// When a delivery or probe last talked to (or tried) the mailbox host (monotonic ms).
    pub mailbox_contact_ms: Option<u64>,
}

/// The mail status.
static MAIL_STATUS: Mutex<CriticalSectionRawMutex, RefCell<MailStatus>> = Mutex::new(RefCell::new(MailStatus {
    received: 0,
    submitted: 0,
    delivered_local: 0,
    relayed: 0,
    deferred: 0,
    bounced: 0,
    ndns: 0,
    smarthost_success: None,
    smarthost_pinned: false,
    smarthost_problem: None,
    smarthost_failure_unix: None,
    mailbox: MailboxReach { configured: false, last_success_ms: None, failing_since_ms: None, failure: None },
    mailbox_contact_ms: None,
}));

/// Changes the status.
pub fn update(change: impl FnOnce(&mut MailStatus)) {
    MAIL_STATUS.lock(|status| change(&mut status.borrow_mut()));
}

/// A copy of the status.
pub fn snapshot() -> MailStatus {
    MAIL_STATUS.lock(|status| *status.borrow())
}

/// Records a smarthost problem for the page.
pub fn smarthost_problem(text: &'static str) {
    let unix = crate::wall_clock::unix_seconds();
    update(|status| {
        status.smarthost_problem = Some(text);
        status.smarthost_failure_unix = unix;
    });
}

/// Records a contact with the mailbox host (a delivery or a probe): a success ends an
/// outage; the first failure after a success starts one.
pub fn mailbox_contact(result: Result<(), MailboxFailure>) {
    let now = embassy_time::Instant::now().as_millis();
    update(|status| {
        let mailbox = &mut status.mailbox;
        match result {
            Ok(()) => {
                if mailbox.failing_since_ms.is_some() {
                    defmt::info!("mailbox host: reachable again");
                }
                mailbox.last_success_ms = Some(now);
                mailbox.failing_since_ms = None;
                mailbox.failure = None;
            }
            Err(failure) => {
                if mailbox.failing_since_ms.is_none() {
                    defmt::warn!("mailbox host: {=str}; the status page says so", failure.name());
                }
                mailbox.failing_since_ms = Some(mailbox.failing_since_ms.unwrap_or(now));
                mailbox.failure = Some(failure);
            }
        }
        status.mailbox_contact_ms = Some(now);
    });
}

/// Whether the mailbox host went [`crate::mailbox_probe::probe_due_after`] without contact, for
/// a task that looks every `poll`.
pub fn mailbox_probe_due(poll: embassy_time::Duration) -> bool {
    let now = embassy_time::Instant::now().as_millis();
    let interval = crate::mailbox_probe::probe_due_after(poll).as_millis();
    snapshot().mailbox_contact_ms.is_none_or(|contact| now.saturating_sub(contact) >= interval)
}
