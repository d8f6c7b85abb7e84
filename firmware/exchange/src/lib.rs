//! The one I/O driver of the appliance's sans-I/O sessions: **flush → read → feed**. Two
//! shapes of session use it:
//!
//! - a [`Session`] copies the peer's bytes in (`receive`); the client sessions (SMTP and LMTP
//!   towards the mailbox host and the smarthost, POP3 towards the backup MX) run on
//!   [`exchange`], which keeps what was read and not taken yet in an [`Inbox`];
//! - a [`LendingSession`] lends its own input buffer to be read into (`receive_buffer`, then
//!   `received`); the MX's server sessions run on [`send`] and [`fill`], without a second
//!   buffer per session (RAM), and with the session's deadline on the read.
//!
//! A session is polled until it has nothing to do without its peer; then the driver sends its
//! output and gives it input. Two rules that every copy of this loop used to get wrong
//! somewhere:
//!
//! - **The byte count that `receive` returns is honoured.** A session takes fewer bytes than
//!   offered when its input buffer is full; the rest waits in the [`Inbox`] and is offered
//!   again after the session was polled (and made room), before anything new is read. A
//!   lending session is read into only as far as the room it lends, and told exactly how
//!   many bytes arrived.
//! - **The end is the end.** End of stream, a transport error or a failed write end the
//!   connection: [`exchange`] tells the session ([`Session::connection_closed`]) and returns
//!   [`Exchanged::Closed`]; [`send`] returns false and [`fill`] [`Filled::Ended`] (a lending
//!   session is not told: the server session has no such input, its owner drops it). A session
//!   that takes nothing twice in a row although it was polled in between would never take
//!   more, so that ends the connection too ([`Filled::InputFull`] for a lending session,
//!   which is polled before every read). No input makes the caller's loop spin.
//!
//! Owns only the bytes read and not yet fed; calls the transport (embedded-io-async) and the
//! session, nothing else. It has no clock: a lending session's deadline is waited for with
//! the timer the caller gives [`fill`].
#![no_std]

use core::future::Future;

use embassy_futures::select::{select, Either};
use embedded_io_async::{Read, Write};

/// The output side, common to both shapes of session.
pub trait Output {
    /// Bytes to send now.
    fn output(&self) -> &[u8];
    /// `octets` of the output were sent.
    fn output_sent(&mut self, octets: usize);
}

/// What [`exchange`] needs of a sans-I/O session that copies its input in.
pub trait Session: Output {
    /// The session's clock reading, given with every input.
    type Time: Copy;
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

/// Writes the session's pending output to the transport; false if the transport failed (the
/// connection is over). Does not flush the transport: a socket sends what it was given on its
/// own, and waiting for the peer's acknowledgement (an embassy-net socket's flush) would hold
/// back reading the commands a client pipelined behind the ones just answered.
pub async fn send<T: Write, S: Output + ?Sized>(transport: &mut T, session: &mut S) -> bool {
    while !session.output().is_empty() {
        match transport.write(session.output()).await {
            Ok(0) | Err(_) => return false,
            Ok(count) => session.output_sent(count),
        }
    }
    true
}

/// [`send`]s the session's pending output and flushes the transport; false (and the session
/// told) if the transport failed.
pub async fn flush<T: Write, S: Session>(transport: &mut T, session: &mut S) -> bool {
    if !send(transport, session).await || transport.flush().await.is_err() {
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

impl Output for homemx_smtp::client::ClientSession<'_> {
    fn output(&self) -> &[u8] {
        homemx_smtp::client::ClientSession::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_smtp::client::ClientSession::output_sent(self, octets)
    }
}

impl Session for homemx_smtp::client::ClientSession<'_> {
    type Time = homemx_smtp::Now;
    fn receive(&mut self, data: &[u8], now: homemx_smtp::Now) -> usize {
        homemx_smtp::client::ClientSession::receive(self, data, now)
    }
    fn connection_closed(&mut self) {
        homemx_smtp::client::ClientSession::connection_closed(self)
    }
}

impl Output for homemx_pop3::Pop3Session<'_> {
    fn output(&self) -> &[u8] {
        homemx_pop3::Pop3Session::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_pop3::Pop3Session::output_sent(self, octets)
    }
}

