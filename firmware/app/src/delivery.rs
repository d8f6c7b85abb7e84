//! Delivery from the spool, per recipient by route: recipients in our own domains go to the
//! LAN mailbox host (SMTP or LMTP, plain: it is on the LAN), every other recipient goes to
//! the provider's smarthost with TLS forced and verified ([`crate::smarthost`]). A recipient
//! leaves the queue only on its next hop's 2xx, or on a permanent 5xx (then a non-delivery
//! report goes to a local sender, [`crate::ndn`]); a message leaves the spool when no
//! recipient is pending. Deferred messages wait with growing delays: 5 s doubling to 10 min
//! for the LAN host, 300 s doubling to 4000 s for the smarthost (Postfix's defaults), and
//! outbound recipients expire after 5 days in the queue (NDN).

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_futures::select::{select3, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Timer};
use homemx_smtp::client::{ClientConfig, ClientEvent, ClientProtocol, ClientSession, Envelope, Outcome, RecipientResult, TlsRequirement};
use homemx_spool::{MessageId, MessageReader, RecipientState, CHUNK_CAPACITY, ENVELOPE_CAPACITY};
use homemx_wire::config::DeliveryProtocol;

use crate::link::{flush, Link};
use crate::mail_settings::MAIL_SETTINGS;
use crate::network::{mail_clock as now, uptime_seconds};
use crate::random::DerivedRandom;
use crate::vault::VAULT;

/// Wakes the delivery task (a message was committed).
pub static DELIVERY_SIGNAL: Signal<CriticalSectionRawMutex, ()> = Signal::new();

/// Set at unlock: the next pass tries every queued message regardless of its retry time.
/// Retry times count in seconds since boot (the wall clock may not be known), so times
/// written before a reset mean nothing after it; and the appliance coming back is exactly
/// when waiting mail should go out.
pub static RETRY_ALL_NOW: AtomicBool = AtomicBool::new(false);

/// How often the queue is looked at without a signal.
const QUEUE_POLL: Duration = Duration::from_secs(5);
/// Retry delays towards the LAN mailbox host: first, and the longest.
const LOCAL_RETRY_SECONDS: (u64, u64) = (5, 600);
/// Retry delays towards the smarthost (Postfix: minimal_backoff_time, maximal_backoff_time).
const SMARTHOST_RETRY_SECONDS: (u64, u64) = (300, 4000);
/// How long an outbound recipient may stay queued (Postfix: maximal_queue_lifetime 5d).
pub const QUEUE_LIFETIME_SECONDS: u64 = 5 * 86_400;
const ADDRESS_CAPACITY: usize = 256;
/// Recipients one attempt carries (a message may have 128: the rest go in the next attempt,
/// at once, as RFC 5321 3.3 allows). Bounds the delivery task's RAM.
pub const BATCH_RECIPIENTS: usize = 32;
/// Bytes of recipient addresses one attempt carries.
const BATCH_ADDRESS_BYTES: usize = 2048;

/// Where a recipient's mail goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// One of our domains: the LAN mailbox host.
    Mailbox,
    /// Anywhere else: the smarthost.
    Smarthost,
}

/// What one attempt needs, copied out of the spool so the vault is not held during I/O.
pub struct Attempt {
    /// The message.
    pub id: MessageId,
    /// MAIL FROM (empty: null reverse path).
    pub sender: heapless::String<ADDRESS_CAPACITY>,
    /// The batch's addresses, back to back.
    addresses: heapless::String<BATCH_ADDRESS_BYTES>,
    /// (index in the envelope, end in `addresses`, route) of the pending recipients in this
    /// attempt's batch.
    recipients: heapless::Vec<(u8, u16, Route), BATCH_RECIPIENTS>,
    /// More recipients are pending than fit the batch: try again at once.
    pub more_pending: bool,
    /// Message size in bytes.
    pub length: u32,
    /// Attempts so far.
    pub attempts: u32,
    /// When the message was queued (Unix seconds; 0: unknown).
    pub queued_at: u64,
}

