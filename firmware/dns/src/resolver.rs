//! `Lookup`: the sans-I/O state machine of one DNS lookup over UDP: when to (re)transmit the
//! query to which server, which datagrams to believe, and when to give up.
//!
//! The caller owns the socket (bound to a random source port) and the clock:
//!
//! ```text
//! let mut lookup = Lookup::new("example.org", RecordType::Mx, random_id, &servers, now)?;
//! let result = loop {
//!     while let Some((server, datagram)) = lookup.poll_transmit(now()) { send_to(datagram, server, 53) }
//!     if let Some(result) = lookup.poll_result(now()) { break result }
//!     match receive_until(lookup.next_timeout_ms()) {       // an absolute monotonic instant
//!         Some((from, port, bytes)) => { lookup.handle_datagram(from, port, bytes, now()); }
//!         None => {}                                          // timer: poll again
//!     }
//! };
//! ```

use heapless::Vec;

use crate::error::DnsError;
use crate::message::{matches_query, parse_response, Answer, RecordType, MAX_QUERY_LEN};
use crate::name::HostName;

/// At most this many servers are asked (the rest of a longer list is ignored).
pub const MAX_SERVERS: usize = 3;
/// The DNS server port; answers from any other port are ignored.
pub const DNS_PORT: u16 = 53;
/// How long to wait after each transmission: one entry per attempt, so also the number of
/// attempts (11 s in all). Attempts rotate over the servers.
pub const RETRY_TIMEOUTS_MS: [u64; 4] = [1_000, 2_000, 4_000, 4_000];

/// What [`Lookup::handle_datagram`] did with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramOutcome {
    /// It answered the lookup (or ended it with an error); [`Lookup::poll_result`] has it.
    Finished,
    /// The server answered with a failure (SERVFAIL, REFUSED, a broken answer…); the lookup
    /// goes on with the next server.
    TryingNextServer,
    /// Not from a queried server's port 53, or not a response to our question (wrong ID,
    /// question, …): dropped and counted (see [`Lookup::ignored_datagrams`]).
    Ignored,
    /// The lookup had already finished.
    Late,
}

/// Where the lookup stands (the result is held in place: no allocator to box it).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum State {
    Running,
    Finished(Result<Answer, DnsError>),
    Reported,
}

/// One lookup of `name`/`record_type` against up to [`MAX_SERVERS`] recursive servers.
#[derive(Clone, Debug)]
pub struct Lookup {
    query: [u8; MAX_QUERY_LEN],
    query_len: usize,
    name: HostName,
    record_type: RecordType,
    id: u16,
    servers: Vec<[u8; 4], MAX_SERVERS, u8>,
    queried: [bool; MAX_SERVERS],
    failed: [bool; MAX_SERVERS],
    current: usize,
    attempts: usize,
    transmit_at: Option<u64>,
    deadline: u64,
    server_error: Option<DnsError>,
    ignored: u32,
    state: State,
}

impl Lookup {
    /// Starts a lookup; the first transmission is due at `now_ms`. `id` must be random, and
    /// so must the source port the caller sends from. Fails if `name` is not a host name or
    /// `servers` is empty; servers past the third are ignored.
    pub fn new(
        name: &str,
        record_type: RecordType,
        id: u16,
        servers: &[[u8; 4]],
        now_ms: u64,
    ) -> Result<Lookup, DnsError> {
        let mut query = [0u8; MAX_QUERY_LEN];
        let query_len = crate::message::build_query(id, name, record_type, &mut query)?;
        let name = crate::name::normalise(name)?;
        let mut stored_name = HostName::new();
        stored_name.push_str(name).map_err(|_| DnsError::InvalidName)?;
        if servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        let servers = servers.iter().take(MAX_SERVERS).copied().collect();
        Ok(Lookup {
            query,
            query_len,
            name: stored_name,
            record_type,
            id,
            servers,
            queried: [false; MAX_SERVERS],
            failed: [false; MAX_SERVERS],
            current: 0,
            attempts: 0,
            transmit_at: Some(now_ms),
            deadline: now_ms,
            server_error: None,
            ignored: 0,
            state: State::Running,
        })
    }

