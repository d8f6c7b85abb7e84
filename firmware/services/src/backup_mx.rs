//! Fetching what landed at the provider's backup MX (seed §7): POP3 with TLS forced and
//! verified exactly as for the smarthost (the same [`Link`], trust anchors and checks; no TLS,
//! a stripped or refused STLS, a bad certificate: no login is attempted, the alert is raised).
//!
//! Loss- and duplicate-free, power cuts included:
//! 1. Before a fetched message is committed to the spool, a *pending* record (its UIDL and the
//!    spool id it will get) is written to the encrypted key-value store.
//! 2. The spool commit, the *seen* record for the UIDL and the removal of the pending record
//!    happen while this task holds the vault, so delivery cannot remove the message before
//!    its UIDL is recorded.
//! 3. Only then DELE; deletions become final at QUIT. A dropped connection before QUIT rolls
//!    them back at the server, and the seen record keeps the message from being fetched twice
//!    (the next run deletes it without retrieving it).
//! 4. After a power cut, [`reconcile`] runs at unlock, before delivery: a pending record whose
//!    message is in the spool is committed as seen; one whose message is not was never
//!    committed and is dropped (the message is fetched again).
//!
//! Seen records are keyed by the UIDL; [`homemx_pop3::SeenRing`] (its module says what is
//! stored and in which order it is written) keeps their keys, bounds them to one listing's worth
//! and names those a complete listing no longer shows. The envelope recipient comes
//! from the provider's `Delivered-To` / `X-Original-To` / `Envelope-To` header; a recipient
//! that is not one of ours goes to postmaster@ (fetched mail is never relayed out).
//!
//! Owns: the fetch status for the status page and the line-down flag; a fetch's listing, header and
//! spool writer ([`FetchScratch`]) are the courier's scratch's (`delivery`), its socket and session
//! live on the courier's future. Calls: `alerts`, `channels`, `event_log`, `instrument`, `link`, `mail_settings`,
//! `mail_status`, `random`, `resolver`, `store`, `wall_clock`.

use core::fmt::Write as _;
use core::net::{IpAddr, Ipv4Addr};

use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Ipv4Address, Stack};
use embassy_time::Duration;
use homemx_pop3::{
    envelope_recipient, record_holds, Inserted, Pop3Config, Pop3Event, Pop3Session, SeenRing, TlsMode as Pop3Tls, SEEN_PAGES, SEEN_PAGE_MAX,
};
use homemx_smtp::address::parse_forward_path;
use homemx_smtp::RecipientDecision;
use homemx_spool::{Envelope, MessageWriter};
use homemx_status::alert::{AlertKind, Peer};
use homemx_status::FetchResult;
use homemx_tls::Trust;
use homemx_wire::config::{BackupMx, TlsMode};
use homemx_exchange::{exchange, flush, Inbox};
use homemx_keystore::secret::SecretBytes;
use homemx_wire::message::{Credential, TlsService};

use crate::instrument::{Measurement, Operation};
use crate::link::{Link, ConnectionBuffers, TlsStart};
use crate::random::DerivedRandom;

/// Headers that name the envelope recipient at common providers, tried in this order.
const RECIPIENT_HEADERS: [&str; 3] = ["Delivered-To", "X-Original-To", "Envelope-To"];
/// Header bytes kept to find the recipient before the spool message is begun.
const HEADER_CAPACITY: usize = 2048;
/// Largest fetched message.
const MESSAGE_SIZE_MAX: u64 = 4 * 1024 * 1024;
/// Longest POP3 password.
const PASSWORD_CAPACITY: usize = 128;

fn seen_key(uidl: &str) -> u64 {
    crate::store::Settings::key_for("pop3-seen", uidl.as_bytes())
}

const _: () = assert!(SEEN_PAGE_MAX <= homemx_spool::KEY_VALUE_CAPACITY, "a ring page fills one key-value record");

/// Page 0 has the key of the former one-record ring (so its keys are read as they were).
fn ring_page_key(page: usize) -> u64 {
    match page {
        0 => crate::store::Settings::key_for("pop3-seen-ring", b""),
        page => crate::store::Settings::key_for("pop3-seen-ring", &[page as u8]),
    }
}

