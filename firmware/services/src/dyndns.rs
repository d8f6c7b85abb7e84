//! The DynDNS guard (seed §8.1): learn the public address from the configured HTTPS check-IP
//! services (two distinct hosts must agree, a host listed twice counts once; garbage is
//! ignored; several checks without agreement raise `check_ip_unreliable`), read the DynDNS
//! host's A record and the domain's MX records from DNS at every check, judge them
//! (`UpdateGuard::verify`: the MX set always, the A record against the last agreed address, so
//! a broken source does not silence the alarms; an address or MX we did not set is "possible
//! mail diversion"), look up the DANE TLSA record of `_25._tcp.<host name>` and alert
//! (`tlsa_mismatch`) when it is published and no longer names the key in use (`check_tlsa`),
//! and let the `UpdateGuard` decide on a dyndns2 update over HTTPS (Basic auth, the product's
//! User-Agent, only on change, spaced, never in a loop; a fatal answer stops updates until the owner
//! acts; repeated server-side failures raise `dyndns_server_failing`). The guard's state is
//! kept in the encrypted key-value store across reboots.
//!
//! Every HTTPS request uses the one TLS connection of [`crate::link`], verified with the
//! DynDNS trust anchor (the check-IP services must be verifiable with it too).
//!
//! Owns: the DynDNS status for the status page and the HTTPS outcome counter; a check's socket lives on the
//! courier's future, its update path and answer body in the courier's scratch ([`DynDnsScratch`]). Calls: `alerts`, `backup_mx`, `channels`, `event_log`, `instrument`, `link`,
//! `mail_settings`, `random`, `resolver`, `stack`, `store`, `wall_clock`.

use core::cell::RefCell;
use core::sync::atomic::{AtomicU8, Ordering};

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::Duration;
use homemx_dns::message::{Answer, RecordType};
use homemx_dyndns::checkip::{parse_public_address, Agreement, Ipv4};
use homemx_dyndns::dyndns2::{parse_update_response, update_path, UpdateAnswer, MAX_UPDATE_PATH, USER_AGENT};
use homemx_dyndns::guard::{Decision, GuardConfig, UpdateGuard, STATE_LENGTH};
use homemx_http::client::{write_get, Progress, ResponseParser};
use homemx_keystore::secret::SecretBytes;
use homemx_status::alert::{AlertKind, Peer};
use homemx_wire::message::{Credential, TlsService};

use crate::instrument::Operation;
use crate::link::{Link, ConnectionBuffers, TlsStart};
use crate::random::DerivedRandom;
use crate::stack::own_frame;

/// Largest body read from a check-IP service or the update server.
const BODY_CAPACITY: usize = 512;
/// Longest DynDNS password.
const PASSWORD_CAPACITY: usize = 128;

/// A check's update path and the body of its current HTTPS answer (1.3 KB), the courier's
/// scratch's (`delivery`): held in the check's future they made it one of the courier's
/// largest jobs, and the courier's future is as large as its largest job.
pub struct DynDnsScratch {
    /// The dyndns2 update request's path (the host name and the address; no credentials).
    path: [u8; MAX_UPDATE_PATH],
    /// The body of the answer being read.
    body: [u8; BODY_CAPACITY],
}

impl DynDnsScratch {
    /// Zero bytes.
    pub const EMPTY: Self = Self { path: [0; MAX_UPDATE_PATH], body: [0; BODY_CAPACITY] };
}

/// What the status page shows.
#[derive(Clone, Default)]
pub struct DynDnsStatus {
    /// The domain's MX records as DNS last answered (preference, host).
    pub mx: heapless::Vec<(u16, heapless::String<64>), 4>,
    /// The public address as last agreed.
    pub public_ip: Option<Ipv4>,
    /// The host's A record as DNS last answered.
    pub a_record: Option<Ipv4>,
    /// The domain's most preferred MX matches our host (None: not checked yet).
    pub mx_ours: Option<bool>,
    /// Unix time (0: unknown) of the last update and its answer.
    pub last_update: Option<(u64, UpdateAnswer)>,
    /// Updates sent since boot.
    pub updates: u32,
    /// DNS queries and check-IP requests since boot.
    pub checks: u32,
}

/// The DynDNS state for the page.
static DYNDNS_STATUS: Mutex<CriticalSectionRawMutex, RefCell<DynDnsStatus>> = Mutex::new(RefCell::new(DynDnsStatus {
    mx: heapless::Vec::new(),
    public_ip: None,
    a_record: None,
    mx_ours: None,
    last_update: None,
    updates: 0,
    checks: 0,
}));

