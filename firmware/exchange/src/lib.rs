//! The one I/O driver of the appliance's sans-I/O client sessions (SMTP and LMTP towards the
//! mailbox host and the smarthost, POP3 towards the backup MX): **flush → read → feed**.
//!
//! A session is polled until it has nothing to do without its peer; then [`exchange`] sends
//! its output and gives it input. Two rules that every copy of this loop used to get wrong
//! somewhere:
//!
//! - **The byte count that `receive` returns is honoured.** A session takes fewer bytes than
//!   offered when its input buffer is full; the rest waits in the [`Inbox`] and is offered
//!   again after the session was polled (and made room), before anything new is read.
//! - **The end is the end.** End of stream, a transport error or a failed write tell the
//!   session its connection is gone ([`Session::connection_closed`]) and return
//!   [`Exchanged::Closed`]; a session that takes nothing twice in a row although it was
//!   polled in between would never take more, so that ends the connection too. No input
//!   makes the caller's loop spin.
//!
//! Owns only the bytes read and not yet fed; calls the transport (embedded-io-async) and the
//! session, nothing else.
#![no_std]

use embedded_io_async::{Read, Write};

/// What the driver needs of a sans-I/O session.
pub trait Session {
    /// The session's clock reading, given with every input.
    type Time: Copy;
    /// Bytes to send now.
    fn output(&self) -> &[u8];
    /// `octets` of the output were sent.
    fn output_sent(&mut self, octets: usize);
    /// Copies peer bytes in; returns how many were taken (fewer when its input is full).
    fn receive(&mut self, data: &[u8], now: Self::Time) -> usize;
    /// The connection ended (the peer closed it, or it broke).
    fn connection_closed(&mut self);
}

/// The bytes read from the peer that the session has not taken yet.
pub struct Inbox<const N: usize> {
    bytes: [u8; N],
    start: usize,
    end: usize,
    /// The last offer was refused entirely.
    refused: bool,
}

impl<const N: usize> Default for Inbox<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Inbox<N> {
    /// An empty inbox.
    pub const fn new() -> Self {
        Inbox { bytes: [0; N], start: 0, end: 0, refused: false }
    }

    /// Bytes read and not yet taken by the session.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }
}

/// What one [`exchange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchanged {
    /// The session took this many bytes (0 once: poll it, then exchange again).
    Fed(usize),
    /// The connection is over; the session was told.
    Closed,
}

/// Sends the session's pending output; false (and the session told) if the transport failed.
pub async fn flush<T: Write, S: Session>(transport: &mut T, session: &mut S) -> bool {
    while !session.output().is_empty() {
        match transport.write(session.output()).await {
            Ok(0) | Err(_) => {
                session.connection_closed();
                return false;
            }
            Ok(count) => session.output_sent(count),
        }
    }
    if transport.flush().await.is_err() {
        session.connection_closed();
        return false;
    }
    true
}

/// One turn of the loop, once the session has nothing to do without its peer: sends its
/// output, then offers it input: what an earlier turn read and it did not take yet, else what
/// the peer sends next (waiting for it).
pub async fn exchange<T: Read + Write, S: Session, const N: usize>(
    transport: &mut T,
    session: &mut S,
    inbox: &mut Inbox<N>,
    now: impl Fn() -> S::Time,
) -> Exchanged {
    if !flush(transport, session).await {
        return Exchanged::Closed;
    }
    if inbox.start == inbox.end {
        inbox.start = 0;
        inbox.end = 0;
        match transport.read(&mut inbox.bytes).await {
            Ok(0) | Err(_) => {
                session.connection_closed();
                return Exchanged::Closed;
            }
            Ok(count) => inbox.end = count,
        }
    }
    let taken = session.receive(inbox.pending(), now()).min(inbox.end - inbox.start);
    inbox.start += taken;
    if taken == 0 {
        if inbox.refused {
            // Polled in between and still no room: it never will have.
            session.connection_closed();
            return Exchanged::Closed;
        }
        inbox.refused = true;
    } else {
        inbox.refused = false;
    }
    Exchanged::Fed(taken)
}

impl Session for homemx_smtp::client::ClientSession<'_> {
    type Time = homemx_smtp::Now;
    fn output(&self) -> &[u8] {
        homemx_smtp::client::ClientSession::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_smtp::client::ClientSession::output_sent(self, octets)
    }
    fn receive(&mut self, data: &[u8], now: homemx_smtp::Now) -> usize {
        homemx_smtp::client::ClientSession::receive(self, data, now)
    }
    fn connection_closed(&mut self) {
        homemx_smtp::client::ClientSession::connection_closed(self)
    }
}

impl Session for homemx_pop3::Pop3Session<'_> {
    /// Milliseconds of a monotonic clock.
    type Time = u64;
    fn output(&self) -> &[u8] {
        homemx_pop3::Pop3Session::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_pop3::Pop3Session::output_sent(self, octets)
    }
    fn receive(&mut self, data: &[u8], now_ms: u64) -> usize {
        homemx_pop3::Pop3Session::receive(self, data, now_ms)
    }
    fn connection_closed(&mut self) {
        homemx_pop3::Pop3Session::connection_closed(self)
    }
}