impl Attempt {
    /// The pending recipients on `route`: (envelope index, address).
    pub fn recipients(&self, route: Route) -> impl Iterator<Item = (usize, &str)> {
        let mut start = 0;
        self.recipients.iter().filter_map(move |&(index, end, recipient_route)| {
            let address = &self.addresses[start..end as usize];
            start = end as usize;
            (recipient_route == route).then_some((index as usize, address))
        })
    }
}

/// The result of one recipient in one attempt, with the reply that decided it.
#[derive(Clone, Copy, Debug)]
pub struct RecipientOutcome {
    /// Index into the envelope.
    pub index: usize,
    /// The route it took.
    pub route: Route,
    /// Delivered, deferred or bounced, and why.
    pub result: RecipientResult,
}

/// The outcomes of one attempt.
pub type Outcomes = heapless::Vec<RecipientOutcome, BATCH_RECIPIENTS>;

/// The provider task: delivery passes and, between them, the backup-MX fetch (both use the one
/// set of TLS buffers, and one task's future costs RAM once instead of twice).
#[embassy_executor::task]
pub async fn delivery_task(stack: Stack<'static>, mut random: DerivedRandom) -> ! {
    let mut next_fetch = 0u64;
    let mut next_dyndns_check = 0u64;
    loop {
        let woken = select3(DELIVERY_SIGNAL.wait(), crate::backup_mx::FETCH_NOW.wait(), Timer::after(QUEUE_POLL)).await;
        // The spool's counter mark, when due (after commits, deletes and aborts): persisted
        // here, never on a session's way to "250".
        if let Some(stores) = VAULT.lock().await.as_mut().and_then(|vault| vault.open_stores()) {
            stores.persist_spool_counters().await;
        }
        let Some((poll_seconds, check_seconds)) = MAIL_SETTINGS.lock(|cell| {
            cell.borrow().as_ref().map(|settings| {
                (
                    settings.backup_mx.as_ref().map(|backup| u64::from(backup.poll_interval_seconds)),
                    settings.dyndns.as_ref().map(|dyndns| u64::from(dyndns.check_interval_seconds)),
                )
            })
        }) else {
            continue;
        };
        if let Some(check_seconds) = check_seconds {
            let forced = crate::dyndns::CHECK_NOW.signaled();
            if forced || uptime_seconds() >= next_dyndns_check {
                crate::dyndns::CHECK_NOW.reset();
                next_dyndns_check = uptime_seconds() + check_seconds.max(60);
                crate::dyndns::check(stack, &mut random).await;
            }
        }
        if let Some(poll_seconds) = poll_seconds {
            if matches!(woken, Either3::Second(())) || uptime_seconds() >= next_fetch {
                next_fetch = uptime_seconds() + poll_seconds.max(60);
                crate::backup_mx::fetch(stack, random.derive()).await;
            }
        }
        // Each pass tries every message that is due once.
        let retry_all = RETRY_ALL_NOW.swap(false, Ordering::Relaxed);
        let mut tried: heapless::Vec<MessageId, 16> = heapless::Vec::new();
        while let Some(attempt) = next_attempt(&tried, retry_all).await {
            let _ = tried.push(attempt.id);
            let mut outcomes = Outcomes::new();
            let local = attempt.recipients(Route::Mailbox).next().is_some();
            let outbound = attempt.recipients(Route::Smarthost).next().is_some();
            // Instruction count of a delivery to the mailbox host, spool update included
            // (attempts with outbound recipients are not measured: they include the smarthost).
            let measurement = (local && !outbound).then(|| crate::instrument::begin(crate::instrument::Operation::MailboxDelivery));
            if local {
                deliver_to_mailbox(stack, &attempt, &mut outcomes).await;
            }
            if outbound {
                crate::smarthost::deliver(stack, &attempt, &mut outcomes, random.derive()).await;
            }
            record_outcomes(&attempt, &outcomes).await;
            if let Some(measurement) = measurement {
                if outcomes.iter().any(|outcome| outcome.result.outcome == Outcome::Delivered) {
                    measurement.end();
                }
            }
            if tried.is_full() {
                // More to do: come back at once rather than after the poll interval.
                DELIVERY_SIGNAL.signal(());
                if retry_all {
                    RETRY_ALL_NOW.store(true, Ordering::Relaxed);
                }
                break;
            }
        }
        // No delivery talked to the mailbox host for a while (the spool is empty, or its
        // mail waits for a retry): the probe keeps the status page's headline current.
        if crate::mail_status::mailbox_probe_due(QUEUE_POLL) {
            if let Some(host) = mailbox_endpoint() {
                probe_mailbox(stack, host).await;
            }
        }
    }
}

