//! The lending shape of the driver loop ([`send`], [`fill`]) against scripted transports: a
//! real SMTP server session (homemx-smtp's, the MX's) reads every pipelined command and the
//! message into its own buffer whatever the chunking and answers exactly as when it all
//! arrives at once; the end of the stream, a reset, a broken write and a session that lends
//! no room end the connection; the session's deadline ends the wait and the session times out.

mod common;

use core::future::{pending, ready};
use core::net::IpAddr;
use core::task::Poll;

use common::ScriptedPeer;
use embassy_futures::{block_on, poll_once};
use homemx_exchange::{fill, send, Filled, LendingSession, Output};
use homemx_smtp::{
    ClientInfo, CommitResult, ConnectionInfo, Event, ForwardPath, Now, RecipientDecision, ReversePath, SenderDecision, ServerConfig,
    ServerSession, SessionPolicy,
};
use proptest::prelude::*;

/// A lending session with `room` bytes of input, which it takes (into `received`) when
/// polled, and `output` to send.
struct Lender {
    buffer: Vec<u8>,
    filled: usize,
    received: Vec<u8>,
    output: Vec<u8>,
    deadline: Option<u64>,
    /// Polling never makes room (its input stays full).
    stuck: bool,
}

impl Lender {
    fn new(room: usize, output: &[u8]) -> Self {
        Lender { buffer: vec![0; room], filled: 0, received: Vec::new(), output: output.to_vec(), deadline: None, stuck: false }
    }
    fn poll(&mut self) {
        if !self.stuck {
            self.received.extend_from_slice(&self.buffer[..self.filled]);
            self.filled = 0;
        }
    }
}

impl Output for Lender {
    fn output(&self) -> &[u8] {
        &self.output
    }
    fn output_sent(&mut self, octets: usize) {
        self.output.drain(..octets);
    }
}

impl LendingSession for Lender {
    type Time = ();
    fn deadline(&self) -> Option<u64> {
        self.deadline
    }
    fn receive_buffer(&mut self) -> &mut [u8] {
        &mut self.buffer[self.filled..]
    }
    fn received(&mut self, octets: usize, _now: ()) {
        assert!(octets <= self.buffer.len() - self.filled, "told of more bytes than it lent room for");
        self.filled += octets;
    }
}

/// Polls, sends and fills until the connection ends; returns the last turn's result and the
/// number of turns (bounded: a loop that does not end fails).
fn run(peer: &mut ScriptedPeer, session: &mut Lender) -> (Filled, usize) {
    for turn in 1..=100_000 {
        session.poll();
        if !block_on(send(peer, session)) {
            return (Filled::Ended, turn);
        }
        match block_on(fill(peer, session, || (), |_| pending())) {
            Filled::Octets(_) | Filled::DeadlinePassed => {}
            end => return (end, turn),
        }
    }
    panic!("the loop did not end");
}

/// Accepts every sender and recipient.
struct AcceptAll;

impl SessionPolicy for AcceptAll {
    fn service_available(&mut self, _client: &ClientInfo) -> bool {
        true
    }
    fn check_sender(&mut self, _client: &ClientInfo, _sender: &ReversePath<'_>, _declared_size: Option<u64>) -> SenderDecision {
        SenderDecision::Accept
    }
    fn check_recipient(&mut self, _client: &ClientInfo, _recipient: &ForwardPath<'_>) -> RecipientDecision {
        RecipientDecision::Accept
    }
}

const NOW: Now = Now { unix_seconds: 1_700_000_000, monotonic_milliseconds: 5_000 };

fn config() -> ServerConfig<'static> {
    ServerConfig { hostname: "mx.example.org", limits: Default::default(), require_tls: false, submission: false, submission_requires_auth: true }
}

fn connection() -> ConnectionInfo {
    ConnectionInfo { client: "203.0.113.9".parse::<IpAddr>().unwrap(), session_id: 7, starttls_available: false, implicit_tls: None }
}