/// The ring as stored (pages that cannot be read count as empty).
async fn load_ring(stores: &mut crate::store::OpenStores) -> SeenRing {
    let mut ring = SeenRing::new();
    let mut page = [0u8; SEEN_PAGE_MAX];
    for index in 0..SEEN_PAGES {
        let length = stores.settings.fetch(ring_page_key(index), &mut page).await.ok().flatten().unwrap_or(0);
        ring.load_page(&page[..length]);
    }
    ring
}

/// Stores the ring's changed pages, in ascending order (see [`homemx_pop3::SeenRing`]).
async fn store_ring(stores: &mut crate::store::OpenStores, ring: &mut SeenRing) -> Result<(), ()> {
    let mut page = [0u8; SEEN_PAGE_MAX];
    for index in ring.take_dirty_pages() {
        stores.settings.store(ring_page_key(index), ring.encode_page(index, &mut page)).await.map_err(|_| ())?;
    }
    Ok(())
}

fn pending_key() -> u64 {
    crate::store::Settings::key_for("pop3-pending", b"")
}

/// Set while provider connections fail (the DSL line or the provider is down).
static LINE_DOWN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The last fetch, for the status page.
pub fn fetch_status() -> FetchStatus {
    FETCH_STATUS.lock(|status| status.get())
}

/// Tells whether a connection to a provider service (smarthost, backup MX, DynDNS) could be
/// made. When the line comes back after a failure, a fetch runs at once: mail the backup MX
/// took while we were unreachable comes home without waiting for the poll interval.
pub fn line_state(up: bool) {
    let was_down = LINE_DOWN.swap(!up, core::sync::atomic::Ordering::Relaxed);
    if up && was_down {
        crate::event_info!("the line is back: fetching from the backup MX now");
        crate::channels::FETCH_NOW.signal(());
    }
}

/// What the status page shows of the last fetch.
#[derive(Clone, Copy, Default)]
pub struct FetchStatus {
    /// Unix time (0: unknown) of the last attempt, and its result.
    pub last_attempt: Option<(u64, FetchResult)>,
    /// Messages fetched by the last attempt.
    pub fetched: u32,
    /// Unix time of the last successful fetch.
    pub last_success_unix: Option<u64>,
}

/// The last fetch.
static FETCH_STATUS: embassy_sync::blocking_mutex::Mutex<
    embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex,
    core::cell::Cell<FetchStatus>,
> = embassy_sync::blocking_mutex::Mutex::new(core::cell::Cell::new(FetchStatus { last_attempt: None, fetched: 0, last_success_unix: None }));

/// Finishes what a power cut interrupted (see the module header). Call at unlock, with the
/// vault held, before delivery runs.
pub async fn reconcile(stores: &mut crate::store::OpenStores) {
    let mut pending = [0u8; 4 + homemx_pop3::UIDL_MAX];
    let Ok(Some(length)) = stores.settings.fetch(pending_key(), &mut pending).await else {
        return;
    };
    if length < 5 {
        let _ = stores.settings.remove(pending_key()).await;
        return;
    }
    let id = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]);
    let uidl = core::str::from_utf8(&pending[4..length]).unwrap_or("");
    let committed = stores.spool.message(homemx_spool::MessageId(id)).is_some();
    if committed {
        let mut uidl_copy: heapless::String<{ homemx_pop3::UIDL_MAX }> = heapless::String::new();
        let _ = uidl_copy.push_str(uidl);
        let _ = record_seen(stores, &uidl_copy).await;
        crate::event_info!("backup MX: message {} was committed before the power cut; its UIDL is now recorded", id);
    } else {
        crate::event_info!("backup MX: a fetch was cut off before its commit; the message will be fetched again");
    }
    let _ = stores.settings.remove(pending_key()).await;
}

/// Records `uidl` as seen: its record, then its key in the ring (the evicted record removed).
async fn record_seen(stores: &mut crate::store::OpenStores, uidl: &str) -> Result<(), ()> {
    stores.settings.store(seen_key(uidl), uidl.as_bytes()).await.map_err(|_| ())?;
    let mut ring = load_ring(stores).await;
    if let Inserted::EvictedOldest(oldest) = ring.insert(seen_key(uidl)) {
        // Its message was deleted long ago, or the server keeps it for good (then it may come
        // once more: the price of a bounded memory).
        let _ = stores.settings.remove(oldest).await;
    }
    store_ring(stores, &mut ring).await
}

