//! Property tests: chunking never changes what a session does; arbitrary server bytes never
//! panic and never get credentials sent in clear; `envelope_recipient` never panics. (The
//! properties of `SeenRing` are in its module's tests.)

mod common;

use common::*;
use homemx_pop3::{envelope_recipient, Pop3Config, Pop3Event, Pop3Session, TlsMode};
use proptest::prelude::*;

/// A body made of lines of awkward bytes (dots, bare CR and LF), CRLF-terminated (as the
/// server sends it).
fn body() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![Just(b'a'), Just(b'.'), Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'Z')];
    let line = proptest::collection::vec(byte, 0..40).prop_map(|mut line| {
        // A line must not hide a CRLF of its own (it would be two lines).
        while line.windows(2).any(|pair| pair == b"\r\n") {
            let at = line.windows(2).position(|pair| pair == b"\r\n").unwrap();
            line.remove(at);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        line.extend_from_slice(b"\r\n");
        line
    });
    proptest::collection::vec(line, 0..30).prop_map(|lines| lines.concat())
}

/// The body as it must reach the spool: every CR not followed by LF and every LF not
/// preceded by CR replaced by CRLF (a model written separately from the decoder).
fn with_crlf_line_ends(body: &[u8]) -> Vec<u8> {
    let mut normalised = Vec::new();
    for (index, &byte) in body.iter().enumerate() {
        let bare_cr = byte == b'\r' && body.get(index + 1) != Some(&b'\n');
        let bare_lf = byte == b'\n' && (index == 0 || body[index - 1] != b'\r');
        if bare_cr || bare_lf {
            normalised.extend_from_slice(b"\r\n");
        } else {
            normalised.push(byte);
        }
    }
    normalised
}

fn steps_for(bodies: &[Vec<u8>]) -> Vec<Step> {
    let mut steps = login_steps();
    let mut list = String::from("+OK\r\n");
    let mut uidl = String::from("+OK\r\n");
    for (index, body) in bodies.iter().enumerate() {
        list.push_str(&format!("{} {}\r\n", index + 1, body.len()));
        uidl.push_str(&format!("{} uid{}\r\n", index + 1, index + 1));
    }
    list.push_str(".\r\n");
    uidl.push_str(".\r\n");
    steps.push(step("LIST", list));
    steps.push(step("UIDL", uidl));
    for body in bodies {
        steps.push(step("RETR", retr_reply(body)));
        steps.push(step("DELE", "+OK\r\n"));
    }
    steps.push(step("QUIT", "+OK\r\n"));
    steps
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_same_events_and_bodies(
        bodies in proptest::collection::vec(body(), 0..4),
        chunks in proptest::collection::vec(1usize..40, 1..10),
    ) {
        let config = config(TlsMode::StartTls);
        let whole = drive(&config, GREETING, steps_for(&bodies), &Options::default());
        let options = Options { chunks, ..Options::default() };
        let chunked = drive(&config, GREETING, steps_for(&bodies), &options);
        prop_assert_eq!(whole.events_without_discards(), chunked.events_without_discards());
        prop_assert_eq!(&whole.committed, &chunked.committed);
        let expected: Vec<(String, Vec<u8>)> =
            bodies.iter().enumerate().map(|(index, body)| (format!("uid{}", index + 1), with_crlf_line_ends(body))).collect();
        prop_assert_eq!(&whole.committed, &expected);
        for (_, body) in &whole.committed {
            prop_assert!(body.iter().enumerate().all(|(index, &byte)| match byte {
                b'\r' => body.get(index + 1) == Some(&b'\n'),
                b'\n' => index > 0 && body[index - 1] == b'\r',
                _ => true,
            }), "a bare line end reached the spool: {:?}", body);
        }
        prop_assert_eq!(whole.events.last(), Some(&Ev::Close(true, bodies.len() as u32)));
    }

    #[test]
    fn arbitrary_server_bytes_never_panic_nor_leak_credentials(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in 1usize..64,
        implicit in any::<bool>(),
    ) {
        let outcome = run_on_arbitrary_bytes(&input, chunk, implicit);
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
    }

    #[test]
    fn envelope_recipient_never_panics(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'<'), Just(b'"'), Just(b'('), Just(b'@'), Just(b'\n')], 0..400),
    ) {
        let mut header = b"Delivered-To: ".to_vec();
        header.extend_from_slice(&bytes);
        if let Some(address) = envelope_recipient(&header, &["Delivered-To"]) {
            prop_assert!(address.contains('@'));
            prop_assert!(address.len() <= 254);
        }
        let _ = envelope_recipient(&bytes, &["Delivered-To", "x"]);
    }

    #[test]
    fn envelope_recipient_finds_generated_addresses(
        local in "[a-zA-Z0-9._+-]{1,20}",
        domain in "[a-zA-Z0-9-]{1,15}(\\.[a-zA-Z0-9-]{1,10}){0,3}",
        form in 0usize..5,
    ) {
        prop_assume!(!local.starts_with('.') && !local.ends_with('.'));
        let address = format!("{local}@{domain}");
        let value = match form {
            0 => address.clone(),
            1 => format!("<{address}>"),
            2 => format!("\"Some One\" <{address}>"),
            3 => format!("{address} (comment)"),
            _ => format!("\r\n <{address}>"),
        };
        let header = format!("Received: x\r\nDelivered-To: {value}\r\nSubject: y\r\n\r\nbody");
        let found = envelope_recipient(header.as_bytes(), &["Delivered-To"]);
        let expected = format!("{local}@{}", domain.to_ascii_lowercase());
        prop_assert_eq!(found.as_deref(), Some(expected.as_str()));
    }
}

