//! Delivery from the spool, per recipient by route: recipients in our own domains go to the
//! LAN mailbox host (SMTP or LMTP, plain: it is on the LAN), every other recipient goes to
//! the provider's smarthost with TLS forced and verified ([`smarthost`]). A recipient
//! leaves the queue only on its next hop's 2xx, or on a permanent 5xx (then a non-delivery
//! report goes to a local sender, [`ndn`]); a message leaves the spool when no
//! recipient is pending. Deferred messages wait with growing delays: 5 s doubling to 10 min
//! for the LAN host, 300 s doubling to 4000 s for the smarthost (Postfix's defaults), and
//! outbound recipients expire after 5 days in the queue (NDN).
//!
//! Those rules (which message is due, the delays, the expiry, what an attempt's answers do
//! to the message, what is counted and reported) are decided in
//! [`homemx_spool::queue_policy`], without I/O and host-tested; this module does the I/O:
//! it reads the spool, runs the sessions, and writes the decisions.
//!
//! Owns: the delivery task (the courier) with its sockets, the TLS buffers it takes from `link` once,
//! and its scratch (`COURIER_SCRATCH`: a fetch's lists, a delivery pass's attempt, a DynDNS check's path and
//! bodies, or an alert mail's text, one at a time).
//! Calls: `acme`, `backup_mx`, `channels`, `dyndns`, `event_log`, `instrument`, `link`, `mail_settings`,
//! `mail_status`, `mailbox_probe`, `network`, `random`, `stack`, `status_page`, `store`, `wall_clock`.

pub mod ndn;
pub mod smarthost;

use core::net::Ipv4Addr;
use core::sync::atomic::Ordering;

use embassy_futures::select::{select3, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{Duration, Timer};
use static_cell::ConstStaticCell;
use homemx_exchange::{exchange, flush, Inbox};
use homemx_smtp::client::{ClientConfig, ClientEvent, ClientProtocol, ClientSession, Envelope, Outcome, RecipientResult, TlsRequirement};
use homemx_spool::queue_policy::{self, AttemptResults, Disposition, QueueClock};
use homemx_spool::{MessageId, MessageReader, CHUNK_CAPACITY, ENVELOPE_CAPACITY};
use homemx_wire::config::DeliveryProtocol;

use crate::link::{ConnectionBuffers, Link};
use crate::network::{mail_clock as now, uptime_seconds};
use crate::random::DerivedRandom;
use crate::stack::own_frame;

/// How often the queue is looked at without a signal.
const QUEUE_POLL: Duration = Duration::from_secs(5);
const ADDRESS_CAPACITY: usize = 256;
/// Recipients one attempt carries (a message may have 128: the rest go in the next attempt,
/// at once, as RFC 5321 3.3 allows). Bounds the delivery task's RAM.
pub const BATCH_RECIPIENTS: usize = 32;
/// Bytes of recipient addresses one attempt carries.
const BATCH_ADDRESS_BYTES: usize = 2048;

pub use homemx_spool::queue_policy::Route;

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
    /// When the message was queued (Unix seconds; 0: unknown).
    pub queued_at: u64,
}