/// Whether `uidl` was committed before.
async fn is_seen(uidl: &str) -> bool {
    let Some(mut stores) = crate::store::open().await else {
        return false;
    };
    let mut value = [0u8; homemx_pop3::UIDL_MAX];
    matches!(stores.settings.fetch(seen_key(uidl), &mut value).await, Ok(Some(length)) if record_holds(&value[..length], uidl))
}

/// Drops seen records whose UIDL a complete listing no longer shows. The listing's keys are
/// gathered once the ring is loaded, and are gone before the next await (gathered by the
/// caller, 520 bytes, they sat in the fetch's future beside this one).
async fn prune(listed: &[Listed]) {
    let Some(mut stores) = crate::store::open().await else {
        return;
    };
    let mut ring = load_ring(&mut stores).await;
    let removed = {
        let keys: heapless::Vec<u64, { homemx_pop3::LISTING_MAX }> = listed.iter().map(|listed| seen_key(listed.uidl.as_str())).collect();
        ring.prune(&keys)
    };
    for key in removed {
        let _ = stores.settings.remove(key).await;
    }
    let _ = store_ring(&mut stores, &mut ring).await;
}

/// The recipient for a fetched message: the provider's envelope header if it names one of our
/// known recipients, else postmaster@ our domain.
fn local_recipient(header: &[u8], postmaster_domain: &str) -> heapless::String<256> {
    let mut recipient: heapless::String<256> = heapless::String::new();
    if let Some(found) = envelope_recipient(header, &RECIPIENT_HEADERS) {
        let mut path: heapless::String<260> = heapless::String::new();
        let _ = write!(path, "<{}>", found.as_str());
        let ours = parse_forward_path(path.as_bytes()).is_ok_and(|(forward, _)| {
            crate::mail_settings::read(|current| {
                current.is_some_and(|settings| {
                    // As asked by a client from outside: only our domains and known recipients.
                    settings.relay.check_recipient(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &forward) == RecipientDecision::Accept
                })
            })
        });
        if ours {
            let _ = recipient.push_str(found.as_str());
            return recipient;
        }
        crate::event_warning!("backup MX: recipient {} is not ours; the message goes to postmaster", found.as_str());
    }
    let _ = write!(recipient, "postmaster@{postmaster_domain}");
    recipient
}

fn finish_status(result: FetchResult, fetched: u32) {
    let unix = crate::wall_clock::unix_seconds();
    FETCH_STATUS.lock(|status| {
        let mut value = status.get();
        value.last_attempt = Some((unix.unwrap_or(0), result));
        value.fetched = fetched;
        if result == FetchResult::Ok {
            value.last_success_unix = unix;
        }
        status.set(value);
    });
}

/// How the connection to the backup MX switches to TLS.
fn tls_start_of<'b, 't>(read: &'b mut [u8], write: &'b mut [u8], backup: &'t BackupMx, trust: Trust<'t>, random: &'t mut DerivedRandom) -> TlsStart<'b, 't> {
    TlsStart {
        read,
        write,
        server_name: backup.host.as_str(),
        trust,
        random,
        operation: Operation::TlsHandshakeBackupMx,
        minimum: crate::link::minimum_tls(backup.min_tls),
    }
}

/// A message of the listing (80 bytes; with the seen-ring key kept beside the UIDL and a
/// 64-bit size, in two lists, it took 100).
struct Listed {
    /// Its number in this session.
    number: u32,
    /// The size LIST gave (an estimate; the spool's reservation is capped at
    /// [`MESSAGE_SIZE_MAX`] anyway), saturated at `u32::MAX`.
    size: u32,
    /// Committed before (a seen record holds its UIDL): deleted, not retrieved.
    seen: bool,
    /// Its unique-id (its seen-ring key is [`seen_key`] of it).
    uidl: heapless::String<{ homemx_pop3::UIDL_MAX }, u8>,
}

