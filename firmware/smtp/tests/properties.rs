//! Property tests: chunking never changes what a session does; dot-stuffing round trips;
//! arbitrary input never panics and only ever produces well-formed replies.

mod common;

use common::*;
use homemx_smtp::address::{parse_forward_path, ForwardPath};
use homemx_smtp::data::{DataDecoder, DataStep, DotStuffer};
use proptest::prelude::*;

/// Pieces a generated session is made of.
fn piece() -> impl Strategy<Value = String> {
    let body_byte = prop_oneof![
        Just('a'), Just('.'), Just(' '), Just('\r'), Just('\n'), Just('Z'), Just('\t')
    ];
    let body = proptest::collection::vec(body_byte, 0..120).prop_map(|chars| chars.into_iter().collect::<String>());
    prop_oneof![
        Just("EHLO c.example\r\n".to_string()),
        Just("HELO c.example\r\n".to_string()),
        Just("MAIL FROM:<s@remote.example> SIZE=100\r\n".to_string()),
        Just("MAIL FROM:<>\r\n".to_string()),
        Just("RCPT TO:<alice@example.org>\r\n".to_string()),
        Just("RCPT TO:<x%y@example.org>\r\n".to_string()),
        Just("RCPT TO:<x@foreign.example>\r\n".to_string()),
        Just("DATA\r\n".to_string()),
        Just("RSET\r\n".to_string()),
        Just("NOOP\r\n".to_string()),
        Just("VRFY x\r\n".to_string()),
        Just("BOGUS\r\n".to_string()),
        Just(".\r\n".to_string()),
        Just("\r\n.\r\n".to_string()),
        Just(format!("NOOP {}\r\n", "q".repeat(530))),
        body.clone(),
        body.prop_map(|b| format!("{b}\r\n.\r\n")),
    ]
}

fn script() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 1..25).prop_map(|pieces| pieces.concat())
}

