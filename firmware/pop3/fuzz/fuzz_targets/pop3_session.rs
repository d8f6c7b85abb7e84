//! Fuzz target: a whole POP3 session fed arbitrary server bytes in arbitrary chunks, driven by
//! a scripted caller (password on request, retrieve/delete what is listed, QUIT). Optionally
//! a canned dialogue answers the first commands so the fuzzer starts deep in the session.
//! It must never panic, never send USER/PASS/AUTH (or anything but CAPA, STLS, QUIT) before
//! TLS, emit `Close` exactly once and last, and finish.
#![no_main]

use homemx_pop3::{Pop3Config, Pop3Event, Pop3Session, TlsMode};
use libfuzzer_sys::fuzz_target;

/// Replies to the first commands: greeting, CAPA, STLS, CAPA, USER, PASS, LIST, UIDL.
const CANNED: [&[u8]; 8] = [
    b"+OK ready\r\n",
    b"+OK\r\nSTLS\r\nUSER\r\nUIDL\r\n.\r\n",
    b"+OK go\r\n",
    b"+OK\r\nUSER\r\nUIDL\r\n.\r\n",
    b"+OK\r\n",
    b"+OK\r\n",
    b"+OK\r\n1 40\r\n2 50\r\n3 500\r\n.\r\n",
    b"+OK\r\n1 a\r\n2 b\r\n3 c\r\n.\r\n",
];

fuzz_target!(|data: &[u8]| {
    let Some((&settings, input)) = data.split_first() else { return };
    let implicit = settings & 1 != 0;
    let config = Pop3Config {
        username: "user",
        tls: if implicit { TlsMode::Implicit } else { TlsMode::StartTls },
        message_size_max: 100,
        reply_timeout_ms: 1_000,
    };
    // Implicit TLS skips the canned STLS exchange.
    let canned: Vec<&[u8]> =
        CANNED.iter().enumerate().filter(|(index, _)| !implicit || !matches!(index, 1 | 2)).map(|(_, r)| *r).collect();
    let canned_count = usize::from(settings >> 1 & 7).min(canned.len());
    let chunk = usize::from(settings >> 4) * 7 + 1;
    let mut replies = canned[..canned_count].iter();
    let mut to_server: Vec<u8> = Vec::new();
    let mut to_client: Vec<u8> = Vec::new();
    let mut fuzz_fed = false;
    match replies.next() {
        Some(reply) => to_client.extend_from_slice(reply),
        None => {
            to_client.extend_from_slice(input);
            fuzz_fed = true;
        }
    }
    let mut session = Pop3Session::new(&config, 0).unwrap();
    let mut now = 0u64;
    let mut closes = 0;
    let mut listed: Vec<u32> = Vec::new();
    for _ in 0..200_000 {
        let mut next_request = false;
        while let Some(event) = session.poll(now) {
            assert_eq!(closes, 0, "{event:?} after Close");
            match event {
                Pop3Event::Close { .. } => closes += 1,
                Pop3Event::StartTls => {
                    let length = session.output().len();
                    session.output_sent(length);
                    if settings & 0x80 != 0 && settings & 0x40 != 0 {
                        session.tls_failed();
                    } else {
                        session.tls_established(now);
                    }
                }
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
            let clean = output
                .split_inclusive(|&b| b == b'\n')
                .all(|line| [&b"CAPA\r\n"[..], b"STLS\r\n", b"QUIT\r\n"].contains(&line));
            assert!(clean, "sent in clear: {:?}", String::from_utf8_lossy(output));
        }
        to_server.extend_from_slice(output);
        let length = output.len();
        session.output_sent(length);
        // The canned server answers each complete command line with its next reply.
        while let Some(end) = to_server.windows(2).position(|pair| pair == b"\r\n") {
            to_server.drain(..end + 2);
            match replies.next() {
                Some(reply) => to_client.extend_from_slice(reply),
                None if !fuzz_fed => {
                    to_client.extend_from_slice(input);
                    fuzz_fed = true;
                }
                None => {}
            }
        }
        if session.is_finished() {
            break;
        }
        if to_client.is_empty() {
            now += 700;
            if now > 50_000 {
                session.connection_closed();
            }
            continue;
        }
        let take = chunk.min(to_client.len());
        let taken = session.receive(&to_client[..take], now);
        to_client.drain(..taken);
    }
    assert!(session.is_finished(), "{session:?} did not finish");
    assert_eq!(closes, 1);
});