/// Probes the mailbox host ([`crate::mailbox_probe`]) and records the result for the headline.
/// A function of its own: its socket shares the task future's room with the deliveries'.
async fn probe_mailbox(stack: Stack<'static>, host: IpEndpoint) {
    let mut receive_buffer = [0u8; crate::mailbox_probe::RECEIVE_BUFFER];
    let mut transmit_buffer = [0u8; crate::mailbox_probe::TRANSMIT_BUFFER];
    let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
    let result = crate::mailbox_probe::probe(&mut socket, host).await;
    crate::network::release(&mut socket).await;
    crate::mail_status::mailbox_contact(result);
}

/// The LAN mailbox host's address and port, when one is configured.
fn mailbox_endpoint() -> Option<IpEndpoint> {
    MAIL_SETTINGS.lock(|cell| {
        let settings = cell.borrow();
        let mailbox = settings.as_ref()?.mailbox.as_ref()?;
        Some(IpEndpoint::new(Ipv4Addr::from(mailbox.address).into(), mailbox.port))
    })
}

/// Whether `address`'s domain is one of ours (mail for it stays on the LAN).
pub fn route_of(address: &str) -> Route {
    let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
    let local = MAIL_SETTINGS.lock(|cell| cell.borrow().as_ref().is_some_and(|settings| settings.relay.is_accepted_domain(domain)));
    if local {
        Route::Mailbox
    } else {
        Route::Smarthost
    }
}

/// The next queued message whose retry time has come, with its pending recipients.
async fn next_attempt(tried: &[MessageId], retry_all: bool) -> Option<Attempt> {
    let mut vault = VAULT.lock().await;
    let stores = vault.as_mut()?.open_stores()?;
    let now_seconds = uptime_seconds();
    let summary = stores.spool.messages().find(|message| {
        let due = retry_all
            || message.delivery.next_retry <= now_seconds
            // Written in an earlier boot with a larger uptime than now.
            || message.delivery.next_retry > now_seconds + SMARTHOST_RETRY_SECONDS.1;
        !message.damaged && !tried.contains(&message.id) && due
    })?;
    let mut envelope_bytes = [0u8; ENVELOPE_CAPACITY];
    let envelope = stores.spool.read_envelope(summary.id, &mut envelope_bytes).await.ok()?;
    let mut attempt = Attempt {
        id: summary.id,
        sender: heapless::String::new(),
        addresses: heapless::String::new(),
        recipients: heapless::Vec::new(),
        length: summary.length,
        attempts: summary.delivery.attempts,
        queued_at: envelope.queued_at(),
        more_pending: false,
    };
    let _ = attempt.sender.push_str(core::str::from_utf8(envelope.reverse_path()).unwrap_or(""));
    for (index, recipient) in envelope.recipients().iter().enumerate() {
        let address = core::str::from_utf8(recipient).unwrap_or("");
        if summary.delivery.recipient(index) != RecipientState::Pending {
            continue;
        }
        if attempt.recipients.is_full() || attempt.addresses.len() + address.len() > attempt.addresses.capacity() {
            attempt.more_pending = true;
            break;
        }
        let _ = attempt.addresses.push_str(address);
        let _ = attempt.recipients.push((index as u8, attempt.addresses.len() as u16, route_of(address)));
    }
    Some(attempt)
}