/// A fetch's listing, header, input and spool writer (≈ 9.4 KB), kept out of [`fetch`]'s
/// future: the courier's scratch holds them and lends them to each fetch, which starts by
/// clearing them. The writer (1 KB) was the fetch's, the largest of the courier's jobs, whose
/// size the courier's future has.
pub struct FetchScratch {
    /// The messages listed, in the order LIST gave them.
    listed: heapless::Vec<Listed, { homemx_pop3::LISTING_MAX }>,
    /// The start of the message being retrieved, up to its header's end.
    header: heapless::Vec<u8, HEADER_CAPACITY>,
    /// What the server sent and the session has not taken yet (see homemx_exchange).
    inbox: Inbox<1024>,
    /// The spool message being written; none between messages (and after every fetch).
    writer: Option<MessageWriter>,
}

impl FetchScratch {
    /// Empty lists and zero bytes.
    pub const EMPTY: Self = Self { listed: heapless::Vec::new(), header: heapless::Vec::new(), inbox: Inbox::new(), writer: None };
}

/// One fetch run against the configured backup MX. `random` is the courier's: the TLS start's
/// is derived from it when the handshake begins (a random moved into this future existed in it
/// three times).
pub async fn fetch(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, scratch: &mut FetchScratch) {
    let Some((backup, host_name, domain)) = crate::mail_settings::read(|current| {
        current.and_then(|settings| Some((settings.backup_mx.clone()?, settings.host_name.clone(), settings.postmaster_domain.clone())))
    }) else {
        return;
    };
    let address = match crate::resolver::resolve_address(stack, backup.host.as_str()).await {
        Ok(address) => address,
        Err(_) => {
            crate::event_warning!("backup MX: cannot resolve {}", backup.host.as_str());
            return finish_status(FetchResult::ConnectFailed, 0);
        }
    };
    let mut password = SecretBytes::<PASSWORD_CAPACITY>::zeroed();
    let (trust_source, password_length) =
        crate::store::provider_login(TlsService::BackupMx, &mut buffers.anchor, Some((Credential::BackupMxPassword, password.expose_mut()))).await;
    let (Some(trust_source), Some(password_length)) = (trust_source, password_length) else {
        crate::event_warning!("backup MX: no trust anchor or password provisioned; no fetch");
        return finish_status(FetchResult::TlsFailed, 0);
    };
    if !trust_source.usable_now() {
        crate::event_warning!("backup MX: waiting for the time (SNTP) to check the certificate's dates");
        return finish_status(FetchResult::TlsFailed, 0);
    }
    let trust = trust_source.trust(&buffers.anchor);
    let implicit = backup.tls == TlsMode::Implicit;
    let config = Pop3Config {
        username: backup.user_name.as_str(),
        tls: if implicit { Pop3Tls::Implicit } else { Pop3Tls::StartTls },
        message_size_max: MESSAGE_SIZE_MAX,
        reply_timeout_ms: 60_000,
    };
    let now = || embassy_time::Instant::now().as_millis();
    let Ok(mut session) = Pop3Session::new(&config, now()) else {
        crate::event_warning!("backup MX: the configured user name cannot be used");
        return finish_status(FetchResult::LoginRefused, 0);
    };
    let FetchScratch { listed, header, inbox, writer } = scratch;
    listed.clear();
    header.clear();
    *inbox = Inbox::new();
    let mut socket = TcpSocket::new(stack, &mut buffers.socket_receive, &mut buffers.socket_transmit[..1024]);
    socket.set_timeout(Some(Duration::from_secs(120)));
    let endpoint = IpEndpoint::new(Ipv4Address::from(address).into(), backup.port);
    if socket.connect(endpoint).await.is_err() {
        line_state(false);
        crate::event_warning!("backup MX: {} does not answer", endpoint);
        crate::alerts::raise(AlertKind::PeerUnreachable(Peer::BackupMx), format_args!("the backup MX {} does not answer", endpoint));
        return finish_status(FetchResult::ConnectFailed, 0);
    }
    let mut link = Link::Plain(socket);
    let mut tls_start = Some((&mut buffers.read[..], &mut buffers.write[..]));
    if implicit {
        let (read, write) = tls_start.take().expect("set above");
        if let Err(error) = link.start_tls(tls_start_of(read, write, &backup, trust, random)).await {
            link.close().await;
            if !error.is_refusal() {
                crate::event_warning!("backup MX: the TLS handshake with {} broke off: {}", backup.host.as_str(), error.describe());
                return finish_status(FetchResult::ConnectFailed, 0);
            }
            crate::alerts::raise_for(AlertKind::CertificateRejected, Peer::BackupMx, format_args!("backup MX TLS refused: {}; no login", error.describe()));
            return finish_status(FetchResult::TlsFailed, 0);
        }
    }

    let mut listing_complete = false;
    let mut queue_position = 0;
    // The listing's index of the message being retrieved.
    let mut current = 0usize;
    let mut current_size = 0u64;
    let mut failed_message = false;
    let mut fetched = 0u32;
    // The message being retrieved, from its RETR to its commit (dropped unended: cancelled).
    let mut message_measurement: Option<Measurement> = None;
    let mut result = FetchResult::Ok;
    loop {
        let event = session.poll(now());
        match event {
            Some(Pop3Event::StartTls) => {
                let flushed = flush(&mut link, &mut session).await;
                match tls_start.take().filter(|_| flushed) {
                    Some((read, write)) => match link.start_tls(tls_start_of(read, write, &backup, trust, random)).await {
                        Ok(()) => session.tls_established(now()),
                        Err(error) if !error.is_refusal() => {
                            // The connection broke: not the server's certificate (no alert).
                            crate::event_warning!("backup MX: the TLS handshake with {} broke off: {}", backup.host.as_str(), error.describe());
                            session.connection_closed()
                        }
                        Err(error) => {
                            crate::event_warning!("backup MX: TLS with {} refused: {}", backup.host.as_str(), error.describe());
                            session.tls_failed()
                        }
                    },
                    None => session.tls_failed(),
                }
            }
            Some(Pop3Event::TlsProblem(problem)) => {
                let kind = if matches!(problem, homemx_pop3::TlsProblem::HandshakeFailed) { AlertKind::CertificateRejected } else { AlertKind::StrippingSuspected };
                crate::alerts::raise_for(kind, Peer::BackupMx, format_args!("backup MX: {:?}; no login was attempted", defmt::Debug2Format(&problem)));
                result = FetchResult::TlsFailed;
            }
            Some(Pop3Event::PlaintextDiscarded { octets }) => {
                crate::event_warning!("backup MX: {} octets after the +OK to STLS were discarded", octets);
            }
            Some(Pop3Event::PasswordNeeded) => {
                let secret = password.expose()[..password_length].trim_ascii_end();
                if session.send_password(secret, now()).is_err() {
                    result = FetchResult::LoginRefused;
                }
            }
            Some(Pop3Event::Listed(entry)) => {
                let mut uidl: heapless::String<{ homemx_pop3::UIDL_MAX }, u8> = heapless::String::new();
                let _ = uidl.push_str(entry.uidl);
                let (number, size) = (entry.number, u32::try_from(entry.size).unwrap_or(u32::MAX));
                let seen = is_seen(uidl.as_str()).await;
                let _ = listed.push(Listed { number, size, seen, uidl });
            }
            Some(Pop3Event::TooLarge(entry)) => {
                crate::event_warning!("backup MX: message {} ({} bytes) is too large and stays on the server", entry.number, entry.size);
            }
            Some(Pop3Event::ListingComplete(summary)) => {
                listing_complete = summary.complete;
                if listing_complete {
                    prune(listed).await;
                }
            }
            Some(Pop3Event::MessageBegin { .. }) => {
                header.clear();
                *writer = None;
                failed_message = false;
            }
            Some(Pop3Event::MessageData(data)) => {
                if writer.is_none() {
                    let room = header.capacity() - header.len();
                    let _ = header.extend_from_slice(&data[..data.len().min(room)]);
                    let header_done = header.windows(4).any(|window| window == b"\r\n\r\n") || header.is_full();
                    if !header_done {
                        continue;
                    }
                    let rest = &data[data.len().min(room)..];
                    let uidl = listed.get(current).map(|listed| listed.uidl.as_str());
                    failed_message |= !begin(writer, header, &domain, &host_name, &backup.host, uidl, current_size).await;
                    if !rest.is_empty() {
                        failed_message |= !append(writer, rest).await;
                    }
                } else {
                    failed_message |= !append(writer, data).await;
                }
            }
            Some(Pop3Event::MessageEnd { number, .. }) => {
                if writer.is_none() && !failed_message {
                    // A message shorter than its header buffer.
                    let uidl = listed.get(current).map(|listed| listed.uidl.as_str());
                    failed_message |= !begin(writer, header, &domain, &host_name, &backup.host, uidl, current_size).await;
                }
                let uidl = listed.iter().find(|listed| listed.number == number).map(|listed| listed.uidl.as_str());
                let committed = match (writer.as_mut(), uidl) {
                    (Some(message), Some(uidl)) if !failed_message => commit(message, uidl).await,
                    (Some(_), _) => {
                        abort(writer).await;
                        false
                    }
                    _ => false,
                };
                // Committed, or abandoned by the spool: the writer is finished.
                *writer = None;
                if committed {
                    if let Some(measurement) = message_measurement.take() {
                        measurement.end();
                    }
                    fetched += 1;
                    let _ = session.delete(number, now());
                } else {
                    crate::event_warning!(
                        "backup MX: message {} ({} bytes listed) could not be stored; it stays on the server",
                        number,
                        current_size
                    );
                    result = FetchResult::SpoolFull;
                    let _ = session.finish(now());
                }
            }
            Some(Pop3Event::MessageAborted { number, .. }) => {
                abort(writer).await;
                crate::event_warning!("backup MX: message {} was cut off; it stays on the server", number);
            }
            Some(Pop3Event::MessageRefused { number, .. }) => {
                crate::event_warning!("backup MX: the server refused a command for message {}", number);
            }
            Some(Pop3Event::Deleted { .. }) => {}
            Some(Pop3Event::Failed(failure)) => {
                if result == FetchResult::Ok {
                    result = match failure {
                        homemx_pop3::Failure::TlsUnavailable => FetchResult::TlsFailed,
                        homemx_pop3::Failure::LoginRefused(_) | homemx_pop3::Failure::InvalidPassword => FetchResult::LoginRefused,
                        homemx_pop3::Failure::Timeout => FetchResult::TimedOut,
                        _ => FetchResult::ProtocolError,
                    };
                }
                crate::event_warning!("backup MX: fetch failed: {:?}", defmt::Debug2Format(&failure));
            }
            Some(Pop3Event::Close { deletions_final, deleted }) => {
                let _ = flush(&mut link, &mut session).await;
                crate::event_info!(
                    "backup MX: {} messages fetched, {} deleted at the server ({})",
                    fetched,
                    deleted,
                    if deletions_final { "final" } else { "not final: the seen records keep them from coming twice" }
                );
                break;
            }
            None => {
                if session.is_finished() {
                    break;
                }
                if session.is_ready() {
                    // Next request: retrieve the next unseen message, delete the seen ones.
                    match listed.get(queue_position).map(|listed| (listed.number, listed.seen, listed.size)) {
                        Some((number, seen, size)) => {
                            current = queue_position;
                            queue_position += 1;
                            current_size = u64::from(size);
                            if !seen {
                                message_measurement = Some(crate::instrument::begin(Operation::BackupMxMessage));
                            }
                            let _ = if seen { session.delete(number, now()) } else { session.retrieve(number, now()) };
                        }
                        None => {
                            let _ = session.finish(now());
                        }
                    }
                    continue;
                }
                // Send, then feed what the server says; a closed or broken connection is told
                // to the session, which ends with `Failed` and `Close`.
                exchange(&mut link, &mut session, inbox, now).await;
            }
        }
    }
    link.close().await;
    abort(writer).await;
    if result == FetchResult::Ok {
        crate::alerts::clear(AlertKind::PeerUnreachable(Peer::BackupMx));
        // Logged in over verified TLS and fetched: no stripping, no bad certificate on this path.
        crate::alerts::clear_for(&[AlertKind::StrippingSuspected, AlertKind::CertificateRejected], Peer::BackupMx);
    }
    let _ = listing_complete;
    finish_status(result, fetched);
    if fetched > 0 {
        crate::channels::DELIVERY_DUE.signal(());
    }
}

