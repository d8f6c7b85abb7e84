//! The device's ACME run (issue 17): obtains the certificate of the TLS identity's host name
//! from the `[tls.acme]` CA with homemx-acme's sans-I/O client, between the courier's other
//! jobs and with its one set of connection buffers, and installs the checked chain as the
//! identity's CA-issued chain (`store::install_acme_chain`: the other slot, then one header
//! write; the TLS listener reloads). Renewal: `homemx_acme::renewal::next_attempt` (two thirds
//! of the lifetime less jitter; after failures an exponential backoff and the server's
//! `Retry-After`); on failure the certificate in use stays. `homemx tls renew` forces a run
//! (`channels::ACME_NOW`).
//!
//! Connections: one per request (`acme_exchange`: HTTPS with the `TlsService::Acme` anchor,
//! `Connection: close`); the CA's renewal information (ARI) by `acme_ari`. The account key is
//! the device's own (`store::acme_keys`: P-256, made once and kept in the encrypted store); the
//! certificate key is the TLS identity's (`reuse_key = true`, the default: a published TLSA
//! record stays valid), or with `reuse_key = false` a new one per attempt, installed with its
//! chain. The response body and the client's state are on the heap only while a run lasts.
//!
//! The pending HTTP-01 challenge is published for port 80's WAN side ([`wan_http_answer`]),
//! and withdrawn when the run ends; a pending TLS-ALPN-01 challenge by `acme_tls_alpn` on port
//! 443, whose listeners run beside the attempt's requests and only then. Progress and results
//! go to the event log (never a key or the EAB MAC key); [`status`] is for the status page (its
//! ACME card and `/status.json`'s `acme`). Each call of [`run_if_due`] (every courier pass, a
//! few seconds apart) also has the identity look at the certificate's expiry alert again
//! (`store::check_tls_expiry_alert`).
//!
//! Owns: the ACME schedule and status, the pending challenge. Calls: `acme_ari`, `acme_exchange`,
//! `acme_tls_alpn`, `event_log`, `instrument`, `link`, `mail_settings`, `random`, `stack`, `store`, `wall_clock`.

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use embassy_net::Stack;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_futures::select::{select, Either};
use embassy_time::{Duration, Timer};
use homemx_acme::client::{Action, Client, Config, ExternalAccount, PendingChallenge, Response};
use homemx_acme::objects::ChallengeKind;
use homemx_acme::renewal::{self, Schedule};
use homemx_acme::wan_http::{self, WanAnswer};
use homemx_keystore::secret::SecretBytes;
use homemx_tls::identity::{DeviceKey, HostName};
use homemx_wire::config::AcmeChallenge;
use homemx_wire::message::Credential;

use crate::link::ConnectionBuffers;
use crate::random::DerivedRandom;
use crate::stack::{own_frame, own_frame_made};

/// Largest response body read (JSON objects and the PEM chain; homemx-acme reads at most
/// `exchange::MAX_BODY`, a CA's answers are a few KB).
const BODY_CAPACITY: usize = 16 * 1024;
/// Requests without an answer (connection, TLS, timeout) before the attempt is given up.
const TRANSPORT_RETRIES: u32 = 3;
/// Most requests in one attempt (a bound against a server that keeps the client polling).
const MAX_REQUESTS: u32 = 40;

/// What the status page shows of ACME.
#[derive(Clone, Default)]
pub struct AcmeStatus {
    /// Unix time and outcome of the last attempt (`true`: a certificate was installed).
    pub last: Option<(u64, bool)>,
    /// Why the last attempt failed (the client's error, the ACME problem detail included; cut
    /// at 200 bytes).
    pub last_error: homemx_status::AcmeError,
    /// Unix time of the next attempt.
    pub next_attempt: Option<u64>,
    /// notAfter of the certificate ACME installed (or found in use).
    pub expiry: Option<u64>,
    /// Failed attempts since the last success.
    pub failures: u32,
}

static STATUS: Mutex<CriticalSectionRawMutex, RefCell<AcmeStatus>> = Mutex::new(RefCell::new(AcmeStatus {
    last: None,
    last_error: heapless::String::new(),
    next_attempt: None,
    expiry: None,
    failures: 0,
}));

/// The HTTP-01 challenge in progress (its strings on the heap), for port 80's WAN side.
static PENDING: Mutex<CriticalSectionRawMutex, RefCell<Option<PendingChallenge>>> = Mutex::new(RefCell::new(None));