/// Opens the message for reading its body.
pub async fn open_body(id: MessageId) -> Option<MessageReader> {
    let mut vault = VAULT.lock().await;
    vault.as_mut()?.open_stores()?.spool.open_message(id).await.ok()
}

/// Delivers the attempt's local recipients to the LAN mailbox host.
async fn deliver_to_mailbox(stack: Stack<'static>, attempt: &Attempt, outcomes: &mut Outcomes) {
    let Some((address, port, protocol, host_name)) = MAIL_SETTINGS.lock(|cell| {
        let settings = cell.borrow();
        let settings = settings.as_ref()?;
        let mailbox = settings.mailbox.as_ref()?;
        Some((Ipv4Addr::from(mailbox.address), mailbox.port, mailbox.protocol, settings.host_name.clone()))
    }) else {
        return;
    };
    let protocol = match protocol {
        DeliveryProtocol::Lmtp => ClientProtocol::Lmtp,
        DeliveryProtocol::Smtp => ClientProtocol::Smtp,
    };
    let (indices, addresses): (heapless::Vec<usize, BATCH_RECIPIENTS>, heapless::Vec<&str, BATCH_RECIPIENTS>) =
        attempt.recipients(Route::Mailbox).unzip();
    let config = ClientConfig { hostname: host_name.as_str(), protocol, tls: TlsRequirement::Disabled, credentials: None };
    let envelope = Envelope { sender: attempt.sender.as_str(), recipients: &addresses, size: Some(attempt.length as u64), eight_bit: true };
    let Ok(session) = ClientSession::new(&config, envelope, false, now()) else {
        crate::event_warning!("delivery: message {} has an envelope the client refuses", attempt.id.0);
        return;
    };
    let Some(mut reader) = open_body(attempt.id).await else {
        return;
    };
    let mut receive_buffer = [0u8; 1024];
    // More than one segment of the body in flight, sent at once (no Nagle): the mailbox host's
    // TCP (Linux) then acknowledges at once. With 1 KB, or with Nagle holding the second
    // segment until the first is acknowledged, Linux delays that ACK (40 ms) in every
    // delivery: 65-75 ms per 10 KB message instead of about 20 (`cargo xtask throughput`).
    let mut transmit_buffer = [0u8; 2048];
    let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
    socket.set_timeout(Some(Duration::from_secs(60)));
    socket.set_nagle_enabled(false);
    let host = IpEndpoint::new(address.into(), port);
    let connected = socket.connect(host).await.is_ok();
    if !connected {
        defmt::warn!("delivery: mailbox host {} unreachable; message {=u32} waits", host, attempt.id.0);
    }
    let mut link = Link::Plain(socket);
    let mut results = heapless::Vec::<RecipientResult, BATCH_RECIPIENTS>::new();
    run_session(&mut link, session, connected, &mut reader, &mut results, None).await;
    link.close().await;
    // For the headline: the host is there if it took or refused a recipient for good.
    let answered = results.iter().any(|result| result.outcome != Outcome::Deferred);
    crate::mail_status::mailbox_contact(match (connected, answered) {
        (false, _) => Err(homemx_status::MailboxFailure::Unreachable),
        (true, false) => Err(homemx_status::MailboxFailure::Refusing),
        (true, true) => Ok(()),
    });
    for result in results {
        if let Some(&index) = indices.get(result.index) {
            let _ = outcomes.push(RecipientOutcome { index, route: Route::Mailbox, result });
        }
    }
}