/// Splits `bytes` at the given cut points.
fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_replies_events_and_bodies(
        script in script(),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let whole = run(Options::default(), &[script.as_bytes()]);
        let pieces = split(script.as_bytes(), &cuts);
        let chunked = run(Options::default(), &pieces);
        prop_assert_eq!(&chunked, &whole);
        let byte_by_byte: Vec<&[u8]> = script.as_bytes().chunks(1).collect();
        prop_assert_eq!(&run(Options::default(), &byte_by_byte), &whole);
    }

    #[test]
    fn replies_are_always_well_formed(input in proptest::collection::vec(any::<u8>(), 0..2000),
                                      cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
        let pieces = split(&input, &cuts);
        let transcript = run(Options { starttls_available: true, ..Options::default() }, &pieces);
        prop_assert!(transcript.output.ends_with(b"\r\n"));
        for line in transcript.lines() {
            let bytes = line.as_bytes();
            prop_assert!(bytes.len() >= 4 && bytes[..3].iter().all(u8::is_ascii_digit), "{:?}", line);
            prop_assert!(bytes[3] == b' ' || bytes[3] == b'-');
            prop_assert!(bytes.iter().all(|b| (0x20..0x7f).contains(b)), "{:?}", line);
        }
    }

    #[test]
    fn dot_stuffing_round_trips(
        lines in proptest::collection::vec(proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'a'), Just(b' '), any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n')],
            0..40), 0..30),
        output_size in 2usize..50,
        feed_size in 1usize..50,
    ) {
        let mut body = Vec::new();
        for line in &lines {
            body.extend_from_slice(line);
            body.extend_from_slice(b"\r\n");
        }
        // Stuff through a small output buffer.
        let mut stuffer = DotStuffer::new();
        let mut wire = Vec::new();
        let mut rest: &[u8] = &body;
        let mut buffer = vec![0u8; output_size];
        while !rest.is_empty() {
            let (used, written) = stuffer.encode(rest, &mut buffer);
            wire.extend_from_slice(&buffer[..written]);
            rest = &rest[used..];
        }
        wire.extend_from_slice(stuffer.terminator());
        // Decode it back in pieces.
        let mut decoder = DataDecoder::new(usize::MAX / 4, u64::MAX);
        let mut pending: Vec<u8> = Vec::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        let mut ended = false;
        while !ended {
            let outcome = decoder.step(&pending);
            match outcome.step {
                DataStep::Body { start, end } => decoded.extend_from_slice(&pending[start..end]),
                DataStep::End => ended = true,
                DataStep::NeedMore => {
                    prop_assert!(fed < wire.len(), "ran out of input before the end");
                    let next = (fed + feed_size).min(wire.len());
                    pending.extend_from_slice(&wire[fed..next]);
                    fed = next;
                }
                DataStep::Skipped => {}
                DataStep::Fault(fault) => prop_assert!(false, "fault {:?}", fault),
            }
            pending.drain(..outcome.consumed);
        }
        prop_assert_eq!(decoded, body);
        prop_assert!(pending.is_empty() && fed == wire.len());
    }

    /// Any body, bare CR and LF included: a receiver that takes CR, LF or CRLF as a line end
    /// sees every line-leading dot doubled before the end of data (no early `.` line, no
    /// smuggling), and undoing the stuffing in that reading gives the body back.
    #[test]
    fn dot_stuffing_after_any_line_end(
        body in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
        output_size in 2usize..20,
    ) {
        let mut stuffer = DotStuffer::new();
        let mut wire = Vec::new();
        let mut rest: &[u8] = &body;
        let mut buffer = vec![0u8; output_size];
        while !rest.is_empty() {
            let (used, written) = stuffer.encode(rest, &mut buffer);
            wire.extend_from_slice(&buffer[..written]);
            rest = &rest[used..];
        }
        let line_start = |wire: &[u8], index: usize| index == 0 || matches!(wire[index - 1], b'\r' | b'\n');
        let mut unstuffed = Vec::new();
        let mut index = 0;
        while index < wire.len() {
            if line_start(&wire, index) && wire[index] == b'.' {
                prop_assert_eq!(wire.get(index + 1), Some(&b'.'), "a lone leading dot at {} in {:?}", index, wire);
                index += 1;
            }
            unstuffed.push(wire[index]);
            index += 1;
        }
        prop_assert_eq!(&unstuffed, &body);
        let terminator = stuffer.terminator();
        wire.extend_from_slice(terminator);
        prop_assert!(wire.ends_with(b"\r\n.\r\n") || wire == b".\r\n");
    }

    #[test]
    fn a_message_through_the_session_is_byte_exact(
        lines in proptest::collection::vec("[ -~]{0,80}", 0..30),
        chunk in 1usize..300,
    ) {
        let mut body = String::new();
        for line in &lines {
            body.push_str(line);
            body.push_str("\r\n");
        }
        let mut stuffer = DotStuffer::new();
        let mut wire = vec![0u8; body.len() * 2 + 8];
        let (used, written) = stuffer.encode(body.as_bytes(), &mut wire);
        prop_assert_eq!(used, body.len());
        let stuffed = String::from_utf8(wire[..written].to_vec()).unwrap();
        let script = format!(
            "EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n{stuffed}{}QUIT\r\n",
            std::str::from_utf8(stuffer.terminator()).unwrap()
        );
        let chunks: Vec<&[u8]> = script.as_bytes().chunks(chunk).collect();
        let transcript = run(Options::default(), &chunks);
        prop_assert_eq!(transcript.messages.len(), 1);
        prop_assert_eq!(body_of(&transcript.messages[0]), body.as_bytes());
    }

    #[test]
    fn address_parser_never_panics_and_stays_inside_its_input(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok((ForwardPath::Path(path), rest)) = parse_forward_path(&input) {
            let text = path.mailbox.as_str();
            prop_assert!(text.len() <= 254);
            prop_assert!(rest.len() < input.len());
            prop_assert!(!text.contains('\r') && !text.contains('\n'));
        }
    }

    #[test]
    fn valid_addresses_parse(
        local in "[a-z0-9!#$&'*+/=?^_`{|}~-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}",
        domain in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){0,3}",
    ) {
        let path = format!("<{local}@{domain}>");
        match parse_forward_path(path.as_bytes()) {
            Ok((ForwardPath::Path(parsed), rest)) => {
                prop_assert!(rest.is_empty());
                prop_assert_eq!(parsed.mailbox.local_part().raw(), local.as_str());
                prop_assert_eq!(parsed.mailbox.domain().as_str(), domain.as_str());
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