/// What a served connection left: the message the session gave (its chunks) and how it ended.
struct Served {
    message: Vec<u8>,
    closed: bool,
    end: Option<Filled>,
}

/// The MX's loop (`mx::serve`) over `peer` with a real server session, the clock standing still.
fn serve(peer: &mut ScriptedPeer) -> Served {
    let config = config();
    let mut session = ServerSession::new(&config, connection(), NOW);
    let mut served = Served { message: Vec::new(), closed: false, end: None };
    for _ in 0..100_000 {
        let Some(event) = session.poll(NOW, &mut AcceptAll) else {
            if !block_on(send(peer, &mut session)) || session.is_closed() {
                return served;
            }
            match block_on(fill(peer, &mut session, || NOW, |_| pending())) {
                Filled::Octets(_) | Filled::DeadlinePassed => continue,
                end => {
                    served.end = Some(end);
                    return served;
                }
            }
        };
        match event {
            Event::MessageData(chunk) => served.message.extend_from_slice(chunk),
            Event::MessageComplete { .. } => session.message_committed(CommitResult::Committed, NOW),
            Event::OutputFull => assert!(block_on(send(peer, &mut session))),
            Event::Close => {
                served.closed = block_on(send(peer, &mut session));
                return served;
            }
            _ => {}
        }
    }
    panic!("the session did not end");
}