impl Session for homemx_pop3::Pop3Session<'_> {
    /// Milliseconds of a monotonic clock.
    type Time = u64;
    fn receive(&mut self, data: &[u8], now_ms: u64) -> usize {
        homemx_pop3::Pop3Session::receive(self, data, now_ms)
    }
    fn connection_closed(&mut self) {
        homemx_pop3::Pop3Session::connection_closed(self)
    }
}

/// What [`fill`] needs of a sans-I/O session that lends its own input buffer to be read into.
pub trait LendingSession: Output {
    /// The session's clock reading, given with every input.
    type Time: Copy;
    /// When waiting for input ends (the session times out), in the milliseconds of the clock
    /// the caller's timer uses; `None` to wait as long as the peer takes.
    fn deadline(&self) -> Option<u64>;
    /// Its free input space; empty while it takes no input (poll it first).
    fn receive_buffer(&mut self) -> &mut [u8];
    /// The first `octets` of [`LendingSession::receive_buffer`] were filled.
    fn received(&mut self, octets: usize, now: Self::Time);
}

/// What one [`fill`] brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filled {
    /// This many bytes were read into the session's buffer and accounted for (at least one).
    Octets(usize),
    /// The session's deadline passed first: poll it (it times out).
    DeadlinePassed,
    /// The peer closed the connection (end of stream) or it broke (an error): it is over.
    /// Never "no bytes yet": reading again would return at once, and the loop would spin.
    Ended,
    /// The session lent no room although it was polled before: it never will, so the
    /// connection is over (a bug in the session; the one answer that cannot spin).
    InputFull,
}

/// The read half of one turn of a lending session's loop, once it was polled and its output
/// [`send`]: reads what the peer sends next into the session's own buffer, waiting at most
/// until its deadline (`timer(deadline)` completes then), and tells it how many bytes arrived.
/// Anything but [`Filled::Octets`] and [`Filled::DeadlinePassed`] ends the connection.
pub async fn fill<T: Read, S: LendingSession + ?Sized, Timer: Future<Output = ()>>(
    transport: &mut T,
    session: &mut S,
    now: impl FnOnce() -> S::Time,
    timer: impl FnOnce(u64) -> Timer,
) -> Filled {
    let deadline = session.deadline();
    let buffer = session.receive_buffer();
    if buffer.is_empty() {
        return Filled::InputFull;
    }
    let room = buffer.len();
    let read = match deadline {
        Some(deadline) => match select(transport.read(buffer), timer(deadline)).await {
            Either::First(read) => read,
            Either::Second(()) => return Filled::DeadlinePassed,
        },
        None => transport.read(buffer).await,
    };
    match read {
        Ok(0) | Err(_) => Filled::Ended,
        Ok(count) => {
            // A transport that claims more than it was given has not filled more.
            let count = count.min(room);
            session.received(count, now());
            Filled::Octets(count)
        }
    }
}

impl Output for homemx_smtp::ServerSession<'_> {
    fn output(&self) -> &[u8] {
        homemx_smtp::ServerSession::output(self)
    }
    fn output_sent(&mut self, octets: usize) {
        homemx_smtp::ServerSession::output_sent(self, octets)
    }
}

impl LendingSession for homemx_smtp::ServerSession<'_> {
    type Time = homemx_smtp::Now;
    /// Monotonic milliseconds (the clock of [`homemx_smtp::Now::monotonic_milliseconds`]).
    fn deadline(&self) -> Option<u64> {
        homemx_smtp::ServerSession::deadline(self)
    }
    fn receive_buffer(&mut self) -> &mut [u8] {
        homemx_smtp::ServerSession::receive_buffer(self)
    }
    fn received(&mut self, octets: usize, now: homemx_smtp::Now) {
        homemx_smtp::ServerSession::received(self, octets, now)
    }
}