/// The ACME state, for the status page.
pub fn status() -> AcmeStatus {
    STATUS.lock(|status| status.borrow().clone())
}

/// What port 80 answers a peer outside the LAN: the key authorization for the pending
/// HTTP-01 token's path, `None` (403) for anything else.
pub fn wan_http_answer(get: bool, path: &str) -> Option<String> {
    PENDING.lock(|pending| match wan_http::route(get, path, pending.borrow().as_ref()) {
        WanAnswer::KeyAuthorization(answer) => Some(String::from(answer)),
        WanAnswer::Forbidden => None,
    })
}

fn publish_pending(challenge: Option<&PendingChallenge>) {
    let changed = PENDING.lock(|pending| {
        let mut pending = pending.borrow_mut();
        let changed = pending.as_ref() != challenge;
        if changed {
            *pending = challenge.cloned();
        }
        changed
    });
    // The token is public (the CA fetches it in clear); the key authorization is not logged.
    match challenge {
        Some(challenge) if changed => crate::event_info!("acme: answering the http-01 challenge on port 80, token {}", challenge.token.as_str()),
        None if changed => crate::event_info!("acme: no challenge pending any more"),
        _ => {}
    }
}

/// Runs an attempt when one is due (or `forced`): the courier calls it between its other jobs.
/// Its steps (the renewal information, the attempt, each request's exchange, the store's
/// account, keys, validity and install) are polled in frames of their own ([`own_frame`]):
/// inlined, all their temporaries sat in this one poll frame (4.9 KB), under every TLS handshake
/// of the run (the deepest stack path measured).
pub async fn run_if_due(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, forced: bool) {
    let Some(challenge) = crate::mail_settings::read(|current| current.and_then(|settings| settings.acme)) else {
        return;
    };
    // The expiry alert follows the clock, not only the installs (a 6-day certificate's lead
    // is 36 hours, the identity's own refresh is hourly).
    crate::store::check_tls_expiry_alert();
    let Some(now) = crate::wall_clock::unix_seconds() else {
        return;
    };
    let next = STATUS.lock(|status| status.borrow().next_attempt);
    let next = match next {
        Some(next) => next,
        None => {
            // First look since boot: due now unless a CA-issued chain is in use.
            let next = match own_frame(crate::store::acme_current_validity()).await {
                Some((not_before, not_after)) => {
                    let schedule = Schedule { not_before, not_after, window: None, failures: 0, last_attempt: None, retry_after: None };
                    STATUS.lock(|status| status.borrow_mut().expiry = Some(not_after));
                    renewal::next_attempt(&schedule, random.next_u64())
                }
                None => now,
            };
            STATUS.lock(|status| status.borrow_mut().next_attempt = Some(next));
            next
        }
    };
    // The CA's ARI window (RFC 9773), if it offers one, may bring the renewal forward (never
    // while backing off after failures).
    let backing_off = STATUS.lock(|status| status.borrow().failures) > 0;
    let next = match own_frame(crate::acme_ari::renewal_time(stack, random, buffers, now)).await {
        Some(at) if !backing_off && at < next => {
            STATUS.lock(|status| status.borrow_mut().next_attempt = Some(at));
            at
        }
        _ => next,
    };
    if !forced && now < next {
        return;
    }
    let outcome = own_frame(attempt(stack, random, buffers, challenge)).await;
    if outcome.is_ok() {
        // A new certificate: its renewal information is another.
        crate::acme_ari::forget();
    }
    publish_pending(None);
    let now = crate::wall_clock::unix_seconds().unwrap_or(now);
    let (failures, retry_after) = match &outcome {
        Ok(_) => (0, None),
        Err((_, retry_after)) => (STATUS.lock(|status| status.borrow().failures) + 1, *retry_after),
    };
    let validity = match &outcome {
        Ok(validity) => Some(*validity),
        Err(_) => own_frame(crate::store::acme_current_validity()).await,
    };
    let (not_before, not_after) = validity.unwrap_or((now, now));
    let schedule = Schedule { not_before, not_after, window: None, failures, last_attempt: Some(now), retry_after };
    let next = renewal::next_attempt(&schedule, random.next_u64());
    STATUS.lock(|status| {
        let mut status = status.borrow_mut();
        status.last = Some((now, outcome.is_ok()));
        status.failures = failures;
        status.next_attempt = Some(next);
        match &outcome {
            Ok((_, not_after)) => {
                status.expiry = Some(*not_after);
                status.last_error.clear();
            }
            Err((reason, _)) => {
                status.last_error = homemx_status::acme_error(reason);
                if let Some((_, not_after)) = validity {
                    status.expiry = Some(not_after);
                }
            }
        }
    });
    match outcome {
        Ok((_, not_after)) => crate::event_info!("acme: next renewal attempt at {} (certificate valid until {})", next, not_after),
        Err((reason, _)) => {
            crate::event_warning!("acme: attempt failed ({} in a row): {}; the certificate in use stays; next attempt at {}", failures, reason.as_str(), next)
        }
    }
}

