//! Delivery from the spool to the LAN mailbox host (SMTP or LMTP, homemx-smtp's sans-I/O
//! client): a message leaves the spool only after the host's 2xx for every recipient (or a
//! permanent 5xx, which is logged as an alarm: the MX accepted only known recipients, so a
//! refusal means the mailbox host and the configuration disagree). While the host is down the
//! message waits, with growing delays between attempts.

use core::net::Ipv4Addr;
use core::sync::atomic::{AtomicBool, Ordering};

use embassy_futures::select::select;
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpEndpoint, Stack};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;
use embassy_time::{Duration, Timer};
use homemx_smtp::client::{ClientConfig, ClientEvent, ClientProtocol, ClientSession, Envelope, Outcome, TlsRequirement};
use homemx_spool::{MessageId, MessageReader, RecipientState, CHUNK_CAPACITY, ENVELOPE_CAPACITY, MAX_RECIPIENTS};
use homemx_wire::config::DeliveryProtocol;

use crate::mail_settings::MAIL_SETTINGS;
use crate::network::mail_clock as now;
use crate::vault::VAULT;

/// Wakes the delivery task (a message was committed).
pub static DELIVERY_SIGNAL: Signal<CriticalSectionRawMutex, ()> = Signal::new();

/// Set at unlock: the next pass tries every queued message regardless of its retry time.
/// Retry times count in seconds since boot until the appliance has wall-clock time (SNTP
/// comes with outbound mail), so times written before a reset mean nothing after it; and
/// the appliance coming back is exactly when waiting mail should go out.
pub static RETRY_ALL_NOW: AtomicBool = AtomicBool::new(false);

/// How often the queue is looked at without a signal.
const QUEUE_POLL: Duration = Duration::from_secs(5);
/// First retry delay; it doubles per attempt up to [`LONGEST_RETRY_SECONDS`].
const FIRST_RETRY_SECONDS: u64 = 5;
const LONGEST_RETRY_SECONDS: u64 = 600;
const ADDRESS_CAPACITY: usize = 256;

/// What one attempt needs, copied out of the spool so the vault is not held during I/O.
struct Attempt {
    id: MessageId,
    sender: heapless::String<ADDRESS_CAPACITY>,
    /// The pending recipients' addresses, back to back (the envelope bounds them).
    addresses: heapless::String<ENVELOPE_CAPACITY>,
    /// (index in the envelope, end in `addresses`) of every recipient still pending.
    recipients: heapless::Vec<(usize, usize), MAX_RECIPIENTS>,
    length: u32,
    attempts: u32,
}

#[embassy_executor::task]
pub async fn delivery_task(stack: Stack<'static>) -> ! {
    loop {
        select(DELIVERY_SIGNAL.wait(), Timer::after(QUEUE_POLL)).await;
        let Some((address, port, protocol, host_name)) = MAIL_SETTINGS.lock(|cell| {
            let settings = cell.borrow();
            let settings = settings.as_ref()?;
            let mailbox = settings.mailbox.as_ref()?;
            Some((Ipv4Addr::from(mailbox.address), mailbox.port, mailbox.protocol, settings.host_name.clone()))
        }) else {
            continue;
        };
        // Each pass tries every message that is due once.
        let retry_all = RETRY_ALL_NOW.swap(false, Ordering::Relaxed);
        let mut tried: heapless::Vec<MessageId, 16> = heapless::Vec::new();
        while let Some((attempt, reader)) = next_attempt(&tried, retry_all).await {
            let _ = tried.push(attempt.id);
            let protocol = match protocol {
                DeliveryProtocol::Lmtp => ClientProtocol::Lmtp,
                DeliveryProtocol::Smtp => ClientProtocol::Smtp,
            };
            deliver(stack, attempt, reader, IpEndpoint::new(address.into(), port), protocol, host_name.as_str()).await;
            if tried.is_full() {
                // More to do: come back at once rather than after the poll interval.
                DELIVERY_SIGNAL.signal(());
                if retry_all {
                    RETRY_ALL_NOW.store(true, Ordering::Relaxed);
                }
                break;
            }
        }
    }
}