/// What a session needs to switch to TLS when the server's STARTTLS is accepted.
pub struct TlsStart<'b, 't> {
    /// The TLS record buffers.
    pub read: &'b mut [u8],
    /// The TLS record buffers.
    pub write: &'b mut [u8],
    /// The name the server's certificate must carry (and SNI).
    pub server_name: &'t str,
    /// How the server is verified.
    pub trust: homemx_tls::Trust<'t>,
    /// Random for the handshake.
    pub random: DerivedRandom,
    /// The handshake's instruction-count mark.
    pub operation: crate::instrument::Operation,
}

/// Drives a client session over `link` until it ends; collects every recipient's result.
/// `connected` false: the connection failed, every recipient is deferred.
pub async fn run_session<'b>(
    link: &mut Link<'_, 'b>,
    mut session: ClientSession<'_>,
    connected: bool,
    reader: &mut MessageReader,
    results: &mut heapless::Vec<RecipientResult, BATCH_RECIPIENTS>,
    mut tls: Option<TlsStart<'b, '_>>,
) {
    if !connected {
        session.connection_closed();
    }
    let mut input = [0u8; 512];
    loop {
        match session.poll(now()) {
            Some(ClientEvent::StartTls) => {
                let flushed = flush(link, &mut session).await;
                let Some(start) = tls.take().filter(|_| flushed) else {
                    session.tls_failed();
                    continue;
                };
                match link.start_tls(start.read, start.write, start.server_name, start.trust, start.random, start.operation).await {
                    Ok(()) => session.tls_established(now()),
                    Err(error) => {
                        // The session reports TlsProblem::HandshakeFailed next: that raises the alert.
                        crate::event_warning!("TLS handshake with {} refused: {}", start.server_name, error.describe());
                        session.tls_failed();
                    }
                }
            }
            Some(ClientEvent::TlsProblem(problem)) => {
                crate::smarthost::tls_problem(problem);
            }
            Some(ClientEvent::PlaintextDiscarded { octets }) => {
                crate::event_warning!("delivery: {} octets the server sent after its 220 to STARTTLS were discarded", octets);
            }
            Some(ClientEvent::SendBody) => {
                // The session asks once: stream the whole body, then the end of data.
                if !send_body(link, &mut session, reader).await {
                    session.connection_closed();
                }
            }
            Some(ClientEvent::RecipientResult(result)) => {
                let _ = results.push(result);
            }
            Some(ClientEvent::OutputFull) => {
                if !flush(link, &mut session).await {
                    session.connection_closed();
                }
            }
            Some(ClientEvent::Close) => {
                let _ = flush(link, &mut session).await;
                break;
            }
            None => {
                if session.is_finished() {
                    break;
                }
                if !flush(link, &mut session).await {
                    session.connection_closed();
                    continue;
                }
                match link.read(&mut input).await {
                    Ok(0) | Err(_) => session.connection_closed(),
                    Ok(count) => {
                        session.receive(&input[..count], now());
                    }
                }
            }
        }
    }
}

/// Streams the message from the spool into the session, chunk by chunk, and ends the data.
async fn send_body(link: &mut Link<'_, '_>, session: &mut ClientSession<'_>, reader: &mut MessageReader) -> bool {
    let mut chunk = [0u8; CHUNK_CAPACITY];
    loop {
        let length = {
            let mut vault = VAULT.lock().await;
            match vault.as_mut().and_then(|vault| vault.open_stores()) {
                Some(stores) => match stores.spool.read_chunk(reader, &mut chunk).await {
                    Ok(length) => length,
                    Err(_) => return false,
                },
                None => return false,
            }
        };
        if length == 0 {
            break;
        }
        let mut sent = 0;
        while sent < length {
            let taken = session.send_body(&chunk[sent..length]);
            sent += taken;
            if taken == 0 && !flush(link, session).await {
                return false;
            }
        }
    }
    while !session.end_body(now()) {
        if !flush(link, session).await {
            return false;
        }
    }
    flush(link, session).await
}

