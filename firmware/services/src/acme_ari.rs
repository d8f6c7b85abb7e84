//! ACME Renewal Information (RFC 9773) for the device's CA-issued certificate: when the CA's
//! directory names `renewalInfo`, the renewal window it suggests for the certificate in use
//! (its ARI identifier from the leaf), asked again when the server's `Retry-After` (bounded to
//! one hour .. one day) has passed. `acme` puts the window into its schedule
//! (`homemx_acme::renewal::next_attempt` picks a time in it), so a CA that revokes or shortens
//! certificates early gets them renewed in time. A CA without ARI (Pebble 2.4, for one) is
//! asked again a day later; the schedule then stays at two thirds of the lifetime.
//!
//! Both requests are unsigned GETs over the courier's connection buffers (`acme_exchange`);
//! the bodies are on the heap only while they are read.
//!
//! Owns: the ARI window and when to ask next. Calls: `acme_exchange`, `event_log`, `link`, `random`,
//! `stack`, `store`.

use alloc::vec::Vec;
use core::cell::RefCell;

use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use homemx_acme::client::{Request, Response};
use homemx_acme::objects::Directory;

use crate::link::ConnectionBuffers;
use crate::random::DerivedRandom;
use crate::stack::{own_frame, own_frame_made};

/// Largest body read (a directory or a renewal information: well under 2 KB).
const BODY_CAPACITY: usize = 4 * 1024;
/// When a CA without ARI is asked again.
const NO_ARI_RECHECK: u64 = 24 * 60 * 60;
/// When a failed look (network, malformed answer) is tried again.
const FAILED_RECHECK: u64 = 60 * 60;

/// The last answer: the time chosen in its window and when to ask again.
#[derive(Clone, Copy)]
struct Advice {
    renew_at: Option<u64>,
    next_check: u64,
}

static ADVICE: Mutex<CriticalSectionRawMutex, RefCell<Option<Advice>>> = Mutex::new(RefCell::new(None));

/// When to renew the CA-issued certificate in use by the CA's suggestion: a uniformly random
/// time in its window (RFC 9773 section 4.2; now if the window has begun), asked of the CA
/// when due, else the last answer's. `None`: no CA-issued certificate, no ARI, or no usable
/// answer (the caller's own schedule holds).
pub async fn renewal_time(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, now: u64) -> Option<u64> {
    let last = ADVICE.lock(|advice| *advice.borrow());
    if let Some(last) = last.filter(|last| now < last.next_check) {
        return last.renew_at;
    }
    let leaf = crate::store::acme_current_leaf().await?;
    let (window, next_check) = ask(stack, random, buffers, &leaf, now).await;
    let renew_at = window.map(|(start, end)| {
        let from = start.max(now);
        if end <= from {
            now
        } else {
            from + random.next_u64() % (end - from)
        }
    });
    ADVICE.lock(|cell| *cell.borrow_mut() = Some(Advice { renew_at, next_check }));
    renew_at
}

/// Forgets the last answer (a new certificate was installed: its window is another).
pub fn forget() {
    ADVICE.lock(|advice| *advice.borrow_mut() = None);
}

/// The directory, then the renewal information of `leaf` (the CA-issued one in use): the
/// window, and when to ask again.
async fn ask(
    stack: Stack<'static>,
    random: &mut DerivedRandom,
    buffers: &mut ConnectionBuffers,
    leaf: &[u8],
    now: u64,
) -> (Option<(u64, u64)>, u64) {
    let failed = (None, now + FAILED_RECHECK);
    let Some(account) = own_frame(crate::store::acme_account()).await else {
        return failed;
    };
    let Some(directory_url) = homemx_acme::url::parse(account.directory.as_str()) else {
        return failed;
    };
    let mut body = Vec::new();
    let mut header_store = Vec::new();
    if body.try_reserve_exact(BODY_CAPACITY).is_err() || header_store.try_reserve_exact(homemx_acme::exchange::HEADER_STORE).is_err() {
        return failed;
    }
    body.resize(BODY_CAPACITY, 0);
    header_store.resize(homemx_acme::exchange::HEADER_STORE, 0);
    let get = Request { url: directory_url, body: None, accept: "application/json" };
    let mut directory = None;
    let mut read_directory = |response: &Response<'_>, _now: u64| {
        directory = (response.status == 200).then(|| Directory::parse(response.body).ok()).flatten();
    };
    // Each exchange made and polled in a frame of its own (`stack::own_frame_made`): made here,
    // its arguments' part was put together in this poll's frame, under the TLS handshake.
    let answered = own_frame_made(|| crate::acme_exchange::exchange(stack, &mut *random, buffers, &get, &mut body, &mut header_store, &mut read_directory)).await;
    if answered.is_err() {
        return failed;
    }
    let Some(directory) = directory else {
        crate::event_warning!("acme: ARI: the directory could not be read");
        return failed;
    };
    let Some(request) = homemx_acme::ari::renewal_info_request(&directory, leaf) else {
        if directory.renewal_info.is_none() {
            crate::event_info!("acme: the CA offers no renewal information (ARI): renewal at two thirds of the lifetime");
        }
        return (None, now + NO_ARI_RECHECK);
    };
    let mut advice = homemx_acme::ari::RenewalAdvice { window: None, next_check: now + FAILED_RECHECK };
    let mut read_advice = |response: &Response<'_>, now: u64| advice = homemx_acme::ari::advice(response, now);
    let answered = own_frame_made(|| crate::acme_exchange::exchange(stack, &mut *random, buffers, &request, &mut body, &mut header_store, &mut read_advice)).await;
    if answered.is_err() {
        return failed;
    }
    match advice.window {
        Some((start, end)) => crate::event_info!("acme: ARI suggests renewing between {} and {}; asking again at {}", start, end, advice.next_check),
        None => crate::event_warning!("acme: ARI: no usable renewal window in the CA's answer; asking again at {}", advice.next_check),
    }
    (advice.window, advice.next_check)
}