impl Attempt {
    const EMPTY: Self = Self {
        id: MessageId(0),
        sender: heapless::String::new(),
        addresses: heapless::String::new(),
        recipients: heapless::Vec::new(),
        more_pending: false,
        length: 0,
        queued_at: 0,
    };

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

/// One session's recipient results, in the session's order.
pub type SessionResults = heapless::Vec<RecipientResult, BATCH_RECIPIENTS>;

/// A delivery pass's attempt, its outcomes, and a session's results (3.7 KB).
struct DeliveryScratch {
    attempt: Attempt,
    outcomes: Outcomes,
    /// The results of the session under way (mailbox host or smarthost): held in its future,
    /// they made the delivery pass 516 bytes larger.
    results: SessionResults,
}

/// The courier's scratch: a fetch's lists and header, a delivery pass's attempt and outcomes, a
/// DynDNS check's path and bodies, or an alert mail's text. The courier runs one job at a time,
/// so they share one static (its size is the fetch's); held in the jobs' futures, they made
/// them the largest of the courier's (the attempt 10 KB beside the smarthost session, the alert
/// text 4 KB), and the courier's future is as large as its largest job. Its size is its largest
/// variant's by design: it lives once, in a static.
#[allow(clippy::large_enum_variant)]
enum CourierScratch {
    Fetch(crate::backup_mx::FetchScratch),
    Delivery(DeliveryScratch),
    DynDns(crate::dyndns::DynDnsScratch),
    AlertText([u8; homemx_status::MAIL_BUFFER_SIZE]),
}

/// The one [`CourierScratch`] (empty lists and zero bytes: `.bss`), taken by the courier once.
static COURIER_SCRATCH: ConstStaticCell<CourierScratch> = ConstStaticCell::new(CourierScratch::Fetch(crate::backup_mx::FetchScratch::EMPTY));

impl CourierScratch {
    /// The scratch as a fetch's. Not inlined: a variant switched to may be built on the stack
    /// first, which then happens in this shallow frame only, never under the courier's jobs.
    #[inline(never)]
    fn fetch(&mut self) -> &mut crate::backup_mx::FetchScratch {
        if !matches!(self, Self::Fetch(_)) {
            *self = Self::Fetch(crate::backup_mx::FetchScratch::EMPTY);
        }
        match self {
            Self::Fetch(scratch) => scratch,
            _ => unreachable!("switched to the fetch's above"),
        }
    }

    /// The scratch as a delivery pass's (see [`CourierScratch::fetch`]).
    #[inline(never)]
    fn delivery(&mut self) -> &mut DeliveryScratch {
        if !matches!(self, Self::Delivery(_)) {
            *self = Self::Delivery(DeliveryScratch { attempt: Attempt::EMPTY, outcomes: Outcomes::new(), results: SessionResults::new() });
        }
        match self {
            Self::Delivery(scratch) => scratch,
            _ => unreachable!("switched to the delivery's above"),
        }
    }

    /// The scratch as a DynDNS check's (see [`CourierScratch::fetch`]).
    #[inline(never)]
    fn dyndns(&mut self) -> &mut crate::dyndns::DynDnsScratch {
        if !matches!(self, Self::DynDns(_)) {
            *self = Self::DynDns(crate::dyndns::DynDnsScratch::EMPTY);
        }
        match self {
            Self::DynDns(scratch) => scratch,
            _ => unreachable!("switched to the DynDNS check's above"),
        }
    }