/// One issuance: `Ok((notBefore, notAfter))` of the installed chain, or why not and the
/// server's `Retry-After`.
async fn attempt(
    stack: Stack<'static>,
    random: &mut DerivedRandom,
    buffers: &mut ConnectionBuffers,
    challenge: AcmeChallenge,
) -> Result<(u64, u64), (String, Option<u64>)> {
    let fail = |reason: &str| Err((String::from(reason), None));
    // Ended once the chain is installed; any other return (dropped) marks a cancel.
    let measurement = crate::instrument::begin(crate::instrument::Operation::AcmeIssuance);
    let Some(account) = own_frame(crate::store::acme_account()).await else {
        return fail("no [tls.acme] account in the configuration");
    };
    let Some(directory) = homemx_acme::url::parse(account.directory.as_str()) else {
        return fail("the directory URL is not a usable https:// URL");
    };
    let Ok(host) = HostName::new(account.name.as_str()) else {
        return fail("the name cannot be in a certificate");
    };
    let mut config = Config::new(directory, host.clone(), account.agree_terms);
    if let Some(contact) = &account.contact {
        config.contact.push(alloc::format!("mailto:{}", contact.as_str()));
    }
    config.challenges = alloc::vec![match challenge {
        AcmeChallenge::Http01 => ChallengeKind::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeKind::TlsAlpn01,
    }];
    if let Some(key_id) = &account.eab_key_id {
        let mut mac = SecretBytes::<128>::zeroed();
        let Some(length) = own_frame(crate::store::provider_password(Credential::AcmeEabKey, mac.expose_mut())).await else {
            return fail("External Account Binding is configured but its MAC key is not set");
        };
        let mac_key = core::str::from_utf8(&mac.expose()[..length]).ok().and_then(homemx_acme::base64url::decode);
        let Some(mac_key) = mac_key else {
            return fail("the External Account Binding MAC key is not base64url");
        };
        config.external_account = Some(ExternalAccount { key_id: String::from(key_id.as_str()), mac_key });
    }
    let mut key_random = random.rng();
    let Some((account_key, certificate_key)) = own_frame(crate::store::acme_keys(&mut key_random, account.reuse_key)).await else {
        return fail("the keys could not be read or made (locked?)");
    };
    crate::event_info!("acme: requesting a certificate for {} from {}", account.name.as_str(), account.directory.as_str());
    let mut client = new_client(config, &account_key, &certificate_key);
    let mut body = Vec::new();
    let mut header_store = Vec::new();
    if body.try_reserve_exact(BODY_CAPACITY).is_err() || header_store.try_reserve_exact(homemx_acme::exchange::HEADER_STORE).is_err() {
        return fail("not enough heap for the response buffer");
    }
    body.resize(BODY_CAPACITY, 0);
    header_store.resize(homemx_acme::exchange::HEADER_STORE, 0);
    let buffers = Buffers { connection: buffers, body: &mut body, header_store: &mut header_store };
    let requests = run_requests(stack, random, buffers, &mut client, (&certificate_key, &host));
    // TLS-ALPN-01: port 443 answers for as long as the attempt runs, beside the requests (a
    // validation may come while the client polls).
    let outcome = match challenge {
        AcmeChallenge::TlsAlpn01 => match select(requests, own_frame(crate::acme_tls_alpn::respond(stack))).await {
            Either::First(outcome) => outcome,
            Either::Second(never) => match never {},
        },
        AcmeChallenge::Http01 => requests.await,
    };
    crate::acme_tls_alpn::publish(None, &certificate_key, &host, 0, random);
    outcome?;
    drop(body);
    drop(header_store);
    let Some(issued) = client.issued() else {
        return fail("done without a chain");
    };
    let mut der = Vec::new();
    for certificate in &issued.chain {
        der.extend_from_slice(certificate.as_ref());
    }
    let leaf = issued.chain.first().and_then(|leaf| homemx_tls::identity::CertificateSummary::of(leaf.as_ref()));
    let count = issued.chain.len();
    drop(client);
    let new_key = (!account.reuse_key).then_some(&certificate_key);
    if let Err(error) = own_frame(crate::store::install_acme_chain(&der, new_key)).await {
        crate::event_warning!("acme: the issued chain could not be installed: {:?}", error);
        return fail("the issued chain could not be stored; the certificate in use stays");
    }
    let (not_before, not_after) = leaf.map_or((0, 0), |leaf| (leaf.not_before, leaf.not_after));
    measurement.end();
    crate::event_info!("acme: certificate for {} installed ({} certificates in the chain, valid until {})", account.name.as_str(), count, not_after);
    Ok((not_before, not_after))
}