/// Begins the spool message for a fetched mail in `writer` (none without its UIDL: false):
/// envelope (null sender, our recipient), the pending record, and a `Received:` line naming
/// the backup MX and the UIDL. The writer (1 KB) is made in the fetch's slot, not returned:
/// returned, it was held in this future as well as in the fetch's.
async fn begin(
    writer: &mut Option<MessageWriter>,
    header: &[u8],
    domain: &str,
    host_name: &str,
    backup_host: &str,
    uidl: Option<&str>,
    listed_size: u64,
) -> bool {
    let Some(uidl) = uidl else {
        return false;
    };
    let recipient = local_recipient(header, domain);
    let recipients: [&[u8]; 1] = [recipient.as_bytes()];
    let Some(envelope) = Envelope::new(b"", &recipients) else {
        return false;
    };
    let envelope = envelope.with_queued_at(crate::wall_clock::unix_seconds().unwrap_or(0));
    let mut received: heapless::String<384> = heapless::String::new();
    let _ = write!(
        received,
        "Received: from {backup_host} by {host_name} with POP3S id {};\r\n\t{}\r\n",
        uidl,
        homemx_smtp::clock::Rfc5322Date(crate::network::mail_clock().unix_seconds)
    );
    let Some(mut stores) = crate::store::open().await else {
        return false;
    };
    // Space for the size LIST gave (an estimate: the spool reserves more as the data comes if
    // it was low). A fixed reservation (it was 1 MB) refused every message on a board whose
    // spool is smaller (the STM32H573I-DK's 472 KB, the simulator's 960 KB).
    let expected = (listed_size + received.len() as u64).min(MESSAGE_SIZE_MAX) as u32;
    let Ok(begun) = stores.begin_spool_message(&envelope, expected).await else {
        return false;
    };
    let message = writer.insert(begun);
    let mut pending = [0u8; 4 + homemx_pop3::UIDL_MAX];
    pending[..4].copy_from_slice(&message.id().0.to_le_bytes());
    pending[4..4 + uidl.len()].copy_from_slice(uidl.as_bytes());
    if stores.settings.store(pending_key(), &pending[..4 + uidl.len()]).await.is_err()
        || stores.spool.append(message, received.as_bytes()).await.is_err()
        || stores.spool.append(message, header).await.is_err()
    {
        if let Some(message) = writer.take() {
            stores.spool.abort(message);
        }
        return false;
    }
    true
}