/// The DynDNS state, for the status page.
pub fn status() -> DynDnsStatus {
    DYNDNS_STATUS.lock(|status| status.borrow().clone())
}

fn guard_key() -> u64 {
    crate::store::Settings::key_for("dyndns-guard", b"")
}

/// One HTTPS GET: status and body (into `body`), or `None` on any failure.
async fn https_get(
    stack: Stack<'static>,
    host: &str,
    path: &str,
    basic_auth: Option<(&str, &[u8])>,
    random: &mut DerivedRandom,
    buffers: &mut ConnectionBuffers,
    body: &mut [u8],
) -> Option<(u16, usize)> {
    let address = crate::resolver::resolve_address(stack, host).await.ok()?;
    let trust_source = crate::store::provider_login(TlsService::DynDns, &mut buffers.anchor, None).await.0?;
    if !trust_source.usable_now() {
        return None;
    }
    let trust = trust_source.trust(&buffers.anchor);
    // Holds the credentials (base64): wiped on every way out.
    let mut request = SecretBytes::<{ MAX_UPDATE_PATH + 512 }>::zeroed();
    let request_length = write_get(request.expose_mut(), host, path, USER_AGENT, basic_auth).ok()?;
    let mut socket = TcpSocket::new(stack, &mut buffers.socket_receive, &mut buffers.socket_transmit);
    socket.set_timeout(Some(Duration::from_secs(30)));
    let connected = socket.connect(IpEndpoint::new(Ipv4Address::from(address).into(), 443)).await.is_ok();
    crate::backup_mx::line_state(connected);
    if !connected {
        return None;
    }
    let mut link = Link::Plain(socket);
    let minimum = crate::mail_settings::read(|current| current.and_then(|settings| settings.dyndns.as_ref().map(|dyndns| dyndns.min_tls)));
    let start = TlsStart {
        read: &mut buffers.read,
        write: &mut buffers.write,
        server_name: host,
        trust,
        random,
        operation: Operation::TlsHandshakeDynDns,
        minimum: crate::link::minimum_tls(minimum.unwrap_or_default()),
    };
    if let Err(error) = link.start_tls(start).await {
        if !error.is_refusal() {
            crate::event_warning!("HTTPS to {}: the TLS handshake broke off: {}", host, error.describe());
            return None;
        }
        HTTPS_OUTCOMES.fetch_or(HTTPS_REFUSED, Ordering::Relaxed);
        crate::alerts::raise_for(AlertKind::CertificateRejected, Peer::DynDns, format_args!("HTTPS to {} refused: {}; nothing was sent", host, error.describe()));
        return None;
    }
    HTTPS_OUTCOMES.fetch_or(HTTPS_VERIFIED, Ordering::Relaxed);
    let mut result = None;
    if link.write_all(&request.expose()[..request_length]).await.is_ok() {
        let mut parser = ResponseParser::new(body);
        let mut input = [0u8; 512];
        loop {
            match link.read(&mut input).await {
                Ok(0) | Err(_) => {
                    if let Ok(response) = parser.connection_closed() {
                        result = Some((response.status, response.body.len()));
                    }
                    break;
                }
                Ok(count) => match parser.feed(&input[..count]) {
                    Ok(Progress::Complete) => {
                        result = parser.response().map(|response| (response.status, response.body.len()));
                        break;
                    }
                    Ok(Progress::NeedMore) => {}
                    Err(_) => break,
                },
            }
        }
    }
    link.close().await;
    result
}

/// What the HTTPS connections of the current check did (bits: [`HTTPS_VERIFIED`],
/// [`HTTPS_REFUSED`]).
static HTTPS_OUTCOMES: AtomicU8 = AtomicU8::new(0);
/// A connection's certificate verified.
const HTTPS_VERIFIED: u8 = 1;
/// A connection's TLS handshake failed.
const HTTPS_REFUSED: u8 = 2;

/// One check (see [`check_once`]); when its HTTPS connections (check-IP sources and the DynDNS
/// server share the DynDNS trust anchor) all verified, a certificate alert they caused ends.
pub async fn check(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, scratch: &mut DynDnsScratch) {
    HTTPS_OUTCOMES.store(0, Ordering::Relaxed);
    check_once(stack, random, buffers, scratch).await;
    if HTTPS_OUTCOMES.load(Ordering::Relaxed) == HTTPS_VERIFIED {
        crate::alerts::clear_for(&[AlertKind::CertificateRejected], Peer::DynDns);
    }
}