/// A pipelined conversation whose message has `lines` as its body.
fn conversation(lines: &[String]) -> (Vec<u8>, Vec<u8>) {
    let mut body = Vec::new();
    for line in lines {
        body.extend_from_slice(line.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    let mut input = b"EHLO client.example.net\r\nMAIL FROM:<sender@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n".to_vec();
    input.extend_from_slice(&body);
    input.extend_from_slice(b".\r\nQUIT\r\n");
    (input, body)
}

proptest! {
    #[test]
    fn every_byte_reaches_a_lending_session_in_order(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(1usize..600, 1..20),
        room in 1usize..300,
        output in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut peer = ScriptedPeer { chunks: common::chunked(&data, &cuts), ..ScriptedPeer::default() };
        let mut session = Lender::new(room, &output);
        let (end, _) = run(&mut peer, &mut session);
        prop_assert_eq!(end, Filled::Ended);
        prop_assert_eq!(&session.received, &data);
        prop_assert_eq!(&peer.written, &output);
    }

    #[test]
    fn a_server_session_answers_the_same_whatever_the_chunking(
        lines in proptest::collection::vec("[a-zA-Z0-9 ,;:]{0,120}", 1..60),
        cuts in proptest::collection::vec(1usize..1500, 1..20),
    ) {
        let (input, body) = conversation(&lines);
        let mut whole = ScriptedPeer { chunks: [input.clone()].into(), ..ScriptedPeer::default() };
        let reference = serve(&mut whole);
        prop_assert!(reference.closed);
        prop_assert!(String::from_utf8_lossy(&whole.written).contains("250 2.0.0 Ok: queued as"));
        prop_assert!(reference.message.ends_with(&body));

        let mut chunked = ScriptedPeer { chunks: common::chunked(&input, &cuts), ..ScriptedPeer::default() };
        let served = serve(&mut chunked);
        prop_assert!(served.closed);
        prop_assert_eq!(served.message, reference.message);
        prop_assert_eq!(String::from_utf8_lossy(&chunked.written), String::from_utf8_lossy(&whole.written));
    }
}

#[test]
fn the_end_of_the_stream_ends_the_connection_once() {
    let mut peer = ScriptedPeer { chunks: [b"EHLO x\r\n".to_vec()].into(), ..ScriptedPeer::default() };
    let mut session = Lender::new(64, b"220 hello\r\n");
    assert_eq!(run(&mut peer, &mut session), (Filled::Ended, 2));
    assert_eq!(session.received, b"EHLO x\r\n");
    assert_eq!(peer.reads, 2, "after the end, nothing is read again");
}

#[test]
fn a_reset_ends_the_connection() {
    let mut peer = ScriptedPeer { chunks: [b"abc".to_vec()].into(), fail_reads_at_end: true, ..ScriptedPeer::default() };
    let mut session = Lender::new(64, b"");
    assert_eq!(run(&mut peer, &mut session), (Filled::Ended, 2));
    assert_eq!(session.received, b"abc");
}

#[test]
fn a_server_session_whose_client_closes_ends_without_its_message() {
    // The client hangs up in the middle of the message: the connection ends (the MX aborts
    // the transaction); the session never saw the end of data.
    let (input, _) = conversation(&["half a message".to_string()]);
    let cut = input.len() - b"QUIT\r\n".len() - b".\r\n".len();
    let mut peer = ScriptedPeer { chunks: [input[..cut].to_vec()].into(), ..ScriptedPeer::default() };
    let served = serve(&mut peer);
    assert_eq!(served.end, Some(Filled::Ended));
    assert!(!served.closed);
    assert!(!String::from_utf8_lossy(&peer.written).contains("queued as"));
}

#[test]
fn a_broken_write_ends_the_connection_before_reading() {
    let mut peer = ScriptedPeer { chunks: [b"never read".to_vec()].into(), fail_writes: true, ..ScriptedPeer::default() };
    let mut session = Lender::new(64, b"220 hello\r\n");
    assert!(!block_on(send(&mut peer, &mut session)));
    assert_eq!(run(&mut peer, &mut session), (Filled::Ended, 1));
    assert_eq!(peer.reads, 0);
}

#[test]
fn a_session_whose_input_stays_full_ends_the_connection_instead_of_spinning() {
    let mut peer = ScriptedPeer { chunks: [b"data".to_vec(), b"more".to_vec()].into(), ..ScriptedPeer::default() };
    let mut session = Lender::new(4, b"");
    session.stuck = true;
    let (end, turns) = run(&mut peer, &mut session);
    assert_eq!((end, turns), (Filled::InputFull, 2));
    assert_eq!(peer.reads, 1, "a session that lends no room is not read for");
}

#[test]
fn the_deadline_ends_the_wait_and_the_server_session_times_out() {
    let config = config();
    let mut session = ServerSession::new(&config, connection(), NOW);
    assert_eq!(session.poll(NOW, &mut AcceptAll), None);
    let mut peer = ScriptedPeer { silent_at_end: true, ..ScriptedPeer::default() };
    assert!(block_on(send(&mut peer, &mut session)));
    let deadline = session.deadline().expect("a command timeout");
    let mut timer_for = None;
    let waited = poll_once(fill(&mut peer, &mut session, || NOW, |at| {
        timer_for = Some(at);
        ready(())
    }));
    assert_eq!(waited, Poll::Ready(Filled::DeadlinePassed));
    assert_eq!(timer_for, Some(deadline));
    let later = Now { monotonic_milliseconds: deadline, ..NOW };
    assert!(matches!(session.poll(later, &mut AcceptAll), Some(Event::Refused(refusal)) if refusal.code == 421));
    assert_eq!(session.poll(later, &mut AcceptAll), Some(Event::Close));
    assert!(String::from_utf8_lossy(session.output()).starts_with("421 4.4.2"));
}

#[test]
fn without_a_deadline_the_wait_is_the_peers() {
    let mut peer = ScriptedPeer { chunks: [b"abc".to_vec()].into(), ..ScriptedPeer::default() };
    let mut session = Lender::new(64, b"");
    let filled = block_on(fill(&mut peer, &mut session, || (), |_| -> core::future::Ready<()> { panic!("no deadline, no timer") }));
    assert_eq!(filled, Filled::Octets(3));
    // A silent peer and a deadline that has not come: still waiting.
    let mut silent = ScriptedPeer { silent_at_end: true, ..ScriptedPeer::default() };
    session.deadline = Some(10);
    assert_eq!(poll_once(fill(&mut silent, &mut session, || (), |_| pending())), Poll::Pending);
}