    /// The datagram to send now and the server to send it to (port 53), when a transmission
    /// or retransmission is due; `None` otherwise.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<([u8; 4], &[u8])> {
        self.advance(now_ms);
        if !matches!(self.state, State::Running) || self.transmit_at.is_none_or(|at| now_ms < at) {
            return None;
        }
        let index = self.next_server()?;
        let timeout = *RETRY_TIMEOUTS_MS.get(self.attempts)?;
        self.attempts += 1;
        self.current = index;
        *self.queried.get_mut(index)? = true;
        self.deadline = now_ms.saturating_add(timeout);
        self.transmit_at = (self.attempts < RETRY_TIMEOUTS_MS.len()).then_some(self.deadline);
        let server = *self.servers.get(index)?;
        Some((server, self.query.get(..self.query_len)?))
    }

    /// Takes in a datagram that arrived on the lookup's socket from `from`:`from_port`.
    pub fn handle_datagram(&mut self, from: [u8; 4], from_port: u16, bytes: &[u8], _now_ms: u64) -> DatagramOutcome {
        if !matches!(self.state, State::Running) {
            return DatagramOutcome::Late;
        }
        let source = self.servers.iter().position(|&server| server == from);
        let Some(index) = source.filter(|&index| from_port == DNS_PORT && self.queried.get(index) == Some(&true))
        else {
            self.ignored = self.ignored.saturating_add(1);
            return DatagramOutcome::Ignored;
        };
        if matches_query(self.id, &self.name, self.record_type, bytes).is_err() {
            self.ignored = self.ignored.saturating_add(1);
            return DatagramOutcome::Ignored;
        }
        match parse_response(self.id, &self.name, self.record_type, bytes) {
            Ok(answer) => self.finish(Ok(answer)),
            Err(DnsError::Truncated) => self.finish(Err(DnsError::Truncated)),
            Err(error) => return self.server_failed(index, error),
        }
        DatagramOutcome::Finished
    }

    /// The outcome once the lookup is over, given out once: the answer, the error a server
    /// gave, or [`DnsError::Timeout`] when the last attempt timed out without any answer.
    pub fn poll_result(&mut self, now_ms: u64) -> Option<Result<Answer, DnsError>> {
        self.advance(now_ms);
        match core::mem::replace(&mut self.state, State::Reported) {
            State::Finished(result) => Some(result),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The monotonic instant (ms) at which [`poll_transmit`](Self::poll_transmit) or
    /// [`poll_result`](Self::poll_result) next has something to do unless a datagram comes
    /// first; `None` once finished (then poll the result right away).
    pub fn next_timeout_ms(&self) -> Option<u64> {
        match self.state {
            State::Running => Some(self.transmit_at.unwrap_or(self.deadline)),
            State::Finished(_) | State::Reported => None,
        }
    }

    /// How many datagrams were dropped as not ours (a sign of spoofing attempts).
    pub fn ignored_datagrams(&self) -> u32 {
        self.ignored
    }

    /// How many times the query was sent.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// True once the result is ready or was taken.
    pub fn is_finished(&self) -> bool {
        !matches!(self.state, State::Running)
    }

    /// Ends the lookup when the last attempt has timed out.
    fn advance(&mut self, now_ms: u64) {
        if matches!(self.state, State::Running) && self.transmit_at.is_none() && now_ms >= self.deadline {
            self.finish(Err(self.server_error.unwrap_or(DnsError::Timeout)));
        }
    }

    fn finish(&mut self, result: Result<Answer, DnsError>) {
        self.state = State::Finished(result);
        self.transmit_at = None;
    }

    /// The next server to ask after the current one, skipping those that failed.
    fn next_server(&self) -> Option<usize> {
        let count = self.servers.len();
        let first = if self.attempts == 0 { 0 } else { self.current + 1 };
        (0..count).map(|step| (first + step) % count).find(|&index| self.failed.get(index) == Some(&false))
    }

    /// Server `index` answered our question with a failure: ask the next server now if that
    /// was the server we are waiting for, or end the lookup if no server is left.
    fn server_failed(&mut self, index: usize, error: DnsError) -> DatagramOutcome {
        self.server_error = Some(error);
        if let Some(failed) = self.failed.get_mut(index) {
            *failed = true;
        }
        if self.next_server().is_none() {
            self.finish(Err(error));
            return DatagramOutcome::Finished;
        }
        if index == self.current && self.attempts < RETRY_TIMEOUTS_MS.len() {
            self.transmit_at = Some(0);
        }
        DatagramOutcome::TryingNextServer
    }
}