/// One check: public address, DNS verification, and an update if the guard decides so.
async fn check_once(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, scratch: &mut DynDnsScratch) {
    let DynDnsScratch { path, body } = scratch;
    let Some((dyndns, sources, domain)) = crate::mail_settings::read(|current| {
        current.and_then(|settings| Some((settings.dyndns.clone()?, settings.check_ip.clone(), settings.postmaster_domain.clone())))
    }) else {
        return;
    };
    // The guard's times persist across reboots: wall-clock seconds (HTTPS with a CA anchor
    // needs the time anyway).
    let Some(now_s) = crate::wall_clock::unix_seconds() else {
        crate::event_warning!("dyndns: waiting for the time (SNTP)");
        return;
    };
    let measurement = crate::instrument::begin(Operation::DynDnsCheck);
    let mut guard = load_guard(guard_config(u64::from(dyndns.check_interval_seconds))).await;

    // 1. The public address: two distinct check-IP hosts must agree (the guard counts each
    //    host once). Non-public answers are answers too: the guard never registers them.
    let mut answers: heapless::Vec<(&str, Option<Ipv4>), 4> = heapless::Vec::new();
    for source in &sources {
        let answer = match own_frame(https_get(stack, source.host.as_str(), source.path.as_str(), None, random, buffers, body)).await {
            Some((200, length)) => parse_public_address(&body[..length]),
            _ => None,
        };
        if answer.is_none() {
            crate::event_warning!("dyndns: check-IP {} gave no usable address (ignored)", source.host.as_str());
        }
        DYNDNS_STATUS.lock(|status| status.borrow_mut().checks += 1);
        let _ = answers.push((source.host.as_str(), answer));
    }
    let agreement = guard.observe_check_ip(&answers, now_s);
    match agreement {
        Agreement::Agreed(_) => {}
        Agreement::Disagreement(first, second) => {
            crate::event_warning!("dyndns: check-IP services disagree ({:?} vs {:?}); no update, DNS judged against the last agreed address", first, second);
        }
        Agreement::NoAnswer => crate::event_warning!("dyndns: check-IP services gave no agreeing answers; no update, DNS judged against the last agreed address"),
        Agreement::TooFewSources => {
            crate::event_warning!("dyndns: fewer than two distinct check-IP services are configured; the public address is never learned (list two in check_ip)")
        }
    }
    own_frame(judge_dns(stack, dyndns.host_name.as_str(), domain.as_str(), &mut guard, now_s, agreement)).await;

    // 3. Update if the guard says so.
    match guard.decide(now_s) {
        Decision::Nothing => {}
        Decision::Stopped(reason) => {
            crate::alerts::raise(AlertKind::DynDnsStopped, format_args!("DynDNS updates are stopped ({:?}) until the owner acts", defmt::Debug2Format(&reason)));
        }
        Decision::Update(ip) => {
            let mut password = SecretBytes::<PASSWORD_CAPACITY>::zeroed();
            let password_length = crate::store::provider_password(Credential::DynDnsPassword, password.expose_mut()).await;
            let answer = match (password_length, update_path(dyndns.host_name.as_str(), ip, path)) {
                (Some(length), Some(path_length)) => {
                    let path = core::str::from_utf8(&path[..path_length]).unwrap_or("/");
                    let secret = password.expose()[..length].trim_ascii_end();
                    match own_frame(https_get(stack, dyndns.server.as_str(), path, Some((dyndns.user_name.as_str(), secret)), random, buffers, body)).await {
                        Some((status, length)) => parse_update_response(status, &body[..length]),
                        None => UpdateAnswer::TransportError,
                    }
                }
                _ => UpdateAnswer::TransportError,
            };
            guard.update_finished(answer, now_s);
            let unix = crate::wall_clock::unix_seconds().unwrap_or(0);
            DYNDNS_STATUS.lock(|status| {
                let mut status = status.borrow_mut();
                status.last_update = Some((unix, answer));
                status.updates += 1;
            });
            crate::event_info!("dyndns: update of {} to {:?}: {}", dyndns.host_name.as_str(), ip, answer.as_str());
            if guard.update_server_failing() {
                crate::alerts::raise(
                    AlertKind::DynDnsServerFailing,
                    format_args!("the DynDNS server answered {} ({} server-side failures in a row)", answer.as_str(), guard.server_failures()),
                );
            } else if guard.server_failures() == 0 {
                crate::alerts::clear(AlertKind::DynDnsServerFailing);
            }
            if answer.class() == homemx_dyndns::dyndns2::AnswerClass::Fatal {
                crate::alerts::raise(AlertKind::DynDnsStopped, format_args!("the DynDNS provider answered {}: updates stop until the owner acts", answer.as_str()));
            }
        }
    }
    if guard.take_dirty() {
        store_guard(&guard).await;
    }
    measurement.end();
}

