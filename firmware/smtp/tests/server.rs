//! Server session: every command and reply code, limits, timeouts, STARTTLS, commit handshake.

mod common;

use common::*;
use homemx_smtp::{
    CommitResult, ConnectionInfo, Event, Limits, Now, ServerConfig, ServerSession, StandardPolicy,
};

const HELLO: &str = "EHLO client.example\r\nMAIL FROM:<sender@remote.example>\r\n";

#[test]
fn greeting_and_ehlo_extensions() {
    let transcript = run_script("EHLO client.example\r\nQUIT\r\n");
    assert_eq!(
        transcript.lines(),
        [
            "220 mx.example.org ESMTP homemx",
            "250-mx.example.org",
            "250-PIPELINING",
            "250-SIZE 10485760",
            "250-8BITMIME",
            "250 ENHANCEDSTATUSCODES",
            "221 2.0.0 mx.example.org closing connection",
        ]
    );
    assert!(transcript.closed);
    let with_tls = run(Options { starttls_available: true, ..Options::default() }, &[b"EHLO c.example\r\n"]);
    assert!(with_tls.lines().contains(&"250-STARTTLS".to_string()));
    let helo = run_script("HELO client.example\r\n");
    assert_eq!(helo.last_line(), "250 mx.example.org");
}

#[test]
fn a_message_arrives_byte_exact_with_received_header() {
    let script = format!(
        "{HELLO}RCPT TO:<alice@example.org>\r\nDATA\r\nSubject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let transcript = run_script(&script);
    assert_eq!(
        transcript.lines()[6..],
        [
            "250 2.1.0 Sender OK",
            "250 2.1.5 Recipient OK",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 000000000000000700000001",
            "221 2.0.0 mx.example.org closing connection",
        ]
    );
    assert_eq!(transcript.messages.len(), 1);
    let message = &transcript.messages[0];
    assert_eq!(body_of(message), b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
    let header = std::str::from_utf8(&message[..message.len() - body_of(message).len()]).unwrap();
    assert_eq!(
        header,
        "Received: from client.example ([203.0.113.9])\r\n\tby mx.example.org with ESMTP\r\n\t\
         id 000000000000000700000001;\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
    );
    assert!(transcript.has_event("TransactionStarted"));
    assert!(transcript.has_event("RecipientAccepted"));
    assert!(transcript.has_event("MessageBegin"));
    assert!(transcript.has_event("MessageComplete"));
}

#[test]
fn final_250_waits_for_the_commit() {
    let config = config();
    let relay = relay();
    let now = Now::new(1_700_000_000, 0);
    let connection = ConnectionInfo {
        client: WAN.parse().unwrap(),
        session_id: 1,
        starttls_available: false,
        implicit_tls: None,
    };
    let mut session = ServerSession::new(&config, connection, now);
    let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\nhello\r\n.\r\nNOOP\r\n");
    assert_eq!(session.receive(script.as_bytes(), now), script.len());
    let mut complete = false;
    while let Some(event) = session.poll(now, &mut policy) {
        if let Event::MessageComplete { body_size, .. } = event {
            assert_eq!(body_size, 7);
            complete = true;
        }
    }
    assert!(complete);
    assert!(session.in_message());
    let text = String::from_utf8_lossy(session.output()).into_owned();
    assert!(text.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n"), "{text}");
    // The pipelined NOOP waits behind the commit.
    assert!(session.poll(now, &mut policy).is_none());
    session.message_committed(CommitResult::Committed, now);
    while session.poll(now, &mut policy).is_some() {}
    let text = String::from_utf8_lossy(session.output()).into_owned();
    assert!(text.ends_with("250 2.0.0 Ok: queued as 000000000000000100000001\r\n250 2.0.0 Ok\r\n"), "{text}");
}

#[test]
fn commit_failures_are_temporary() {
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n");
    let failed = run(Options { commit: CommitResult::Failed, ..Options::default() }, &[script.as_bytes()]);
    assert!(failed.last_line().starts_with("451 4.3.0 "));
    assert!(failed.has_event("CommitFailed"));
    let full = run(Options { commit: CommitResult::InsufficientStorage, ..Options::default() }, &[script.as_bytes()]);
    assert!(full.last_line().starts_with("452 4.3.1 "));
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let script = format!(
        "{HELLO}RCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\n\
         DATA\r\nx\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n"
    );
    let transcript = run_script(&script);
    let lines = transcript.lines();
    let codes: Vec<&str> = lines[6..].iter().map(|line| &line[..3]).collect();
    assert_eq!(codes, ["250", "250", "550", "250", "354", "250", "250", "250", "221"]);
}

#[test]
fn many_pipelined_replies_survive_a_small_output_buffer() {
    let script = "EHLO a.example\r\n".to_string() + &"NOOP\r\n".repeat(60) + "QUIT\r\n";
    let transcript = run_script(&script);
    assert_eq!(transcript.lines().iter().filter(|l| *l == "250 2.0.0 Ok").count(), 60);
    assert!(transcript.last_line().starts_with("221 "));
}

#[test]
fn sequence_errors() {
    assert_eq!(run_script("MAIL FROM:<a@b.example>\r\n").last_line(), "503 5.5.1 Send EHLO or HELO first");
    assert_eq!(run_script("EHLO c.example\r\nRCPT TO:<alice@example.org>\r\n").last_line(), "503 5.5.1 Need MAIL before RCPT");
    assert_eq!(run_script("EHLO c.example\r\nDATA\r\n").last_line(), "503 5.5.1 Need MAIL command");
    assert_eq!(run_script(&format!("{HELLO}MAIL FROM:<>\r\n")).last_line(), "503 5.5.1 Nested MAIL command");
    assert_eq!(
        run_script(&format!("{HELLO}RCPT TO:<nobody@example.org>\r\nDATA\r\n")).last_line(),
        "554 5.5.1 No valid recipients"
    );
}

#[test]
fn simple_commands_and_their_codes() {
    let lines = run_script("EHLO c.example\r\nNOOP\r\nHELP\r\nVRFY alice\r\nEXPN staff\r\nRSET\r\nXYZZY\r\nBDAT 1 LAST\r\nDATA x\r\n").lines();
    let codes: Vec<&str> = lines[6..].iter().map(|line| &line[..9]).collect();
    assert_eq!(codes, ["250 2.0.0", "214 2.0.0", "252 2.5.2", "502 5.5.1", "250 2.0.0", "500 5.5.1", "502 5.5.1", "501 5.5.4"]);
}

#[test]
fn rset_and_ehlo_abort_the_transaction() {
    let transcript = run_script(&format!("{HELLO}RSET\r\nMAIL FROM:<>\r\nEHLO again.example\r\nMAIL FROM:<>\r\n"));
    assert_eq!(transcript.events.iter().filter(|e| e.contains("TransactionAborted(Reset)")).count(), 2);
    assert_eq!(transcript.last_line(), "250 2.1.0 Sender OK");
}

#[test]
fn null_sender_and_postmaster() {
    let transcript = run_script("EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<abuse@EXAMPLE.org>\r\n");
    let lines = transcript.lines();
    assert_eq!(lines[lines.len() - 3..], ["250 2.1.0 Sender OK", "250 2.1.5 Recipient OK", "250 2.1.5 Recipient OK"]);
    assert!(transcript.has_event("TransactionStarted { reverse_path: Null"));
    assert!(transcript.has_event("RecipientAccepted(Postmaster)"));
}

#[test]
fn address_syntax_codes() {
    assert_eq!(run_script("EHLO c.example\r\nMAIL FROM:<a@b@c.example>\r\n").last_line(), "501 5.1.7 Bad sender address syntax");
    assert_eq!(
        run_script(&format!("{HELLO}RCPT TO:<alice@example.org.>\r\n")).last_line(),
        "501 5.1.3 Bad recipient address syntax"
    );
    assert_eq!(
        run_script("EHLO c.example\r\nMAIL FROM:<> SMTPUTF8\r\n").last_line(),
        "555 5.5.4 Parameter not recognized or not implemented"
    );
}

#[test]
fn declared_size_and_storage() {
    let too_big = run_script("EHLO c.example\r\nMAIL FROM:<> SIZE=10485761\r\n");
    assert_eq!(too_big.last_line(), "552 5.3.4 Message size exceeds fixed maximum message size");
    assert!(too_big.has_event("DeclaredSizeTooBig"));
    assert_eq!(run_script("EHLO c.example\r\nMAIL FROM:<> SIZE=10485760\r\n").last_line(), "250 2.1.0 Sender OK");
    let low = Options { spool_free_bytes: 100_000, ..Options::default() };
    let transcript = run(low, &[b"EHLO c.example\r\nMAIL FROM:<> SIZE=200000\r\nMAIL FROM:<> SIZE=1000\r\n"]);
    let lines = transcript.lines();
    assert_eq!(lines[lines.len() - 2..], ["452 4.3.1 Insufficient system storage", "250 2.1.0 Sender OK"]);
}

#[test]
fn actual_size_over_the_limit_is_refused_after_data() {
    let mut config = config();
    config.limits.message_size = 100;
    let body = "x".repeat(60) + "\r\n";
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\n{body}{body}.\r\nNOOP\r\n");
    let transcript = run_with(&config, &relay(), Options::default(), &[script.as_bytes()]);
    let lines = transcript.lines();
    assert_eq!(lines[lines.len() - 2..], ["552 5.3.4 Message size exceeds fixed maximum message size", "250 2.0.0 Ok"]);
    assert!(transcript.has_event("TransactionAborted(Refused(MessageTooBig))"));
    assert!(transcript.messages.is_empty());
}

#[test]
fn text_line_limit() {
    let fits = "y".repeat(998);
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\n{fits}\r\n.\r\n");
    assert!(run_script(&script).last_line().starts_with("250 2.0.0 Ok: queued"));
    let too_long = "y".repeat(999);
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\n{too_long}\r\n.\r\n");
    let transcript = run_script(&script);
    assert_eq!(transcript.last_line(), "554 5.6.0 Message refused: text line longer than 1000 octets");
    assert!(transcript.messages.is_empty());
}

#[test]
fn recipient_limit() {
    let mut script = HELLO.to_string();
    for _ in 0..101 {
        script += "RCPT TO:<alice@example.org>\r\n";
    }
    let transcript = run_script(&script);
    let lines = transcript.lines();
    assert_eq!(lines.iter().filter(|l| *l == "250 2.1.5 Recipient OK").count(), 100);
    assert_eq!(transcript.last_line(), "452 4.5.3 Too many recipients");
    assert!(!transcript.closed, "a full envelope is not a protocol error");
}

#[test]
fn command_line_limit_then_recovery() {
    let long = format!("NOOP {}\r\nNOOP\r\n", "z".repeat(600));
    let transcript = run(Options::default(), &[b"EHLO c.example\r\n", long.as_bytes()]);
    let lines = transcript.lines();
    assert_eq!(lines[lines.len() - 2..], ["500 5.5.2 Line too long", "250 2.0.0 Ok"]);
    // Exactly 512 octets with CRLF is allowed.
    let exact = format!("NOOP {}\r\n", "z".repeat(512 - 7));
    assert_eq!(exact.len(), 512);
    assert_eq!(run(Options::default(), &[exact.as_bytes()]).last_line(), "250 2.0.0 Ok");
    let over = format!("NOOP {}\r\n", "z".repeat(513 - 7));
    assert_eq!(run(Options::default(), &[over.as_bytes()]).last_line(), "500 5.5.2 Line too long");
}

#[test]
fn bare_line_endings_in_commands_are_not_boundaries() {
    let transcript = run_script("EHLO c.example\r\nMAIL FROM:<a@b.example>\nRCPT TO:<alice@example.org>\r\n");
    assert_eq!(transcript.last_line(), "500 5.5.2 Syntax error: bare CR or LF in command line");
    assert!(!transcript.has_event("TransactionStarted"));
    let cr = run_script("EHLO c.example\r\nNOOP\rQUIT\r\n");
    assert_eq!(cr.last_line(), "500 5.5.2 Syntax error: bare CR or LF in command line");
    assert!(!cr.closed);
}

#[test]
fn too_many_errors_close_the_session() {
    let script = "EHLO c.example\r\n".to_string() + &"BOGUS\r\n".repeat(12);
    let transcript = run_script(&script);
    assert_eq!(transcript.lines().iter().filter(|l| l.starts_with("500 ")).count(), 10);
    assert_eq!(transcript.last_line(), "421 4.7.0 mx.example.org Too many errors, closing connection");
    assert!(transcript.closed && transcript.has_event("TooManyErrors"));
}

#[test]
fn other_protocols_are_dropped() {
    let transcript = run_script("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(transcript.last_line(), "421 4.7.0 mx.example.org This is an SMTP server, closing connection");
    assert!(transcript.closed && transcript.has_event("NotSmtp"));
}

#[test]
fn locked_device_answers_4xx() {
    let locked = run(Options { locked: true, ..Options::default() }, &[b"EHLO c.example\r\n"]);
    assert_eq!(locked.lines(), ["421 4.3.2 mx.example.org Service not available, try again later"]);
    assert!(locked.closed);
}

#[test]
fn timeouts_close_with_421() {
    let config = config();
    let relay = relay();
    let connection = ConnectionInfo { client: WAN.parse().unwrap(), session_id: 1, starttls_available: false, implicit_tls: None };
    let start = Now::new(1_700_000_000, 0);
    let mut session = ServerSession::new(&config, connection, start);
    let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
    assert!(session.poll(start, &mut policy).is_none());
    assert_eq!(session.deadline(), Some(300_000));
    session.receive(b"EHLO c.example\r\n", Now::new(0, 100_000));
    assert!(session.poll(Now::new(0, 100_000), &mut policy).is_none());
    assert_eq!(session.deadline(), Some(400_000));
    assert!(session.poll(Now::new(0, 399_999), &mut policy).is_none());
    let mut events = Vec::new();
    while let Some(event) = session.poll(Now::new(0, 400_000), &mut policy) {
        events.push(format!("{event:?}"));
    }
    assert!(String::from_utf8_lossy(session.output()).ends_with("421 4.4.2 mx.example.org Timeout, closing connection\r\n"));
    assert_eq!(events.last().unwrap(), "Close");

    // In DATA the clock restarts with every read; silence for the data timeout closes (the
    // minimum data rate is off here: `a_trickling_client_is_cut_off` tests it).
    let config = ServerConfig { limits: Limits { minimum_data_octets_per_second: 0, ..Limits::DEFAULT }, ..config };
    let mut session = ServerSession::new(&config, connection, start);
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\npartial line");
    session.receive(script.as_bytes(), start);
    while session.poll(start, &mut policy).is_some() {}
    session.receive(b" more", Now::new(0, 200_000));
    while session.poll(Now::new(0, 200_000), &mut policy).is_some() {}
    assert_eq!(session.deadline(), Some(500_000));
    let mut events = Vec::new();
    while let Some(event) = session.poll(Now::new(0, 500_000), &mut policy) {
        events.push(format!("{event:?}"));
    }
    assert_eq!(events, ["Refused(Refusal { reason: Timeout, code: 421 })", "TransactionAborted(SessionClosed)", "Close"]);
}

/// Polls until the session waits for input; the events as text.
fn poll_all(session: &mut ServerSession<'_>, now: Now, policy: &mut StandardPolicy<'_>) -> Vec<String> {
    let mut events = Vec::new();
    while let Some(event) = session.poll(now, policy) {
        events.push(format!("{event:?}"));
    }
    events
}

#[test]
fn a_busy_session_ends_at_its_time_limit() {
    let config = config();
    let relay = relay();
    let connection = ConnectionInfo { client: WAN.parse().unwrap(), session_id: 1, starttls_available: false, implicit_tls: None };
    let mut session = ServerSession::new(&config, connection, Now::new(0, 0));
    let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
    poll_all(&mut session, Now::new(0, 0), &mut policy);
    // A NOOP every four minutes never lets the command timeout strike...
    let mut minute = 0;
    while minute + 4 < 15 {
        minute += 4;
        let now = Now::new(0, minute * 60_000);
        session.receive(b"NOOP\r\n", now);
        assert!(poll_all(&mut session, now, &mut policy).is_empty(), "minute {minute}");
    }
    // ...but the session's deadline is its time limit (15 minutes), not the next timeout.
    assert_eq!(session.deadline(), Some(15 * 60_000));
    assert!(poll_all(&mut session, Now::new(0, 15 * 60_000 - 1), &mut policy).is_empty());
    let events = poll_all(&mut session, Now::new(0, 15 * 60_000), &mut policy);
    assert_eq!(events, ["Refused(Refusal { reason: SessionTimeLimit, code: 421 })", "Close"]);
    assert!(String::from_utf8_lossy(session.output())
        .ends_with("421 4.4.2 mx.example.org Session time limit reached, closing connection\r\n"));
    assert!(session.is_closed());
}

#[test]
fn a_trickling_client_is_cut_off() {
    let config = config();
    let relay = relay();
    let connection = ConnectionInfo { client: WAN.parse().unwrap(), session_id: 1, starttls_available: false, implicit_tls: None };
    let mut policy = StandardPolicy { relay: &relay, locked: false, spool_free_bytes: 1 << 30, spool_reserve_bytes: 0 };
    let start = Now::new(0, 0);
    let script = format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\n");

    // One octet every 10 seconds: well inside the data timeout, far below 1 KiB/s.
    let mut session = ServerSession::new(&config, connection, start);
    session.receive(script.as_bytes(), start);
    poll_all(&mut session, start, &mut policy);
    let mut second = 0;
    let mut events = Vec::new();
    while !session.is_closed() && second < 300 {
        second += 10;
        let now = Now::new(0, second * 1000);
        session.receive(b"x", now);
        events.extend(poll_all(&mut session, now, &mut policy));
    }
    assert_eq!(second, 60, "cut off when the grace minute ends");
    assert!(events.ends_with(&[
        "Refused(Refusal { reason: DataTooSlow, code: 421 })".to_string(),
        "TransactionAborted(SessionClosed)".to_string(),
        "Close".to_string()
    ]), "{events:?}");
    assert!(String::from_utf8_lossy(session.output())
        .ends_with("421 4.4.2 mx.example.org Data arriving too slowly, closing connection\r\n"));

    // Silent after a slow start: the deadline is when the rate falls short, not the data timeout.
    let mut session = ServerSession::new(&config, connection, start);
    session.receive(script.as_bytes(), start);
    poll_all(&mut session, start, &mut policy);
    session.receive(&[b'y'; 100], Now::new(0, 1000));
    poll_all(&mut session, Now::new(0, 1000), &mut policy);
    assert_eq!(session.deadline(), Some(60_000));

    // 2 KiB a second passes: the message is complete after 100 seconds.
    let mut session = ServerSession::new(&config, connection, start);
    session.receive(script.as_bytes(), start);
    poll_all(&mut session, start, &mut policy);
    let line = [b"a".repeat(510), b"\r\n".to_vec()].concat().repeat(4);
    for second in 1..=100 {
        let now = Now::new(0, second * 1000);
        let mut rest = &line[..];
        while !rest.is_empty() {
            let taken = session.receive(rest, now);
            rest = &rest[taken..];
            let events = poll_all(&mut session, now, &mut policy);
            assert!(events.iter().all(|event| event.starts_with("MessageData")), "{events:?}");
        }
    }
    session.receive(b".\r\n", Now::new(0, 100_500));
    let events = poll_all(&mut session, Now::new(0, 100_500), &mut policy);
    assert!(events.iter().any(|event| event.starts_with("MessageComplete")), "{events:?}");
}

#[test]
fn starttls_not_offered() {
    let transcript = run_script("EHLO c.example\r\nSTARTTLS\r\n");
    assert_eq!(transcript.last_line(), "502 5.5.1 STARTTLS not available");
}

#[test]
fn starttls_discards_injected_plaintext() {
    let options = Options { starttls_available: true, ..Options::default() };
    // CVE-2011-0411: commands in the same packet as STARTTLS must not run after the switch.
    let transcript = run(
        options,
        &[b"EHLO c.example\r\nSTARTTLS\r\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<alice@example.org>\r\n", b"EHLO c.example\r\nSTARTTLS\r\n"],
    );
    let lines = transcript.lines();
    assert_eq!(lines[7], "220 2.0.0 Ready to start TLS");
    assert!(transcript.has_event("PlaintextDiscarded { octets: 57 }"));
    assert!(!transcript.has_event("TransactionStarted"));
    // After the handshake: EHLO again, no STARTTLS offered, a second STARTTLS refused.
    assert!(!lines[8..].contains(&"250-STARTTLS".to_string()));
    assert_eq!(transcript.last_line(), "503 5.5.1 TLS already active");
}

#[test]
fn starttls_resets_state_and_received_says_esmtps() {
    let options = Options { starttls_available: true, ..Options::default() };
    let transcript = run(
        options,
        &[
            b"EHLO c.example\r\nSTARTTLS\r\n",
            b"MAIL FROM:<a@b.example>\r\n",
            b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\n",
        ],
    );
    let lines = transcript.lines();
    assert!(lines.contains(&"503 5.5.1 Send EHLO or HELO first".to_string()), "{lines:?}");
    let message = String::from_utf8(transcript.messages[0].clone()).unwrap();
    assert!(message.contains("with ESMTPS\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)\r\n"), "{message}");
}

#[test]
fn require_tls_for_submission() {
    let mut config = config();
    config.require_tls = true;
    let transcript = run_with(&config, &relay(), Options::default(), &[b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"]);
    assert_eq!(transcript.last_line(), "530 5.7.0 Must issue a STARTTLS command first");
}

#[test]
fn limits_are_configurable() {
    let mut config = config();
    config.limits = Limits { recipients_per_message: 2, errors_per_session: 2, ..Limits::DEFAULT };
    let script = format!("{HELLO}RCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nRCPT TO:<alice@example.org>\r\nX\r\nY\r\n");
    let transcript = run_with(&config, &relay(), Options::default(), &[script.as_bytes()]);
    assert!(transcript.lines().contains(&"452 4.5.3 Too many recipients".to_string()));
    assert!(transcript.closed);
}

#[test]
fn lan_client_may_relay_only_when_a_smarthost_is_configured() {
    let script = format!("{HELLO}RCPT TO:<friend@elsewhere.example>\r\n");
    // No smarthost (an inbound-only MX): the LAN client is told why.
    let denied = run(Options { client: LAN, ..Options::default() }, &[script.as_bytes()]);
    assert_eq!(denied.last_line(), "550 5.7.1 outbound mail is not configured");
    assert!(denied.has_event("OutboundNotConfigured"));
    let wan_without_smarthost = run(Options::default(), &[script.as_bytes()]);
    assert_eq!(wan_without_smarthost.last_line(), "550 5.7.1 Relay access denied");
    let mut relay = relay();
    relay.set_lan_may_relay(true);
    // A smarthost, but relaying by LAN address alone is an explicit opt-in (issue 15).
    let unauthenticated = run_with(&config(), &relay, Options { client: LAN, ..Options::default() }, &[script.as_bytes()]);
    assert_eq!(unauthenticated.last_line(), "530 5.7.0 Authentication required");
    assert!(unauthenticated.has_event("AuthenticationRequired"));
    relay.set_lan_relay_without_auth(true);
    let allowed = run_with(&config(), &relay, Options { client: LAN, ..Options::default() }, &[script.as_bytes()]);
    assert_eq!(allowed.last_line(), "250 2.1.5 Recipient OK");
    let wan = run_with(&config(), &relay, Options::default(), &[script.as_bytes()]);
    assert_eq!(wan.last_line(), "550 5.7.1 Relay access denied");
    assert!(wan.has_event("RelayDenied"));
}

#[test]
fn quit_in_a_transaction_aborts_it() {
    let transcript = run_script(&format!("{HELLO}RCPT TO:<bob@example.org>\r\nDATA\r\nhalf a message\r\n"));
    assert!(!transcript.closed);
    let quit = run_script(&format!("{HELLO}QUIT\r\n"));
    assert!(quit.has_event("TransactionAborted(Quit)"));
}

#[test]
fn session_ram_is_small() {
    let size = std::mem::size_of::<ServerSession<'static>>();
    assert!(size < 4 * 1024, "{size}");
    let _ = ServerConfig { hostname: "x", limits: Limits::DEFAULT, require_tls: false, submission: false, submission_requires_auth: true };
}