/// Writes the attempt's results to the spool: delivered and failed recipients, the next retry
/// time for the rest, NDNs for outbound failures, and deletes the message when it is done.
async fn record_outcomes(attempt: &Attempt, outcomes: &[RecipientOutcome]) {
    let mut failed_outbound: heapless::Vec<(usize, RecipientResult), BATCH_RECIPIENTS> = heapless::Vec::new();
    let expired = attempt.queued_at != 0
        && crate::wall_clock::unix_seconds().is_some_and(|now| now.saturating_sub(attempt.queued_at) > QUEUE_LIFETIME_SECONDS);
    {
        let mut vault = VAULT.lock().await;
        let Some(vault) = vault.as_mut() else {
            return;
        };
        let Some(stores) = vault.open_stores() else {
            return;
        };
        let (mut delivered, mut relayed, mut deferred) = (0u32, 0u32, 0u32);
        for outcome in outcomes {
            let index = outcome.index;
            match (outcome.result.outcome, outcome.route) {
                (Outcome::Delivered, route) => {
                    if route == Route::Mailbox {
                        delivered += 1;
                    } else {
                        relayed += 1;
                    }
                    let _ = stores.spool.mark_delivered(attempt.id, index).await;
                }
                (Outcome::Bounced, Route::Mailbox) => {
                    crate::event_warning!("delivery: the mailbox host refused recipient {} of message {} for good", index, attempt.id.0);
                    let _ = stores.spool.mark_failed(attempt.id, index).await;
                }
                (Outcome::Bounced, Route::Smarthost) => {
                    crate::event_warning!(
                        "outbound: the smarthost refused recipient {} of message {} for good ({})",
                        index,
                        attempt.id.0,
                        outcome.result.code
                    );
                    let _ = stores.spool.mark_failed(attempt.id, index).await;
                    let _ = failed_outbound.push((index, outcome.result));
                }
                (Outcome::Deferred, Route::Smarthost) if expired => {
                    crate::event_warning!("outbound: recipient {} of message {} expired after 5 days in the queue", index, attempt.id.0);
                    let _ = stores.spool.mark_failed(attempt.id, index).await;
                    let _ = failed_outbound.push((index, outcome.result));
                }
                (Outcome::Deferred, _) => deferred += 1,
            }
        }
        let bounced = outcomes.iter().filter(|outcome| outcome.result.outcome == Outcome::Bounced).count() as u32
            + if expired { failed_outbound.len() as u32 } else { 0 };
        crate::mail_status::update(|status| {
            status.delivered_local += delivered;
            status.relayed += relayed;
            status.deferred += u32::from(deferred > 0);
            status.bounced += bounced;
        });
        let summary = stores.spool.message(attempt.id);
        let done = summary.is_some_and(|message| message.delivery.is_finished(message.recipient_count));
        if done {
            let _ = stores.spool.delete(attempt.id).await;
            crate::event_info!("delivery: message {} done ({} to the mailbox host, {} to the smarthost) and removed", attempt.id.0, delivered, relayed);
        } else {
            // Outbound recipients without a final result this time are still pending.
            let outbound_pending = attempt.recipients(Route::Smarthost).any(|(index, _)| {
                !outcomes.iter().any(|outcome| outcome.index == index && outcome.result.outcome != Outcome::Deferred)
            });
            let (first, longest) = if outbound_pending { SMARTHOST_RETRY_SECONDS } else { LOCAL_RETRY_SECONDS };
            // Recipients beyond this batch were not tried: no delay for them.
            let delay = if attempt.more_pending { 0 } else { (first << attempt.attempts.min(16)).min(longest) };
            let _ = stores.spool.set_next_retry(attempt.id, uptime_seconds() + delay).await;
            if attempt.more_pending {
                DELIVERY_SIGNAL.signal(());
            }
            defmt::info!("delivery: message {=u32} deferred, next try in {=u64} s", attempt.id.0, delay);
        }
        stores.persist_spool_counters().await;
        crate::mail_settings::publish_spool_free_bytes(vault);
    }
    if !failed_outbound.is_empty() {
        crate::ndn::report(attempt, &failed_outbound, expired).await;
    }
}
