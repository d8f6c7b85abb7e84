//! The driver loop against scripted transports: every byte reaches the session in order
//! whatever the chunking and however little the session takes at a time; the end of the
//! stream, a broken transport and a session that never takes input all end the loop.

mod common;

use common::ScriptedPeer;
use embassy_futures::block_on;
use homemx_exchange::{exchange, Exchanged, Inbox, Output, Session};
use proptest::prelude::*;

/// A session that takes at most `room` bytes until polled (a full input buffer), and has
/// `output` to send.
struct NarrowSession {
    room: usize,
    buffered: usize,
    received: Vec<u8>,
    output: Vec<u8>,
    closed: usize,
}

impl NarrowSession {
    fn new(room: usize, output: &[u8]) -> Self {
        NarrowSession { room, buffered: 0, received: Vec::new(), output: output.to_vec(), closed: 0 }
    }
    /// Processes its input (makes room).
    fn poll(&mut self) {
        self.buffered = 0;
    }
}

impl Output for NarrowSession {
    fn output(&self) -> &[u8] {
        &self.output
    }
    fn output_sent(&mut self, octets: usize) {
        self.output.drain(..octets);
    }
}

impl Session for NarrowSession {
    type Time = ();
    fn receive(&mut self, data: &[u8], _now: ()) -> usize {
        let taken = data.len().min(self.room - self.buffered);
        self.received.extend_from_slice(&data[..taken]);
        self.buffered += taken;
        taken
    }
    fn connection_closed(&mut self) {
        self.closed += 1;
    }
}

/// Polls and exchanges until the connection ends; returns the number of turns (bounded).
fn run<const N: usize>(peer: &mut ScriptedPeer, session: &mut NarrowSession) -> usize {
    let mut inbox = Inbox::<N>::new();
    for turn in 1..=100_000 {
        session.poll();
        if block_on(exchange(peer, session, &mut inbox, || ())) == Exchanged::Closed {
            return turn;
        }
    }
    panic!("the loop did not end");
}

proptest! {
    #[test]
    fn every_byte_reaches_the_session_in_order(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        cuts in proptest::collection::vec(1usize..600, 1..20),
        room in 1usize..300,
        output in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let mut peer = ScriptedPeer { chunks: common::chunked(&data, &cuts), ..ScriptedPeer::default() };
        let mut session = NarrowSession::new(room, &output);
        run::<512>(&mut peer, &mut session);
        prop_assert_eq!(&session.received, &data);
        prop_assert_eq!(&peer.written, &output);
        prop_assert_eq!(session.closed, 1);
    }
}

#[test]
fn the_end_of_the_stream_ends_the_loop_once() {
    let mut peer = ScriptedPeer { chunks: [b"+OK hello\r\n".to_vec()].into(), ..ScriptedPeer::default() };
    let mut session = NarrowSession::new(64, b"");
    let turns = run::<64>(&mut peer, &mut session);
    assert_eq!(turns, 2);
    assert_eq!(session.closed, 1);
    assert_eq!(peer.reads, 2, "after the end, nothing is read again");
}

#[test]
fn a_reset_ends_the_loop() {
    let mut peer = ScriptedPeer { chunks: [b"abc".to_vec()].into(), fail_reads_at_end: true, ..ScriptedPeer::default() };
    let mut session = NarrowSession::new(64, b"");
    assert_eq!(run::<64>(&mut peer, &mut session), 2);
    assert_eq!(session.received, b"abc");
    assert_eq!(session.closed, 1);
}

#[test]
fn a_broken_write_ends_the_loop_before_reading() {
    let mut peer = ScriptedPeer { chunks: [b"never read".to_vec()].into(), fail_writes: true, ..ScriptedPeer::default() };
    let mut session = NarrowSession::new(64, b"QUIT\r\n");
    assert_eq!(run::<64>(&mut peer, &mut session), 1);
    assert_eq!(peer.reads, 0);
    assert_eq!(session.closed, 1);
}

#[test]
fn a_session_that_never_takes_input_ends_the_loop_instead_of_spinning() {
    let mut peer = ScriptedPeer { chunks: [b"data".to_vec()].into(), ..ScriptedPeer::default() };
    let mut session = NarrowSession::new(1, b"");
    // Full and never made room: poll() does nothing.
    session.buffered = 1;
    let mut inbox = Inbox::<64>::new();
    assert_eq!(block_on(exchange(&mut peer, &mut session, &mut inbox, || ())), Exchanged::Fed(0));
    assert_eq!(block_on(exchange(&mut peer, &mut session, &mut inbox, || ())), Exchanged::Closed);
    assert_eq!(session.closed, 1);
    assert_eq!(peer.reads, 1);
}