async fn append(writer: &mut Option<MessageWriter>, data: &[u8]) -> bool {
    let Some(message) = writer.as_mut() else {
        return false;
    };
    match crate::store::open().await {
        Some(mut stores) => stores.spool.append(message, data).await.is_ok(),
        None => false,
    }
}

/// Commits the message, records its UIDL as seen and drops the pending record, all while the
/// vault is held (delivery cannot remove the message in between).
/// The writer (1 KB) stays where the fetch keeps it and is committed by reference: moved into
/// this future (and on into the spool's) it took 2 KB more of the courier's.
async fn commit(writer: &mut MessageWriter, uidl: &str) -> bool {
    let Some(mut stores) = crate::store::open().await else {
        return false;
    };
    let Ok(report) = stores.spool.commit_in_place(writer).await else {
        return false;
    };
    let recorded = record_seen(&mut stores, uidl).await.is_ok();
    let _ = stores.settings.remove(pending_key()).await;
    crate::mail_status::update(|status| status.received += 1);
    crate::event_info!("backup MX: message {} fetched into the spool (UIDL recorded: {})", report.id.0, recorded);
    stores.publish_space();
    recorded
}

/// Abandons the message being written, if any (the writer taken only once the vault is open,
/// so this future does not hold it), and drops its pending record.
async fn abort(writer: &mut Option<MessageWriter>) {
    if writer.is_none() {
        return;
    }
    if let Some(mut stores) = crate::store::open().await {
        if let Some(message) = writer.take() {
            stores.spool.abort(message);
        }
        let _ = stores.settings.remove(pending_key()).await;
    }
    *writer = None;
}