/// Step 2 of a check: what DNS says (the A record of `host_name`, the MX of `domain`), judged
/// at every check (also without an agreed address), the diversion alarms, the DANE check, the
/// status page's DNS facts and the log line. A function of its own: the two DNS answers (4 KB)
/// then share the courier's future with the HTTPS requests instead of adding to them.
async fn judge_dns(stack: Stack<'static>, host_name: &str, domain: &str, guard: &mut UpdateGuard, now_s: u64, agreement: Agreement) {
    let public = match agreement {
        Agreement::Agreed(ip) => Some(ip),
        _ => None,
    };

    // 2. What DNS says, judged at every check (also without an agreed address).
    // The A records read in place (a copy of the answer, 2 KB, sat in this poll's frame under
    // every lookup below it).
    let a_records = crate::resolver::lookup_addresses(stack, host_name).await.ok();
    let mx_answer = crate::resolver::lookup(stack, domain, RecordType::Mx).await;
    let mx: Option<heapless::Vec<(u16, &str), 8>> = match &mx_answer {
        Ok(Answer::Mx { records, .. }) => Some(records.iter().map(|record| (record.preference, record.exchange.as_str())).collect()),
        Ok(Answer::NameError | Answer::NoData) => Some(heapless::Vec::new()),
        _ => None,
    };
    DYNDNS_STATUS.lock(|status| status.borrow_mut().checks += 2);
    if let Some(records) = &a_records {
        guard.observe_dns_address(records.first().copied(), now_s);
    }
    let verdict = guard.verify(host_name, a_records.as_deref().unwrap_or(&[]), mx.as_deref().unwrap_or(&[]));
    let alarms = guard.alarms(&verdict, a_records.is_some(), mx.is_some());
    match alarms.address_diverted {
        Some(true) => crate::alerts::raise(
            AlertKind::PublicAddressMismatch,
            format_args!(
                "possible mail diversion: {} points to {:?}, we are {:?}",
                host_name,
                verdict.foreign_addresses.first(),
                guard.reference_address()
            ),
        ),
        Some(false) => crate::alerts::clear(AlertKind::PublicAddressMismatch),
        None => {}
    }
    match alarms.mx_diverted {
        Some(true) => {
            crate::alerts::raise(AlertKind::MxMismatch, format_args!("possible mail diversion: the MX of {} is {:?}", domain, verdict.offending_mx.first()))
        }
        Some(false) => crate::alerts::clear(AlertKind::MxMismatch),
        None => {}
    }
    if alarms.unreachable {
        crate::event_warning!("dyndns: the A or MX record is missing");
    }
    // In a frame of its own: its TLSA answer is not in this poll's frame under the A and MX
    // lookups.
    own_frame(check_tlsa(stack)).await;
    if alarms.check_ip_unreliable {
        crate::alerts::raise(
            AlertKind::CheckIpUnreliable,
            format_args!("{} checks in a row without two agreeing check-IP services ({:?})", guard.unreliable_checks(), agreement),
        );
    } else {
        crate::alerts::clear(AlertKind::CheckIpUnreliable);
    }
    DYNDNS_STATUS.lock(|status| {
        let mut status = status.borrow_mut();
        if let Some(mx) = &mx {
            status.mx.clear();
            for (preference, host) in mx.iter().take(4) {
                let mut name = heapless::String::new();
                let _ = name.push_str(&host[..host.len().min(64)]);
                let _ = status.mx.push((*preference, name));
            }
            status.mx_ours = Some(verdict.mx == homemx_dyndns::verify::MxState::OursPreferred);
        }
        if let Some(records) = &a_records {
            status.a_record = records.first().copied();
        }
        status.public_ip = guard.last_agreed();
    });

    crate::event_info!(
        "dyndns: checked: public address {:?}, A record {:?}, {} MX records",
        public,
        a_records.as_ref().and_then(|records| records.first().copied()),
        mx.as_ref().map_or(0, |mx| mx.len())
    );
}