/// The next queued message whose retry time has come, with its pending recipients.
async fn next_attempt(tried: &[MessageId], retry_all: bool) -> Option<(Attempt, MessageReader)> {
    let mut vault = VAULT.lock().await;
    let stores = vault.as_mut()?.open_stores()?;
    let now_seconds = now().unix_seconds;
    let summary = stores.spool.messages().find(|message| {
        let due = retry_all
            || message.delivery.next_retry <= now_seconds
            // Written in an earlier boot with a larger uptime than now.
            || message.delivery.next_retry > now_seconds + LONGEST_RETRY_SECONDS;
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
    };
    let _ = attempt.sender.push_str(core::str::from_utf8(envelope.reverse_path()).unwrap_or(""));
    for (index, recipient) in envelope.recipients().iter().enumerate() {
        if summary.delivery.recipient(index) == RecipientState::Pending
            && attempt.addresses.push_str(core::str::from_utf8(recipient).unwrap_or("")).is_ok()
        {
            let _ = attempt.recipients.push((index, attempt.addresses.len()));
        }
    }
    let reader = stores.spool.open_message(summary.id).await.ok()?;
    Some((attempt, reader))
}

async fn deliver(
    stack: Stack<'static>,
    attempt: Attempt,
    mut reader: MessageReader,
    host: IpEndpoint,
    protocol: ClientProtocol,
    host_name: &str,
) {
    let mut outcomes: heapless::Vec<(usize, Outcome), MAX_RECIPIENTS> = heapless::Vec::new();
    if !attempt.recipients.is_empty() {
        let mut start = 0;
        let recipients: heapless::Vec<&str, MAX_RECIPIENTS> = attempt
            .recipients
            .iter()
            .map(|&(_, end)| {
                let address = &attempt.addresses[start..end];
                start = end;
                address
            })
            .collect();
        let config = ClientConfig { hostname: host_name, protocol, tls: TlsRequirement::Disabled, credentials: None };
        let envelope = Envelope { sender: attempt.sender.as_str(), recipients: &recipients, size: Some(attempt.length as u64), eight_bit: true };
        match ClientSession::new(&config, envelope, false, now()) {
            Ok(session) => run_session(stack, session, host, &attempt, &mut reader, &mut outcomes).await,
            Err(_) => {
                crate::event_warning!("delivery: message {} has an envelope the client refuses", attempt.id.0);
            }
        }
    }
    record_outcomes(&attempt, &outcomes).await;
}

async fn run_session(
    stack: Stack<'static>,
    mut session: ClientSession<'_>,
    host: IpEndpoint,
    attempt: &Attempt,
    reader: &mut MessageReader,
    outcomes: &mut heapless::Vec<(usize, Outcome), MAX_RECIPIENTS>,
) {
    let mut receive_buffer = [0u8; 1024];
    let mut transmit_buffer = [0u8; 1024];
    let mut socket = TcpSocket::new(stack, &mut receive_buffer, &mut transmit_buffer);
    socket.set_timeout(Some(Duration::from_secs(60)));
    if socket.connect(host).await.is_err() {
        defmt::warn!("delivery: mailbox host {} unreachable; message {=u32} waits", host, attempt.id.0);
        session.connection_closed();
    }
    let mut input = [0u8; 512];
    loop {
        let event = session.poll(now());
        match event {
            Some(ClientEvent::SendBody) => {
                // The session asks once: stream the whole body, then the end of data.
                if !send_body(&mut socket, &mut session, reader).await {
                    socket.abort();
                    session.connection_closed();
                }
            }
            Some(ClientEvent::RecipientResult(result)) => {
                if let Some((index, _)) = attempt.recipients.get(result.index) {
                    let _ = outcomes.push((*index, result.outcome));
                }
            }
            Some(ClientEvent::OutputFull) => {
                if !flush(&mut socket, &mut session).await {
                    session.connection_closed();
                }
            }
            Some(ClientEvent::Close) => {
                let _ = flush(&mut socket, &mut session).await;
                break;
            }
            Some(_) => {}
            None => {
                if session.is_finished() {
                    break;
                }
                if !flush(&mut socket, &mut session).await {
                    session.connection_closed();
                    continue;
                }
                match socket.read(&mut input).await {
                    Ok(0) | Err(_) => session.connection_closed(),
                    Ok(count) => {
                        session.receive(&input[..count], now());
                    }
                }
            }
        }
    }
    crate::network::release(&mut socket).await;
}

/// Streams the message from the spool into the session, chunk by chunk, and ends the data.
async fn send_body(socket: &mut TcpSocket<'_>, session: &mut ClientSession<'_>, reader: &mut MessageReader) -> bool {
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
            if taken == 0 && !flush(socket, session).await {
                return false;
            }
        }
    }
    while !session.end_body(now()) {
        if !flush(socket, session).await {
            return false;
        }
    }
    flush(socket, session).await
}

async fn flush(socket: &mut TcpSocket<'_>, session: &mut ClientSession<'_>) -> bool {
    while !session.output().is_empty() {
        match socket.write(session.output()).await {
            Ok(0) | Err(_) => return false,
            Ok(count) => session.output_sent(count),
        }
    }
    true
}

async fn record_outcomes(attempt: &Attempt, outcomes: &[(usize, Outcome)]) {
    let mut vault = VAULT.lock().await;
    let Some(vault) = vault.as_mut() else {
        return;
    };
    let Some(stores) = vault.open_stores() else {
        return;
    };
    let mut delivered = 0;
    for &(index, outcome) in outcomes {
        match outcome {
            Outcome::Delivered => {
                delivered += 1;
                let _ = stores.spool.mark_delivered(attempt.id, index).await;
            }
            Outcome::Bounced => {
                crate::event_warning!("delivery: the mailbox host refused recipient {} of message {} for good", index, attempt.id.0);
                let _ = stores.spool.mark_failed(attempt.id, index).await;
            }
            Outcome::Deferred => {}
        }
    }
    let done = stores.spool.message(attempt.id).is_some_and(|message| {
        (0..message.recipient_count as usize).all(|index| message.delivery.recipient(index) != RecipientState::Pending)
    });
    if done {
        let _ = stores.spool.delete(attempt.id).await;
        crate::event_info!("delivery: message {} delivered to the mailbox host ({} recipients) and removed", attempt.id.0, delivered);
    } else {
        let delay = (FIRST_RETRY_SECONDS << attempt.attempts.min(16)).min(LONGEST_RETRY_SECONDS);
        let _ = stores.spool.set_next_retry(attempt.id, now().unix_seconds + delay).await;
        defmt::info!("delivery: message {=u32} deferred, next try in {=u64} s", attempt.id.0, delay);
    }
    crate::mail_settings::publish_spool_free_bytes(vault);
}
