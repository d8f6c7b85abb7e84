//! The `acme` module of a firmware built without the ACME client (the `acme` feature; the
//! STM32H573I-DK for now: with it the image does not fit the board's 1 MiB flash bank). Port 80
//! answers WAN peers 403 as always, and a configured `[tls.acme]` is reported once as not run.
//!
//! Owns: nothing. Calls: `event_log`, `link`, `mail_settings`, `random`.

use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_net::Stack;

use crate::link::ConnectionBuffers;
use crate::random::DerivedRandom;

/// What the status page shows of ACME (nothing in this build).
#[derive(Clone, Default)]
pub struct AcmeStatus {
    /// Unix time and outcome of the last attempt.
    pub last: Option<(u64, bool)>,
    /// Unix time of the next attempt.
    pub next_attempt: Option<u64>,
    /// notAfter of the certificate ACME installed.
    pub expiry: Option<u64>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

/// The ACME state: none.
pub fn status() -> AcmeStatus {
    AcmeStatus::default()
}

/// No challenge is ever pending: every WAN request gets 403.
pub fn wan_http_answer(_get: bool, _path: &str) -> Option<String> {
    None
}

static REPORTED: AtomicBool = AtomicBool::new(false);

/// Says once that a configured `[tls.acme]` is not run by this build.
pub async fn run_if_due(_stack: Stack<'static>, _random: &mut DerivedRandom, _buffers: &mut ConnectionBuffers, _forced: bool) {
    let configured = crate::mail_settings::read(|current| current.and_then(|settings| settings.acme)).is_some();
    if configured && !REPORTED.swap(true, Ordering::Relaxed) {
        crate::event_warning!("acme: [tls.acme] is configured but this firmware build has no ACME client; the certificate in use stays");
    }
}