/// DANE (RFC 7672): looks up the TLSA records of `_25._tcp.<host name>` (the name the TLS
/// identity is for) and judges them against the key in use and its issuer
/// ([`homemx_dyndns::dane::judge_tlsa`]): records published and none of the `3 1 1` / `2 1 1`
/// ones matching raises `tlsa_mismatch` (a renewal with a new key would make DANE senders
/// refuse to deliver); a match, or no record at all, clears it. A failed lookup, or no
/// certificate yet, judges nothing. Only the first `MAX_ASSOCIATIONS` (4) records are judged.
async fn check_tlsa(stack: Stack<'static>) {
    use core::fmt::Write as _;
    use homemx_dyndns::dane::{judge_tlsa, Association, TlsaState, SMTP_PREFIX};
    let (Some(host), Some(digests)) = (crate::store::tls_host_name(), crate::store::tls_key_digests()) else {
        return;
    };
    let mut name = heapless::String::<{ SMTP_PREFIX.len() + 253 }>::new();
    if write!(name, "{SMTP_PREFIX}{}", host.as_str()).is_err() {
        return;
    }
    let answer = crate::resolver::lookup(stack, name.as_str(), RecordType::Tlsa).await;
    DYNDNS_STATUS.lock(|status| status.borrow_mut().checks += 1);
    let verdict = match &answer {
        Ok(Answer::Tlsa { records, .. }) => judge_tlsa(
            records.iter().map(|record| Association {
                usage: record.usage,
                selector: record.selector,
                matching_type: record.matching_type,
                data: &record.data,
            }),
            &digests,
        ),
        Ok(Answer::NameError | Answer::NoData) => judge_tlsa([], &digests),
        Ok(_) => return,
        Err(error) => {
            crate::event_warning!("dane: the TLSA lookup of {} failed ({:?}); not judged", name.as_str(), error);
            return;
        }
    };
    let omitted = match &answer {
        Ok(Answer::Tlsa { omitted, .. }) => *omitted,
        _ => 0,
    };
    match verdict.state {
        TlsaState::NotPublished => {
            crate::event_info!("dane: no TLSA record for {} (DANE not in use)", name.as_str());
            crate::alerts::clear(AlertKind::TlsaMismatch);
        }
        TlsaState::Matches { usage } => {
            let what = if usage == homemx_dyndns::dane::USAGE_DANE_TA { "the issuing CA's key" } else { "the key in use" };
            crate::event_info!("dane: the TLSA record {} {} 1 1 matches {}", name.as_str(), usage, what);
            crate::alerts::clear(AlertKind::TlsaMismatch);
        }
        TlsaState::Mismatch => crate::alerts::raise(
            AlertKind::TlsaMismatch,
            format_args!(
                "no TLSA record of {} names the key in use: {} checked (3 1 1 / 2 1 1), {} of kinds not checked, {} malformed, {} not read",
                name.as_str(),
                verdict.supported,
                verdict.unsupported,
                verdict.refused,
                omitted
            ),
        ),
    }
}

/// The guard's rules: the defaults (10 min between updates, 10 min for DNS to settle, 28-day
/// refresh, stop after 2 failed corrections), with spacing and settling no longer than the
/// owner's check interval (a 5-minute check interval judges DNS at every check).
fn guard_config(check_interval_s: u64) -> GuardConfig {
    GuardConfig {
        min_spacing_s: GuardConfig::DEFAULT.min_spacing_s.min(check_interval_s),
        dns_settle_s: GuardConfig::DEFAULT.dns_settle_s.min(check_interval_s),
        ..GuardConfig::DEFAULT
    }
}

/// The owner's answer to a stop (`homemx dyndns-resume`): clears the stop, the backoff and the
/// correction count (the minimum spacing still applies), clears the alert, checks at once.
pub async fn owner_resume() {
    let interval = crate::mail_settings::read(|current| current.and_then(|settings| settings.dyndns.as_ref().map(|dyndns| dyndns.check_interval_seconds)));
    let Some(interval) = interval else {
        return;
    };
    let mut guard = load_guard(guard_config(u64::from(interval))).await;
    guard.owner_reset();
    store_guard(&guard).await;
    crate::alerts::clear(AlertKind::DynDnsStopped);
    crate::alerts::clear(AlertKind::DynDnsServerFailing);
    crate::event_info!("dyndns: updates resumed by the owner");
    crate::channels::CHECK_NOW.signal(());
    crate::channels::FETCH_NOW.signal(());
}

async fn load_guard(config: GuardConfig) -> UpdateGuard {
    let mut state = [0u8; STATE_LENGTH];
    let stored = match crate::store::open().await {
        Some(mut stores) => stores.settings.fetch(guard_key(), &mut state).await.ok().flatten(),
        None => None,
    };
    stored
        .and_then(|length| UpdateGuard::decode(config, &state[..length]).ok())
        .unwrap_or_else(|| UpdateGuard::new(config))
}

async fn store_guard(guard: &UpdateGuard) {
    if let Some(mut stores) = crate::store::open().await {
        let _ = stores.settings.store(guard_key(), &guard.encode()).await;
    }
}