    /// The scratch as the alert mail's text (see [`CourierScratch::fetch`]).
    #[inline(never)]
    fn alert_text(&mut self) -> &mut [u8; homemx_status::MAIL_BUFFER_SIZE] {
        if !matches!(self, Self::AlertText(_)) {
            *self = Self::AlertText([0; homemx_status::MAIL_BUFFER_SIZE]);
        }
        match self {
            Self::AlertText(text) => text,
            _ => unreachable!("switched to the alert text above"),
        }
    }
}

/// The provider task: delivery passes and, between them, the backup-MX fetch (both use the one
/// set of TLS buffers, and one task's future costs RAM once instead of twice).
#[embassy_executor::task]
pub async fn delivery_task(stack: Stack<'static>, mut random: DerivedRandom) -> ! {
    // The courier owns the one set of TLS buffers: its provider connections never overlap.
    let buffers = crate::link::take_connection_buffers().expect("the courier is the one task that takes the TLS buffers");
    let scratch = COURIER_SCRATCH.try_take().expect("the courier is the one task that takes its scratch");
    let mut next_fetch = 0u64;
    let mut next_dyndns_check = 0u64;
    let mut next_identity_check = 0u64;
    let mut clock_was_set = false;
    // Each job below is polled in a frame of its own (`own_frame`): inlined here, their
    // locals together made this poll frame 24 KB, under every path of every job.
    loop {
        let woken = select3(crate::channels::DELIVERY_DUE.wait(), crate::channels::FETCH_NOW.wait(), Timer::after(QUEUE_POLL)).await;
        // The spool's counter mark, when due (after commits, deletes and aborts): persisted
        // here, never on a session's way to "250".
        if let Some(mut stores) = crate::store::open().await {
            stores.persist_spool_counters().await;
        }
        // The alert board persisted when it changed, new alerts mailed to postmaster@.
        own_frame(crate::status_page::alert_mail_job(&mut random, scratch.alert_text())).await;
        // The TLS identity: its self-signed certificate made once the clock is set, renewed
        // when due, the expiry alert raised (hourly; the console refreshes it at unlock and
        // commit).
        let clock_set = crate::wall_clock::unix_seconds().is_some();
        if uptime_seconds() >= next_identity_check || clock_set != clock_was_set {
            next_identity_check = uptime_seconds() + 3600;
            clock_was_set = clock_set;
            own_frame(crate::store::refresh_tls_identity()).await;
        }
        let Some((poll_seconds, check_seconds)) = crate::mail_settings::read(|current| {
            current.map(|settings| {
                (
                    settings.backup_mx.as_ref().map(|backup| u64::from(backup.poll_interval_seconds)),
                    settings.dyndns.as_ref().map(|dyndns| u64::from(dyndns.check_interval_seconds)),
                )
            })
        }) else {
            continue;
        };
        if let Some(check_seconds) = check_seconds {
            let forced = crate::channels::CHECK_NOW.signaled();
            if forced || uptime_seconds() >= next_dyndns_check {
                crate::channels::CHECK_NOW.reset();
                next_dyndns_check = uptime_seconds() + check_seconds.max(60);
                own_frame(crate::dyndns::check(stack, &mut random, buffers, scratch.dyndns())).await;
            }
        }
        // The certificate from the `[tls.acme]` CA, when due or asked for (`homemx tls renew`).
        let forced = crate::channels::ACME_NOW.signaled();
        crate::channels::ACME_NOW.reset();
        own_frame(crate::acme::run_if_due(stack, &mut random, buffers, forced)).await;
        if let Some(poll_seconds) = poll_seconds {
            if matches!(woken, Either3::Second(())) || uptime_seconds() >= next_fetch {
                next_fetch = uptime_seconds() + poll_seconds.max(60);
                own_frame(crate::backup_mx::fetch(stack, &mut random, buffers, scratch.fetch())).await;
            }
        }
        own_frame(delivery_pass(stack, &mut random, buffers, scratch.delivery())).await;
        // No delivery talked to the mailbox host for a while (the spool is empty, or its
        // mail waits for a retry): the probe keeps the status page's headline current.
        if crate::mail_status::mailbox_probe_due(QUEUE_POLL) {
            if let Some(host) = mailbox_endpoint() {
                own_frame(probe_mailbox(stack, host)).await;
            }
        }
    }
}

/// One delivery pass: tries every message that is due once. The attempt and its outcomes
/// (3.2 KB) are the courier's scratch's ([`CourierScratch`]), not this future's.
/// Its steps are polled in frames of their own ([`own_frame`]), as the task's jobs are.
async fn delivery_pass(stack: Stack<'static>, random: &mut DerivedRandom, buffers: &mut ConnectionBuffers, scratch: &mut DeliveryScratch) {
    // Each pass tries every message that is due once.
    let retry_all = crate::channels::RETRY_ALL_NOW.swap(false, Ordering::Relaxed);
    let mut tried: heapless::Vec<MessageId, 16> = heapless::Vec::new();
    let DeliveryScratch { attempt, outcomes, results } = scratch;
    loop {
        if !own_frame(next_attempt(&tried, retry_all, attempt)).await {
            break;
        }
        let _ = tried.push(attempt.id);
        outcomes.clear();
        let local = attempt.recipients(Route::Mailbox).next().is_some();
        let outbound = attempt.recipients(Route::Smarthost).next().is_some();
        // Instruction count of a delivery to the mailbox host, spool update included
        // (attempts with outbound recipients are not measured: they include the smarthost).
        let measurement = (local && !outbound).then(|| crate::instrument::begin(crate::instrument::Operation::MailboxDelivery));
        if local {
            own_frame(deliver_to_mailbox(stack, attempt, outcomes, results, buffers)).await;
        }
        if outbound {
            own_frame(smarthost::deliver(stack, attempt, outcomes, results, random, buffers)).await;
        }
        own_frame(record_outcomes(attempt, outcomes)).await;
        if let Some(measurement) = measurement {
            if outcomes.iter().any(|outcome| outcome.result.outcome == Outcome::Delivered) {
                measurement.end();
            }
        }
        if tried.is_full() {
            // More to do: come back at once rather than after the poll interval.
            crate::channels::DELIVERY_DUE.signal(());
            if retry_all {
                crate::channels::RETRY_ALL_NOW.store(true, Ordering::Relaxed);
            }
            break;
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
    crate::mail_settings::read(|settings| {
        let mailbox = settings?.mailbox.as_ref()?;
        Some(IpEndpoint::new(Ipv4Addr::from(mailbox.address).into(), mailbox.port))
    })
}

/// Whether `address`'s domain is one of ours (mail for it stays on the LAN).
pub fn route_of(address: &str) -> Route {
    let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
    let local = crate::mail_settings::read(|current| current.is_some_and(|settings| settings.relay.is_accepted_domain(domain)));
    if local {
        Route::Mailbox
    } else {
        Route::Smarthost
    }
}

/// Fills `attempt` with the next queued message whose retry time has come and its pending
/// recipients; false when none is due.
async fn next_attempt(tried: &[MessageId], retry_all: bool, attempt: &mut Attempt) -> bool {
    let Some(mut stores) = crate::store::open().await else {
        return false;
    };
    let Some(summary) = queue_policy::next_due(stores.spool.messages(), tried, uptime_seconds(), retry_all) else {
        return false;
    };
    let mut envelope_bytes = [0u8; ENVELOPE_CAPACITY];
    let Ok(envelope) = stores.spool.read_envelope(summary.id, &mut envelope_bytes).await else {
        return false;
    };
    *attempt = Attempt { id: summary.id, length: summary.length, queued_at: envelope.queued_at(), ..Attempt::EMPTY };
    let _ = attempt.sender.push_str(core::str::from_utf8(envelope.reverse_path()).unwrap_or(""));
    for index in queue_policy::pending(&summary.delivery, envelope.recipients().len()) {
        let address = core::str::from_utf8(envelope.recipient(index).unwrap_or(b"")).unwrap_or("");
        if attempt.recipients.is_full() || attempt.addresses.len() + address.len() > attempt.addresses.capacity() {
            attempt.more_pending = true;
            break;
        }
        let _ = attempt.addresses.push_str(address);
        let _ = attempt.recipients.push((index as u8, attempt.addresses.len() as u16, route_of(address)));
    }
    true
}

/// Opens the message for reading its body.
pub async fn open_body(id: MessageId) -> Option<MessageReader> {
    crate::store::open().await?.spool.open_message(id).await.ok()
}

/// Delivers the attempt's local recipients to the LAN mailbox host (`results`: the session's,
/// lent by the pass).
async fn deliver_to_mailbox(stack: Stack<'static>, attempt: &Attempt, outcomes: &mut Outcomes, results: &mut SessionResults, buffers: &mut ConnectionBuffers) {
    let Some((address, port, protocol, host_name)) = crate::mail_settings::read(|settings| {
        let settings = settings?;
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
    let Ok(mut session) = ClientSession::new(&config, envelope, false, now()) else {
        crate::event_warning!("delivery: message {} has an envelope the client refuses", attempt.id.0);
        return;
    };
    let Some(mut reader) = open_body(attempt.id).await else {
        return;
    };
    // More than one segment of the body in flight, sent at once (no Nagle): the mailbox host's
    // TCP (Linux) then acknowledges at once. With 1 KB to transmit, or with Nagle holding the
    // second segment until the first is acknowledged, Linux delays that ACK (40 ms) in every
    // delivery: 65-75 ms per 10 KB message instead of about 20 (`cargo xtask throughput`).
    let mut socket = TcpSocket::new(stack, &mut buffers.socket_receive[..1024], &mut buffers.socket_transmit);
    socket.set_timeout(Some(Duration::from_secs(60)));
    socket.set_nagle_enabled(false);
    let host = IpEndpoint::new(address.into(), port);
    let connected = socket.connect(host).await.is_ok();
    if !connected {
        defmt::warn!("delivery: mailbox host {} unreachable; message {=u32} waits", host, attempt.id.0);
    }
    let mut link = Link::Plain(socket);
    results.clear();
    run_session(&mut link, &mut session, connected, &mut reader, results, &mut None).await;
    link.close().await;
    // For the headline: the host is there if it took or refused a recipient for good.
    let answered = results.iter().any(|result| result.outcome != Outcome::Deferred);
    crate::mail_status::mailbox_contact(match (connected, answered) {
        (false, _) => Err(homemx_status::MailboxFailure::Unreachable),
        (true, false) => Err(homemx_status::MailboxFailure::Refusing),
        (true, true) => Ok(()),
    });
    for &result in results.iter() {
        if let Some(&index) = indices.get(result.index) {
            let _ = outcomes.push(RecipientOutcome { index, route: Route::Mailbox, result });
        }
    }
}

pub use crate::link::TlsStart;

/// Drives a client session over `link` until it ends; collects every recipient's result.
/// `connected` false: the connection failed, every recipient is deferred. The session (2.3 KB)
/// and the TLS start are borrowed, not moved in: an async fn's argument taken by value exists
/// twice in its future (as the argument and as the local it is moved into), and a third time
/// in the caller's.
pub async fn run_session<'b>(
    link: &mut Link<'_, 'b>,
    session: &mut ClientSession<'_>,
    connected: bool,
    reader: &mut MessageReader,
    results: &mut SessionResults,
    tls: &mut Option<TlsStart<'b, '_>>,
) {
    if !connected {
        session.connection_closed();
    }
    // What the server sent and the session has not taken yet (see homemx_exchange).
    let mut inbox = Inbox::<512>::new();
    loop {
        match session.poll(now()) {
            Some(ClientEvent::StartTls) => {
                let flushed = flush(link, session).await;
                let Some(start) = tls.take().filter(|_| flushed) else {
                    session.tls_failed();
                    continue;
                };
                let server_name = start.server_name;
                match link.start_tls(start).await {
                    Ok(()) => session.tls_established(now()),
                    Err(error) if !error.is_refusal() => {
                        // The connection broke: not the server's certificate (no alert).
                        crate::event_warning!("TLS handshake with {} broke off: {}", server_name, error.describe());
                        session.connection_closed();
                    }
                    Err(error) => {
                        // The session reports TlsProblem::HandshakeFailed next: that raises the alert.
                        crate::event_warning!("TLS handshake with {} refused: {}", server_name, error.describe());
                        session.tls_failed();
                    }
                }
            }
            Some(ClientEvent::TlsProblem(problem)) => {
                smarthost::tls_problem(problem);
            }
            Some(ClientEvent::PlaintextDiscarded { octets }) => {
                crate::event_warning!("delivery: {} octets the server sent after its 220 to STARTTLS were discarded", octets);
            }
            Some(ClientEvent::SendBody) => {
                // The session asks once: stream the whole body, then the end of data.
                if !send_body(link, session, reader).await {
                    session.connection_closed();
                }
            }
            Some(ClientEvent::RecipientResult(result)) => {
                let _ = results.push(result);
            }
            Some(ClientEvent::OutputFull) => {
                if !flush(link, session).await {
                    session.connection_closed();
                }
            }
            Some(ClientEvent::Close) => {
                let _ = flush(link, session).await;
                break;
            }
            None => {
                if session.is_finished() {
                    break;
                }
                // Send, then feed what the server says; a closed or broken connection is told
                // to the session, which defers what has no result yet and finishes.
                exchange(link, session, &mut inbox, now).await;
            }
        }
    }
}

/// Streams the message from the spool into the session, chunk by chunk, and ends the data.
async fn send_body(link: &mut Link<'_, '_>, session: &mut ClientSession<'_>, reader: &mut MessageReader) -> bool {
    let mut chunk = [0u8; CHUNK_CAPACITY];
    loop {
        let length = {
            match crate::store::open().await {
                Some(mut stores) => match stores.spool.read_chunk(reader, &mut chunk).await {
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

/// Writes the attempt's results to the spool as [`queue_policy::record_outcomes`] decides:
/// the message's new delivery state (delivered and failed recipients, the next retry time),
/// then its deletion when no recipient is pending; the counters, and an NDN for outbound
/// recipients that failed.
async fn record_outcomes(attempt: &Attempt, outcomes: &[RecipientOutcome]) {
    // The answer that decided a recipient (the 5xx of a refused one, the 4xx of an expired one).
    let result_of = |index: usize, decided_by: Outcome| {
        let mut answers = outcomes.iter().filter(|outcome| outcome.index == index);
        answers.clone().find(|outcome| outcome.result.outcome == decided_by).or_else(|| answers.next())
    };
    let mut failed_outbound: heapless::Vec<(usize, RecipientResult), BATCH_RECIPIENTS> = heapless::Vec::new();
    let expired;
    {
        let Some(mut stores) = crate::store::open().await else {
            return;
        };
        let Some(summary) = stores.spool.message(attempt.id) else {
            return;
        };
        let recorded = {
            let mut results = AttemptResults::new();
            for route in [Route::Mailbox, Route::Smarthost] {
                for (index, _) in attempt.recipients(route) {
                    results.tried(index, route);
                }
            }
            for outcome in outcomes {
                let answer = match outcome.result.outcome {
                    Outcome::Delivered => queue_policy::Outcome::Delivered,
                    Outcome::Deferred => queue_policy::Outcome::Deferred,
                    Outcome::Bounced => queue_policy::Outcome::Failed,
                };
                results.answered(outcome.index, answer);
            }
            let clock = QueueClock { uptime_seconds: uptime_seconds(), unix_seconds: crate::wall_clock::unix_seconds() };
            queue_policy::record_outcomes(
                summary.delivery,
                summary.recipient_count,
                &results,
                attempt.more_pending,
                attempt.queued_at,
                clock,
            )
        };
        for refusal in recorded.refused.iter().filter_map(|index| result_of(index, Outcome::Bounced)) {
            let (index, code) = (refusal.index, refusal.result.code);
            match refusal.route {
                Route::Mailbox => {
                    crate::event_warning!("delivery: the mailbox host refused recipient {} of message {} for good", index, attempt.id.0)
                }
                Route::Smarthost => {
                    crate::event_warning!(
                        "outbound: the smarthost refused recipient {} of message {} for good ({})",
                        index,
                        attempt.id.0,
                        code
                    )
                }
            }
        }
        for index in recorded.expired.iter() {
            crate::event_warning!("outbound: recipient {} of message {} expired after 5 days in the queue", index, attempt.id.0);
        }
        for index in recorded.non_delivery_report.iter() {
            let decided_by = if recorded.expired.contains(index) { Outcome::Deferred } else { Outcome::Bounced };
            if let Some(decision) = result_of(index, decided_by) {
                let _ = failed_outbound.push((index, decision.result));
            }
        }
        expired = !recorded.expired.is_empty();
        let counts = recorded.counts;
        crate::mail_status::update(|status| {
            status.delivered_local += counts.delivered_local;
            status.relayed += counts.relayed;
            status.deferred += u32::from(counts.deferred > 0);
            status.bounced += counts.bounced;
        });
        // One state record first: a power cut before the delete never delivers a recipient twice.
        let _ = stores.spool.set_delivery_state(attempt.id, recorded.state).await;
        match recorded.disposition {
            Disposition::Remove => {
                let _ = stores.spool.delete(attempt.id).await;
                crate::event_info!(
                    "delivery: message {} done ({} to the mailbox host, {} to the smarthost) and removed",
                    attempt.id.0,
                    counts.delivered_local,
                    counts.relayed
                );
            }
            Disposition::Retry { delay_seconds, .. } => {
                if attempt.more_pending {
                    crate::channels::DELIVERY_DUE.signal(());
                }
                defmt::info!("delivery: message {=u32} deferred, next try in {=u64} s", attempt.id.0, delay_seconds);
            }
        }
        stores.persist_spool_counters().await;
        stores.publish_space();
    }
    if !failed_outbound.is_empty() {
        ndn::report(attempt, &failed_outbound, expired).await;
    }
}