/// The attempt's client, made in a frame of its own: inlined, its making (the account key's
/// JWK and thumbprint, the key comparison) left 1.5 KB of temporaries in [`attempt`]'s poll
/// frame under every request's TLS handshake, the deepest stack path measured.
#[inline(never)]
fn new_client<'k>(config: Config, account_key: &'k DeviceKey, certificate_key: &'k DeviceKey) -> Client<'k> {
    Client::new(config, account_key, certificate_key)
}

/// The buffers of one attempt's requests.
struct Buffers<'a> {
    connection: &'a mut ConnectionBuffers,
    body: &'a mut [u8],
    header_store: &'a mut [u8],
}

/// Sends the client's requests until it is done or has failed; publishes each pending
/// challenge (HTTP-01 for port 80, TLS-ALPN-01 for port 443, made with `identity`'s key for its
/// host name) before the request that may start its validation.
/// The client's next step (its requests are signed here, JWS and all), in a frame of its own;
/// never inlined, as [`receive`].
#[inline(never)]
fn next_action(client: &mut Client<'_>) -> Action {
    client.poll()
}

/// Hands a response to the client, in a frame of its own. Never inlined: inlined (through
/// [`crate::acme_exchange::exchange`]'s callback), the client's parsing and checks kept their
/// temporaries in `run_requests`'s frame through every request's TLS handshake, on the deepest
/// stack path measured in QEMU.
#[inline(never)]
fn receive(client: &mut Client<'_>, response: &Response<'_>, now: u64) {
    client.receive(response, now)
}

async fn run_requests(
    stack: Stack<'static>,
    random: &mut DerivedRandom,
    buffers: Buffers<'_>,
    client: &mut Client<'_>,
    identity: (&DeviceKey, &HostName),
) -> Result<(), (String, Option<u64>)> {
    let fail = |reason: &str| Err((String::from(reason), None));
    let mut requests = 0;
    let mut transport_failures = 0;
    loop {
        match next_action(client) {
            Action::Done => return Ok(()),
            Action::Failed => {
                let reason = client.error().map_or_else(|| String::from("failed"), |error| alloc::format!("{error}"));
                return Err((reason, client.retry_after()));
            }
            Action::Send { request, delay_ms } => {
                requests += 1;
                if requests > MAX_REQUESTS {
                    return fail("too many requests in one attempt");
                }
                let pending = client.pending_challenge();
                publish_pending(pending.filter(|pending| pending.kind == ChallengeKind::Http01));
                let now = crate::wall_clock::unix_seconds().unwrap_or(0);
                let (key, host) = identity;
                crate::acme_tls_alpn::publish(pending.filter(|pending| pending.kind == ChallengeKind::TlsAlpn01), key, host, now, random);
                if delay_ms > 0 {
                    Timer::after(Duration::from_millis(u64::from(delay_ms))).await;
                }
                let mut receive = |response: &Response<'_>, now: u64| receive(client, response, now);
                // Made in its own frame: made here, its arguments' part (1.4 KB) was put together
                // twice in this poll's frame, under the handshake.
                let answered = own_frame_made(|| {
                    crate::acme_exchange::exchange(stack, &mut *random, buffers.connection, &request, buffers.body, buffers.header_store, &mut receive)
                })
                .await;
                if let Err(reason) = answered {
                    transport_failures += 1;
                    crate::event_warning!("acme: {} to {}: {}", if request.body.is_some() { "POST" } else { "GET" }, request.url.host(), reason);
                    if transport_failures >= TRANSPORT_RETRIES {
                        return fail(reason);
                    }
                    Timer::after(Duration::from_secs(2)).await;
                }
            }
        }
    }
}
