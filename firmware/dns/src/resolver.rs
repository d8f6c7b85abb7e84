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
use crate::message::{matches_query, parse_response_into, Answer, RecordType, MAX_QUERY_LEN};
use crate::name::HostName;

/// At most this many servers are asked (the rest of a longer list is ignored).
pub const MAX_SERVERS: usize = 3;
/// The DNS server port; answers from any other port are ignored.
pub const DNS_PORT: u16 = 53;
/// How long to wait after each transmission: one entry per attempt, so also the number of
/// attempts (11 s in all). Attempts rotate over the servers.
pub const RETRY_TIMEOUTS_MS: [u64; 4] = [1_000, 2_000, 4_000, 4_000];

/// The first port of the dynamic range (RFC 6335), where source ports are drawn from.
pub const EPHEMERAL_PORT_FIRST: u16 = 49_152;

/// The source port for a lookup (or an SNTP request) from a random 16-bit value: uniform over
/// the dynamic range 49152-65535 (RFC 6056; 2^16 is a multiple of its 16,384 ports, so no port
/// is favoured). With the random ID it is what an off-path spoofer has to guess.
pub const fn source_port(random: u16) -> u16 {
    EPHEMERAL_PORT_FIRST + random % (u16::MAX - EPHEMERAL_PORT_FIRST + 1)
}

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
        let mut lookup = Lookup::idle();
        lookup.restart(name, record_type, id, servers, now_ms)?;
        Ok(lookup)
    }

    /// A lookup with nothing to do (as one whose result was taken): what a long-lived lookup
    /// holds before its first [`restart`](Self::restart).
    pub const fn idle() -> Lookup {
        Lookup {
            query: [0; MAX_QUERY_LEN],
            query_len: 0,
            name: HostName::new(),
            record_type: RecordType::A,
            id: 0,
            servers: Vec::new(),
            queried: [false; MAX_SERVERS],
            failed: [false; MAX_SERVERS],
            current: 0,
            attempts: 0,
            transmit_at: None,
            deadline: 0,
            server_error: None,
            ignored: 0,
            state: State::Reported,
        }
    }

    /// Starts a lookup in this one's place, as [`new`](Self::new) does (same arguments, same
    /// errors): a lookup kept in a static is reused without building a new one (2.6 KB, most
    /// of it room for the answer) on the stack and moving it there. Idle after an error.
    pub fn restart(&mut self, name: &str, record_type: RecordType, id: u16, servers: &[[u8; 4]], now_ms: u64) -> Result<(), DnsError> {
        self.state = State::Reported;
        self.transmit_at = None;
        self.query_len = crate::message::build_query(id, name, record_type, &mut self.query)?;
        let name = crate::name::normalise(name)?;
        self.name.clear();
        self.name.push_str(name).map_err(|_| DnsError::InvalidName)?;
        if servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        self.servers.clear();
        for server in servers.iter().take(MAX_SERVERS) {
            // At most MAX_SERVERS: always room.
            let _ = self.servers.push(*server);
        }
        self.record_type = record_type;
        self.id = id;
        self.queried = [false; MAX_SERVERS];
        self.failed = [false; MAX_SERVERS];
        self.current = 0;
        self.attempts = 0;
        self.transmit_at = Some(now_ms);
        self.deadline = now_ms;
        self.server_error = None;
        self.ignored = 0;
        self.state = State::Running;
        Ok(())
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
    ///
    /// Never inlined: parsing builds the CNAME chain's names and each record on the stack;
    /// inlined into the caller's async poll (the firmware's resolver) those temporaries stayed
    /// in its frame through every other step, the random draws and the sends included.
    #[inline(never)]
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
        // The answer is parsed straight into the state: no 2.1 KB copy on the stack.
        self.state = State::Finished(Ok(Answer::NoData));
        let parsed = match &mut self.state {
            State::Finished(Ok(answer)) => parse_response_into(self.id, &self.name, self.record_type, bytes, answer),
            _ => Err(DnsError::Malformed),
        };
        match parsed {
            Ok(()) => self.transmit_at = None,
            Err(DnsError::Truncated) => self.finish(Err(DnsError::Truncated)),
            Err(error) => {
                self.state = State::Running;
                return self.server_failed(index, error);
            }
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

    /// The outcome once the lookup is over, borrowed: the answer stays in the lookup (2.1 KB
    /// a caller need not copy onto its stack) until [`poll_result`](Self::poll_result) takes
    /// it or the lookup restarts.
    pub fn poll_outcome(&mut self, now_ms: u64) -> Option<Result<&Answer, DnsError>> {
        self.advance(now_ms);
        match &self.state {
            State::Finished(Ok(answer)) => Some(Ok(answer)),
            State::Finished(Err(error)) => Some(Err(*error)),
            State::Running | State::Reported => None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_encoder::{Encoder, TYPE_A, TYPE_MX};

    const S0: [u8; 4] = [192, 168, 1, 1];
    const S1: [u8; 4] = [9, 9, 9, 9];
    const S2: [u8; 4] = [1, 1, 1, 1];
    const ID: u16 = 0x7E57;
    const START: u64 = 50_000;

    fn start(servers: &[[u8; 4]]) -> Lookup {
        Lookup::new("example.org", RecordType::Mx, ID, servers, START).unwrap()
    }

    fn reply(rcode: u8) -> std::vec::Vec<u8> {
        Encoder::response(ID, rcode)
            .question("example.org", TYPE_MX)
            .mx("example.org", 60, 10, "mx.example.org")
            .finish()
    }

    fn sent(lookup: &mut Lookup, now: u64) -> Option<[u8; 4]> {
        lookup.poll_transmit(now).map(|(server, datagram)| {
            assert_eq!(parse_query_id(datagram), ID);
            server
        })
    }

    fn parse_query_id(datagram: &[u8]) -> u16 {
        u16::from_be_bytes([datagram[0], datagram[1]])
    }

    #[test]
    fn the_datagram_is_the_query() {
        let mut lookup = start(&[S0]);
        let mut expected = [0u8; MAX_QUERY_LEN];
        let length = crate::message::build_query(ID, "example.org", RecordType::Mx, &mut expected).unwrap();
        let (server, datagram) = lookup.poll_transmit(START).unwrap();
        assert_eq!((server, datagram), (S0, &expected[..length]));
    }

    #[test]
    fn retransmission_schedule_rotates_servers_then_times_out() {
        let mut lookup = start(&[S0, S1, S2]);
        assert_eq!(lookup.next_timeout_ms(), Some(START));
        assert_eq!(sent(&mut lookup, START), Some(S0));
        assert_eq!(sent(&mut lookup, START), None);
        assert_eq!(lookup.next_timeout_ms(), Some(START + 1_000));
        assert_eq!(sent(&mut lookup, START + 999), None);
        assert_eq!(lookup.poll_result(START + 999), None);
        assert_eq!(sent(&mut lookup, START + 1_000), Some(S1));
        assert_eq!(lookup.next_timeout_ms(), Some(START + 3_000));
        assert_eq!(sent(&mut lookup, START + 3_000), Some(S2));
        assert_eq!(lookup.next_timeout_ms(), Some(START + 7_000));
        // Polled late: the retransmission goes out then, its timeout counted from then.
        assert_eq!(sent(&mut lookup, START + 7_500), Some(S0));
        assert_eq!(lookup.attempts(), 4);
        assert_eq!(lookup.next_timeout_ms(), Some(START + 11_500));
        assert_eq!(lookup.poll_result(START + 11_499), None);
        assert!(!lookup.is_finished());
        assert_eq!(sent(&mut lookup, START + 11_500), None);
        assert_eq!(lookup.poll_result(START + 11_500), Some(Err(DnsError::Timeout)));
        assert_eq!(lookup.poll_result(START + 11_500), None);
        assert_eq!(lookup.next_timeout_ms(), None);
        assert_eq!(sent(&mut lookup, START + 20_000), None);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(0), START + 20_000), DatagramOutcome::Late);
    }

    #[test]
    fn one_server_gets_every_attempt() {
        let mut lookup = start(&[S0]);
        let mut now = START;
        let mut times = std::vec::Vec::new();
        while lookup.poll_result(now).is_none() {
            if let Some(server) = sent(&mut lookup, now) {
                assert_eq!(server, S0);
                times.push(now - START);
            }
            now = lookup.next_timeout_ms().unwrap_or(now);
        }
        assert_eq!(times, [0, 1_000, 3_000, 7_000]);
        assert_eq!(now - START, 11_000);
    }

    #[test]
    fn answer_finishes_the_lookup() {
        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(0), START + 30), DatagramOutcome::Finished);
        assert!(lookup.is_finished());
        assert_eq!(lookup.next_timeout_ms(), None);
        assert_eq!(sent(&mut lookup, START + 5_000), None);
        let Some(Ok(Answer::Mx { records, .. })) = lookup.poll_outcome(START + 31) else { panic!() };
        assert_eq!(records[0].exchange.as_str(), "mx.example.org");
        assert!(lookup.poll_outcome(START + 31).is_some(), "borrowed, not taken");
        let Some(Ok(Answer::Mx { records, .. })) = lookup.poll_result(START + 31) else { panic!() };
        assert_eq!(records[0].exchange.as_str(), "mx.example.org");
        assert_eq!(lookup.poll_result(START + 32), None);
        assert_eq!(lookup.poll_outcome(START + 32), None);
    }

    /// A finished lookup restarted in place is the lookup `new` makes; one restarted with a
    /// bad name or no servers is idle (no datagram, no result), never the old lookup.
    #[test]
    fn restart_in_place_is_a_new_lookup_and_idle_after_an_error() {
        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(0), START + 30), DatagramOutcome::Finished);
        lookup.restart("example.org", RecordType::Mx, ID, &[S1], START + 100).unwrap();
        let mut fresh = Lookup::new("example.org", RecordType::Mx, ID, &[S1], START + 100).unwrap();
        assert_eq!(lookup.next_timeout_ms(), fresh.next_timeout_ms());
        let sent_by_restarted = lookup.poll_transmit(START + 100).map(|(server, datagram)| (server, datagram.to_vec()));
        assert_eq!(sent_by_restarted, fresh.poll_transmit(START + 100).map(|(server, datagram)| (server, datagram.to_vec())));
        assert_eq!(sent_by_restarted.map(|(server, _)| server), Some(S1));
        assert_eq!(lookup.handle_datagram(S1, 53, &reply(0), START + 130), DatagramOutcome::Finished);
        let Some(Ok(Answer::Mx { records, .. })) = lookup.poll_result(START + 131) else { panic!() };
        assert_eq!(records[0].exchange.as_str(), "mx.example.org");
        for (name, servers) in [("a..b", &[S0][..]), ("example.org", &[][..])] {
            let mut lookup = start(&[S0]);
            assert!(lookup.restart(name, RecordType::A, 1, servers, START).is_err());
            assert_eq!(lookup.next_timeout_ms(), None);
            assert_eq!(lookup.poll_transmit(START), None);
            assert_eq!(lookup.poll_result(START), None);
        }
    }

    #[test]
    fn nxdomain_is_an_answer() {
        let mut lookup = start(&[S0]);
        sent(&mut lookup, START);
        let bytes = Encoder::response(ID, 3).question("example.org", TYPE_MX).soa("org").finish();
        assert_eq!(lookup.handle_datagram(S0, 53, &bytes, START + 1), DatagramOutcome::Finished);
        assert_eq!(lookup.poll_result(START + 1), Some(Ok(Answer::NameError)));
    }

    #[test]
    fn spoofed_datagrams_are_ignored_and_counted() {
        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        let good = reply(0);
        let wrong_id = Encoder::response(ID + 1, 0).question("example.org", TYPE_MX).finish();
        let wrong_question = Encoder::response(ID, 0).question("example.com", TYPE_MX).finish();
        let wrong_type = Encoder::response(ID, 0).question("example.org", TYPE_A).finish();
        let mut as_query = good.clone();
        as_query[2] &= 0x7F;
        let cases: [([u8; 4], u16, &[u8]); 8] = [
            ([6, 6, 6, 6], 53, &good), // not a server
            (S0, 5353, &good),         // wrong port
            (S1, 53, &good),           // a server not asked yet
            (S0, 53, &wrong_id),       // wrong ID
            (S0, 53, &wrong_question), // wrong name
            (S0, 53, &wrong_type),     // wrong type
            (S0, 53, &as_query),       // not a response
            (S0, 53, &good[..5]),      // garbage
        ];
        for (index, (from, port, bytes)) in cases.iter().enumerate() {
            assert_eq!(
                lookup.handle_datagram(*from, *port, bytes, START + 10),
                DatagramOutcome::Ignored,
                "case {index}"
            );
            assert_eq!(lookup.ignored_datagrams(), index as u32 + 1);
            assert_eq!(lookup.poll_result(START + 10), None);
        }
        // Nothing changed the schedule.
        assert_eq!(lookup.next_timeout_ms(), Some(START + 1_000));
        assert_eq!(lookup.handle_datagram(S0, 53, &good, START + 20), DatagramOutcome::Finished);
        assert!(matches!(lookup.poll_result(START + 20), Some(Ok(Answer::Mx { .. }))));
    }

    #[test]
    fn late_answer_from_an_earlier_server_is_taken() {
        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        assert_eq!(sent(&mut lookup, START + 1_000), Some(S1));
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(0), START + 1_200), DatagramOutcome::Finished);
        assert!(matches!(lookup.poll_result(START + 1_200), Some(Ok(_))));
    }

    #[test]
    fn server_failure_moves_on_at_once() {
        let mut lookup = start(&[S0, S1, S2]);
        sent(&mut lookup, START);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(2), START + 40), DatagramOutcome::TryingNextServer);
        assert_eq!(lookup.next_timeout_ms(), Some(0));
        assert_eq!(sent(&mut lookup, START + 41), Some(S1));
        assert_eq!(lookup.next_timeout_ms(), Some(START + 41 + 2_000));
        assert_eq!(lookup.handle_datagram(S1, 53, &reply(5), START + 60), DatagramOutcome::TryingNextServer);
        assert_eq!(sent(&mut lookup, START + 61), Some(S2));
        // S2 times out; the next attempt skips the failed servers.
        assert_eq!(sent(&mut lookup, START + 61 + 4_000), Some(S2));
        // Last attempt timed out: the servers' error is more telling than Timeout.
        assert_eq!(lookup.poll_result(START + 61 + 8_000), Some(Err(DnsError::Refused)));
    }

    #[test]
    fn every_server_failing_ends_the_lookup() {
        let mut lookup = start(&[S0]);
        sent(&mut lookup, START);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(2), START + 5), DatagramOutcome::Finished);
        assert_eq!(lookup.poll_result(START + 5), Some(Err(DnsError::ServerFailure)));

        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        sent(&mut lookup, START + 1_000);
        // A broken answer from a server counts as its failure.
        let mut broken = reply(0);
        broken[7] = 2;
        assert_eq!(lookup.handle_datagram(S1, 53, &broken, START + 1_010), DatagramOutcome::TryingNextServer);
        // S1 is the server we were waiting for: the next attempt goes to S0 at once.
        assert_eq!(sent(&mut lookup, START + 1_011), Some(S0));
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(2), START + 1_020), DatagramOutcome::Finished);
        assert_eq!(lookup.poll_result(START + 1_020), Some(Err(DnsError::ServerFailure)));
    }

    #[test]
    fn failure_from_a_server_we_no_longer_wait_for_does_not_rush_the_schedule() {
        let mut lookup = start(&[S0, S1, S2]);
        sent(&mut lookup, START);
        sent(&mut lookup, START + 1_000);
        assert_eq!(lookup.handle_datagram(S0, 53, &reply(2), START + 1_100), DatagramOutcome::TryingNextServer);
        assert_eq!(lookup.next_timeout_ms(), Some(START + 3_000));
        assert_eq!(sent(&mut lookup, START + 3_000), Some(S2));
        assert_eq!(sent(&mut lookup, START + 7_000), Some(S1));
    }

    #[test]
    fn truncated_ends_the_lookup() {
        let mut lookup = start(&[S0, S1]);
        sent(&mut lookup, START);
        let bytes = Encoder::with_flags(ID, 0x8380).question("example.org", TYPE_MX).finish();
        assert_eq!(lookup.handle_datagram(S0, 53, &bytes, START + 3), DatagramOutcome::Finished);
        assert_eq!(lookup.poll_result(START + 3), Some(Err(DnsError::Truncated)));
    }

    #[test]
    fn construction_errors_and_server_limit() {
        assert_eq!(Lookup::new("example.org", RecordType::A, 1, &[], 0).err(), Some(DnsError::NoServers));
        assert_eq!(Lookup::new("a..b", RecordType::A, 1, &[S0], 0).err(), Some(DnsError::InvalidName));
        let mut lookup = Lookup::new("example.org.", RecordType::A, 1, &[S0, S1, S2, [4, 4, 4, 4]], 0).unwrap();
        let mut servers = std::vec::Vec::new();
        let mut now = 0;
        while let Some(at) = lookup.next_timeout_ms() {
            now = at;
            if let Some((server, _)) = lookup.poll_transmit(now) {
                servers.push(server);
            }
            lookup.poll_result(now);
        }
        assert_eq!(servers, [S0, S1, S2, S0]);
        assert_eq!(now, 11_000);
    }

    #[test]
    fn source_ports_cover_the_dynamic_range_evenly() {
        assert_eq!(source_port(0), 49_152);
        assert_eq!(source_port(16_383), 65_535);
        assert_eq!(source_port(16_384), 49_152);
        assert_eq!(source_port(u16::MAX), 65_535);
        let mut hits = std::vec![0u32; 16_384];
        for random in 0..=u16::MAX {
            hits[usize::from(source_port(random) - EPHEMERAL_PORT_FIRST)] += 1;
        }
        assert!(hits.iter().all(|&count| count == 4));
    }

    /// An off-path attacker races the real server with answers that point the smarthost's name
    /// at its own address. Each forgery differs from one the lookup would take (the control)
    /// in one thing only the real server's answer has: each is dropped, and the real answer,
    /// arriving after it, is the result.
    #[test]
    fn forged_answers_are_dropped_and_the_real_answer_is_taken() {
        const NAME: &str = "smarthost.example.net";
        const REAL: [u8; 4] = [203, 0, 113, 25];
        const FORGED: [u8; 4] = [6, 6, 6, 6];
        const RESPONSE: u16 = 0x8180;
        let answer = |id: u16, flags: u16, question: &str, question_type: u16, address: [u8; 4]| {
            Encoder::with_flags(id, flags).question(question, question_type).a(NAME, 300, address).finish()
        };
        let start_a = || {
            let mut lookup = Lookup::new(NAME, RecordType::A, ID, &[S0, S1], START).unwrap();
            assert_eq!(lookup.poll_transmit(START).map(|(server, _)| server), Some(S0));
            lookup
        };
        let address_taken = |lookup: &mut Lookup| match lookup.poll_result(START + 20) {
            Some(Ok(Answer::A { records, .. })) => {
                records.iter().map(|record| record.address).collect::<std::vec::Vec<_>>()
            }
            other => panic!("no A answer: {other:?}"),
        };

        // The control: a forgery right in everything the checks look at is taken (so each case
        // below is dropped for the one thing it gets wrong, not for a fault of the forgery).
        let forged = answer(ID, RESPONSE, NAME, TYPE_A, FORGED);
        let mut lookup = start_a();
        assert_eq!(lookup.handle_datagram(S0, DNS_PORT, &forged, START + 10), DatagramOutcome::Finished);
        assert_eq!(address_taken(&mut lookup), [FORGED]);

        let class_at = crate::message::HEADER_LEN + NAME.len() + 2 + 2;
        let mut chaos_class = forged.clone();
        chaos_class[class_at..class_at + 2].copy_from_slice(&3u16.to_be_bytes());
        let two_questions = Encoder::with_flags(ID, RESPONSE)
            .question(NAME, TYPE_A)
            .question(NAME, TYPE_A)
            .a(NAME, 300, FORGED)
            .finish();
        let cases: [(&str, [u8; 4], u16, std::vec::Vec<u8>); 10] = [
            ("another ID", S0, DNS_PORT, answer(ID ^ 0x0400, RESPONSE, NAME, TYPE_A, FORGED)),
            ("from an address that is no server", FORGED, DNS_PORT, forged.clone()),
            ("from the server's address, another port", S0, 5353, forged.clone()),
            ("from a server not asked (yet)", S1, DNS_PORT, forged.clone()),
            ("another name in the question", S0, DNS_PORT, answer(ID, RESPONSE, "evil.example.net", TYPE_A, FORGED)),
            ("another type in the question", S0, DNS_PORT, answer(ID, RESPONSE, NAME, TYPE_MX, FORGED)),
            ("another class in the question", S0, DNS_PORT, chaos_class),
            ("two questions", S0, DNS_PORT, two_questions),
            ("a query, not a response", S0, DNS_PORT, answer(ID, RESPONSE & 0x7FFF, NAME, TYPE_A, FORGED)),
            ("another opcode", S0, DNS_PORT, answer(ID, RESPONSE | 2 << 11, NAME, TYPE_A, FORGED)),
        ];
        let real = answer(ID, RESPONSE, NAME, TYPE_A, REAL);
        for (case, from, port, bytes) in &cases {
            let mut lookup = start_a();
            assert_eq!(lookup.handle_datagram(*from, *port, bytes, START + 10), DatagramOutcome::Ignored, "{case}");
            assert_eq!(lookup.poll_result(START + 10), None, "{case}");
            assert_eq!(lookup.ignored_datagrams(), 1, "{case}");
            assert_eq!(lookup.handle_datagram(S0, DNS_PORT, &real, START + 20), DatagramOutcome::Finished, "{case}");
            assert_eq!(address_taken(&mut lookup), [REAL], "{case}");
        }
    }

    proptest::proptest! {
        /// Whatever arrives, from whomever, the lookup never panics, sends at most four
        /// times, and has a result by the end of its schedule.
        #[test]
        fn any_traffic_ends_in_time(
            events in proptest::collection::vec(
                (0..3_000u64, 0..4usize, proptest::bool::weighted(0.9), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), 0..4u8),
                0..30,
            ),
        ) {
            let servers = [S0, S1, S2];
            let mut lookup = start(&servers);
            let mut now = START;
            let mut transmissions = 0;
            let mut result = None;
            for (wait, source, port_53, noise, kind) in events {
                now += wait;
                while lookup.poll_transmit(now).is_some() {
                    transmissions += 1;
                }
                let from = servers.get(source).copied().unwrap_or([6, 6, 6, 6]);
                let bytes = match kind {
                    0 => noise,
                    1 => reply(noise.first().map_or(0, |&code| code % 6)),
                    2 => {
                        let mut bytes = reply(0);
                        for (index, byte) in noise.iter().enumerate().step_by(2) {
                            if let Some(slot) = bytes.get_mut(usize::from(*byte) % 64 + index % 2) {
                                *slot = noise.get(index + 1).copied().unwrap_or(0);
                            }
                        }
                        bytes
                    }
                    _ => Encoder::response(ID, 0).question("example.org", TYPE_MX).finish(),
                };
                lookup.handle_datagram(from, if port_53 { 53 } else { 1053 }, &bytes, now);
                if let Some(outcome) = lookup.poll_result(now) {
                    result = Some(outcome);
                }
            }
            while result.is_none() {
                let Some(at) = lookup.next_timeout_ms() else { break };
                now = now.max(at);
                while lookup.poll_transmit(now).is_some() {
                    transmissions += 1;
                }
                result = lookup.poll_result(now);
            }
            proptest::prop_assert!(result.is_some());
            proptest::prop_assert!(transmissions <= 4);
            proptest::prop_assert!(now <= START + 3_000 * 30 + 11_000);
        }
    }
}