/// Feeds `input` to a session driven by a scripted caller (the loop of the fuzz target);
/// checks that nothing but CAPA/STLS/QUIT goes out in clear, that `Close` comes exactly once
/// and last, and that the session finishes.
fn run_on_arbitrary_bytes(input: &[u8], chunk: usize, implicit: bool) -> Result<(), String> {
    let config = Pop3Config {
        username: "u",
        tls: if implicit { TlsMode::Implicit } else { TlsMode::StartTls },
        message_size_max: 100,
        reply_timeout_ms: 1_000,
    };
    let mut session = Pop3Session::new(&config, 0).unwrap();
    let mut now = 0;
    let mut rest = input;
    let mut closes = 0;
    let mut listed: Vec<u32> = Vec::new();
    let mut stalled = 0;
    for _ in 0..100_000 {
        let mut next_request = false;
        while let Some(event) = session.poll(now) {
            if closes > 0 {
                return Err(format!("{event:?} after Close"));
            }
            match event {
                Pop3Event::Close { .. } => closes += 1,
                Pop3Event::StartTls => session_tls(&mut session, now),
                Pop3Event::PasswordNeeded => {
                    let _ = session.send_password(b"pw", now);
                }
                Pop3Event::Listed(entry) => listed.push(entry.number),
                Pop3Event::ListingComplete(_)
                | Pop3Event::MessageEnd { .. }
                | Pop3Event::Deleted { .. }
                | Pop3Event::MessageRefused { .. }
                | Pop3Event::MessageAborted { .. } => next_request = true,
                _ => {}
            }
        }
        if next_request && session.is_ready() {
            let _ = match listed.pop() {
                Some(number) if number % 2 == 0 => session.delete(number, now),
                Some(number) => session.retrieve(number, now),
                None => session.finish(now),
            };
        }
        let output = session.output();
        if !session.tls_active() && !output.is_empty() {
            let allowed = [&b"CAPA\r\n"[..], b"STLS\r\n", b"QUIT\r\n"];
            if !output.split_inclusive(|&b| b == b'\n').all(|line| allowed.contains(&line)) {
                return Err(format!("sent in clear: {:?}", String::from_utf8_lossy(output)));
            }
        }
        let length = output.len();
        session.output_sent(length);
        if session.is_finished() {
            break;
        }
        if rest.is_empty() {
            now += 700;
            if now > 50_000 {
                session.connection_closed();
            }
            continue;
        }
        let take = chunk.min(rest.len());
        let taken = session.receive(&rest[..take], now);
        rest = &rest[taken..];
        stalled = if taken == 0 { stalled + 1 } else { 0 };
        if stalled > 3 {
            return Err("session takes no input and makes no progress".into());
        }
    }
    if !session.is_finished() || closes != 1 {
        return Err(format!("finished {} with {closes} closes", session.is_finished()));
    }
    Ok(())
}

fn session_tls(session: &mut Pop3Session<'_>, now: u64) {
    let length = session.output().len();
    session.output_sent(length);
    session.tls_established(now);
}
