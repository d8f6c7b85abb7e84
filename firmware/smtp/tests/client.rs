//! Client session against a scripted fake server: TLS forced, stripping detected, AUTH only
//! inside TLS, per-recipient classification, LMTP per-recipient replies, dot-stuffing.

use std::collections::VecDeque;

use homemx_smtp::{
    ClientConfig, ClientEvent, ClientProtocol, ClientSession, Credentials, Envelope, Now, Outcome, ResultReason,
    TlsProblem, TlsRequirement,
};

/// What the fake server does with a client command.
struct Step {
    /// The command line must start with this.
    expect: &'static str,
    /// The raw reply to send (may hold several lines or injected extras).
    reply: &'static str,
}

const fn step(expect: &'static str, reply: &'static str) -> Step {
    Step { expect, reply }
}

#[derive(Default, Debug)]
struct Run {
    /// Every line the client sent, with whether TLS was active when it was sent.
    lines: Vec<(String, bool)>,
    /// The DATA section as sent (stuffed, with the terminator).
    data: Vec<u8>,
    results: Vec<(usize, Outcome, u16, ResultReason)>,
    problems: Vec<TlsProblem>,
    discarded: usize,
    closed: bool,
}

#[derive(Clone, Copy)]
enum Tls {
    Succeeds,
    Fails,
}

fn deliver(config: &ClientConfig<'_>, envelope: Envelope<'_>, greeting: &str, steps: Vec<Step>, tls: Tls, body: &[u8]) -> Run {
    let now = Now::new(1_700_000_000, 0);
    let mut client = ClientSession::new(config, envelope, false, now).unwrap();
    let mut steps: VecDeque<Step> = steps.into();
    let mut run = Run::default();
    let mut to_client: Vec<u8> = greeting.as_bytes().to_vec();
    let mut from_client: Vec<u8> = Vec::new();
    let mut in_data = false;
    for _round in 0..200 {
        // Server bytes to the client.
        let taken = client.receive(&to_client, now);
        to_client.drain(..taken);
        loop {
            match client.poll(now) {
                None => break,
                Some(ClientEvent::OutputFull) => {
                    from_client.extend_from_slice(client.output());
                    let length = client.output().len();
                    client.output_sent(length);
                }
                Some(ClientEvent::StartTls) => {
                    from_client.extend_from_slice(client.output());
                    let length = client.output().len();
                    client.output_sent(length);
                    to_client.clear();
                    match tls {
                        Tls::Succeeds => client.tls_established(now),
                        Tls::Fails => client.tls_failed(),
                    }
                }
                Some(ClientEvent::SendBody) => {
                    let mut rest = body;
                    while !rest.is_empty() {
                        let used = client.send_body(rest);
                        rest = &rest[used..];
                        from_client.extend_from_slice(client.output());
                        let length = client.output().len();
                        client.output_sent(length);
                    }
                    assert!(client.end_body(now));
                }
                Some(ClientEvent::RecipientResult(result)) => {
                    run.results.push((result.index, result.outcome, result.code, result.reason))
                }
                Some(ClientEvent::TlsProblem(problem)) => run.problems.push(problem),
                Some(ClientEvent::PlaintextDiscarded { octets }) => run.discarded += octets,
                Some(ClientEvent::Close) => run.closed = true,
            }
        }
        from_client.extend_from_slice(client.output());
        let length = client.output().len();
        client.output_sent(length);
        if run.closed {
            break;
        }
        // The fake server reads complete lines.
        while let Some(position) = from_client.windows(2).position(|w| w == b"\r\n") {
            if in_data {
                let end = from_client.windows(5).position(|w| w == b"\r\n.\r\n");
                let Some(end) = end else { break };
                run.data.extend(from_client.drain(..end + 5));
                in_data = false;
                let next = steps.pop_front().expect("a reply for the end of data");
                assert_eq!(next.expect, "<end of data>");
                to_client.extend_from_slice(next.reply.as_bytes());
                continue;
            }
            let line = String::from_utf8(from_client.drain(..position + 2).collect()).unwrap();
            let line = line.trim_end_matches("\r\n").to_string();
            run.lines.push((line.clone(), client.tls_active()));
            let next = steps.pop_front().unwrap_or_else(|| panic!("unexpected command {line:?}"));
            assert!(line.starts_with(next.expect), "expected {:?}, got {line:?}", next.expect);
            to_client.extend_from_slice(next.reply.as_bytes());
            if line == "DATA" && next.reply.starts_with("354") {
                in_data = true;
            }
        }
        if to_client.is_empty() && from_client.is_empty() && steps.is_empty() {
            client.connection_closed();
        }
    }
    while let Some(event) = client.poll(now) {
        if let ClientEvent::RecipientResult(result) = event {
            run.results.push((result.index, result.outcome, result.code, result.reason));
        }
    }
    run
}

const SMARTHOST: ClientConfig<'static> = ClientConfig {
    hostname: "mx.example.org",
    protocol: ClientProtocol::Smtp,
    tls: TlsRequirement::Required,
    credentials: Some(Credentials { username: "user", password: "secret" }),
};

const RECIPIENTS: [&str; 3] = ["a@far.example", "b@far.example", "c@far.example"];

fn envelope() -> Envelope<'static> {
    Envelope { sender: "alice@example.org", recipients: &RECIPIENTS, size: Some(30), eight_bit: true }
}

const EHLO_PLAIN_TLS: &str = "250-smarthost.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n";
const EHLO_AFTER_TLS: &str = "250-smarthost.example\r\n250-SIZE 1000000\r\n250-AUTH LOGIN PLAIN\r\n250 8BITMIME\r\n";

#[test]
fn smarthost_delivery_with_tls_and_auth_and_per_recipient_results() {
    let body = b"Subject: t\r\n\r\n.dot line\r\nend\r\n";
    let run = deliver(
        &SMARTHOST,
        envelope(),
        "220 smarthost.example ESMTP\r\n",
        vec![
            step("EHLO mx.example.org", EHLO_PLAIN_TLS),
            step("STARTTLS", "220 2.0.0 go ahead\r\n"),
            step("EHLO mx.example.org", EHLO_AFTER_TLS),
            // base64("\0user\0secret")
            step("AUTH PLAIN AHVzZXIAc2VjcmV0", "235 2.7.0 ok\r\n"),
            step("MAIL FROM:<alice@example.org> SIZE=30 BODY=8BITMIME", "250 2.1.0 ok\r\n"),
            step("RCPT TO:<a@far.example>", "250 2.1.5 ok\r\n"),
            step("RCPT TO:<b@far.example>", "550 5.1.1 no such user\r\n"),
            step("RCPT TO:<c@far.example>", "451 4.3.0 later\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 2.0.0 queued\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        body,
    );
    assert!(run.closed);
    assert_eq!(run.data, b"Subject: t\r\n\r\n..dot line\r\nend\r\n.\r\n");
    let mut results = run.results.clone();
    results.sort_by_key(|r| r.0);
    assert_eq!(
        results,
        [
            (0, Outcome::Delivered, 250, ResultReason::Reply),
            (1, Outcome::Bounced, 550, ResultReason::Reply),
            (2, Outcome::Deferred, 451, ResultReason::Reply),
        ]
    );
    // Credentials only ever inside TLS.
    for (line, tls) in &run.lines {
        if line.starts_with("AUTH") || line.starts_with("MAIL") {
            assert!(tls, "{line} sent in clear");
        }
    }
}

/// A body with a bare LF (say from a spool written by another path): a leading dot after it
/// is stuffed, so a receiver that ends lines at a bare LF sees no lone `.` line and no
/// smuggled command.
#[test]
fn dot_stuffing_after_a_bare_line_feed() {
    let config = ClientConfig { hostname: "mx.example.org", protocol: ClientProtocol::Lmtp, tls: TlsRequirement::Disabled, credentials: None };
    let run = deliver(
        &config,
        Envelope { recipients: &RECIPIENTS[..1], ..envelope() },
        "220 mailbox LMTP\r\n",
        vec![
            step("LHLO", "250 mailbox\r\n"),
            step("MAIL FROM:<alice@example.org>", "250 ok\r\n"),
            step("RCPT TO:<a@far.example>", "250 ok\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 ok\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"Subject: t\r\n\r\nfirst\n.\nMAIL FROM:<evil@x.example>\n.\r\nlast\r.\r",
    );
    assert_eq!(run.data, b"Subject: t\r\n\r\nfirst\n..\nMAIL FROM:<evil@x.example>\n..\r\nlast\r..\r\r\n.\r\n");
    assert_eq!(run.results, [(0, Outcome::Delivered, 250, ResultReason::Reply)]);
}

#[test]
fn auth_login_inside_tls() {
    let run = deliver(
        &SMARTHOST,
        Envelope { recipients: &RECIPIENTS[..1], ..envelope() },
        "220 s\r\n",
        vec![
            step("EHLO", EHLO_PLAIN_TLS),
            step("STARTTLS", "220 go\r\n"),
            step("EHLO", "250-s\r\n250 AUTH LOGIN\r\n"),
            step("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
            step("dXNlcg==", "334 UGFzc3dvcmQ6\r\n"),
            step("c2VjcmV0", "235 ok\r\n"),
            step("MAIL FROM:<alice@example.org>", "250 ok\r\n"),
            step("RCPT", "250 ok\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 ok\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert_eq!(run.results, [(0, Outcome::Delivered, 250, ResultReason::Reply)]);
}

fn tls_trouble(ehlo: &'static str, starttls_reply: Option<&'static str>, tls: Tls) -> Run {
    let mut steps = vec![step("EHLO", ehlo)];
    if let Some(reply) = starttls_reply {
        steps.push(step("STARTTLS", reply));
    }
    steps.push(step("QUIT", "221 bye\r\n"));
    deliver(&SMARTHOST, envelope(), "220 s\r\n", steps, tls, b"secret body\r\n")
}

fn assert_all_deferred_nothing_sent(run: &Run) {
    assert_eq!(run.results.len(), 3);
    assert!(run.results.iter().all(|r| r.1 == Outcome::Deferred && r.3 == ResultReason::TlsUnavailable), "{run:?}");
    assert!(run.lines.iter().all(|(line, _)| !line.starts_with("AUTH") && !line.starts_with("MAIL")), "{run:?}");
    assert!(run.data.is_empty());
    assert!(run.closed);
}

#[test]
fn no_starttls_offered_defers_everything() {
    let run = tls_trouble("250-s\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n", None, Tls::Succeeds);
    assert_eq!(run.problems, [TlsProblem::NotOffered]);
    assert_all_deferred_nothing_sent(&run);
}

#[test]
fn stripped_starttls_is_detected() {
    let run = tls_trouble("250-s\r\n250-XXXXXXXA\r\n250 AUTH PLAIN\r\n", None, Tls::Succeeds);
    assert_eq!(run.problems, [TlsProblem::Stripped]);
    assert_all_deferred_nothing_sent(&run);
}

#[test]
fn refused_starttls_defers() {
    let run = tls_trouble(EHLO_PLAIN_TLS, Some("454 4.7.0 TLS not available\r\n"), Tls::Succeeds);
    assert_eq!(run.problems, [TlsProblem::Refused(454)]);
    assert_all_deferred_nothing_sent(&run);
}

/// With TLS required, every permanent refusal before TLS is up (a 554 greeting, a 550 to
/// EHLO, a 5xx to STARTTLS) came in clear and may be forged by a man in the middle: each one
/// defers every recipient (no bounce, no NDN) and raises a TLS problem for the alert.
#[test]
fn permanent_refusals_before_tls_only_defer() {
    let cases: [(&str, Vec<Step>, TlsProblem, u16); 4] = [
        ("554 5.7.1 go away, you are blocked\r\n", vec![step("QUIT", "221 bye\r\n")], TlsProblem::RefusedBeforeTls(554), 554),
        (
            "220 s\r\n",
            vec![step("EHLO", "550 5.7.1 not you\r\n"), step("QUIT", "221 bye\r\n")],
            TlsProblem::RefusedBeforeTls(550),
            550,
        ),
        (
            "220 s\r\n",
            vec![step("EHLO", "554-5.7.1 first line\r\n554 5.7.1 no mail from you\r\n"), step("QUIT", "221 bye\r\n")],
            TlsProblem::RefusedBeforeTls(554),
            554,
        ),
        (
            "220 s\r\n",
            vec![step("EHLO", EHLO_PLAIN_TLS), step("STARTTLS", "554 5.7.3 no TLS for you\r\n"), step("QUIT", "221 bye\r\n")],
            TlsProblem::Refused(554),
            554,
        ),
    ];
    for (greeting, steps, problem, code) in cases {
        let run = deliver(&SMARTHOST, envelope(), greeting, steps, Tls::Succeeds, b"secret body\r\n");
        assert_eq!(run.problems, [problem], "{greeting:?}: {run:?}");
        assert_eq!(run.results.len(), 3, "{run:?}");
        for &(_, outcome, reply_code, reason) in &run.results {
            assert_eq!((outcome, reply_code, reason), (Outcome::Deferred, code, ResultReason::TlsUnavailable), "{greeting:?}: {run:?}");
        }
        assert_all_deferred_nothing_sent(&run);
    }
}

/// The same replies inside TLS (implicit TLS on 465, or after STARTTLS) are the verified
/// server's own: they bounce as usual; and without TLS required a plaintext 5xx is the
/// server's word too.
#[test]
fn permanent_refusals_inside_tls_or_without_tls_policy_bounce() {
    let now = Now::new(1_700_000_000, 0);
    let mut client = ClientSession::new(&SMARTHOST, envelope(), true, now).unwrap();
    client.receive(b"554 5.7.1 no service\r\n", now);
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    while let Some(event) = client.poll(now) {
        match event {
            ClientEvent::RecipientResult(result) => outcomes.push((result.outcome, result.code, result.reason)),
            ClientEvent::TlsProblem(problem) => problems.push(problem),
            _ => {}
        }
    }
    assert!(problems.is_empty());
    assert_eq!(outcomes, [(Outcome::Bounced, 554, ResultReason::Reply); 3]);

    let run = deliver(
        &SMARTHOST,
        envelope(),
        "220 s\r\n",
        vec![
            step("EHLO", EHLO_PLAIN_TLS),
            step("STARTTLS", "220 go\r\n"),
            step("EHLO", "550 5.7.1 not you\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert!(run.problems.is_empty());
    assert_eq!(run.results.iter().map(|r| (r.1, r.2, r.3)).collect::<Vec<_>>(), [(Outcome::Bounced, 550, ResultReason::Reply); 3]);

    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    let run = deliver(&config, envelope(), "554 5.7.1 no\r\n", vec![step("QUIT", "221 bye\r\n")], Tls::Succeeds, b"x\r\n");
    assert!(run.problems.is_empty());
    assert_eq!(run.results.iter().map(|r| (r.1, r.2, r.3)).collect::<Vec<_>>(), [(Outcome::Bounced, 554, ResultReason::Reply); 3]);
}

#[test]
fn failed_handshake_defers_without_quit() {
    let run = deliver(&SMARTHOST, envelope(), "220 s\r\n", vec![step("EHLO", EHLO_PLAIN_TLS), step("STARTTLS", "220 go\r\n")], Tls::Fails, b"x\r\n");
    assert_eq!(run.problems, [TlsProblem::HandshakeFailed]);
    assert_all_deferred_nothing_sent(&run);
}

#[test]
fn plaintext_after_starttls_220_is_discarded() {
    // A man in the middle appends a fake EHLO reply to the 220 (client side of CVE-2011-0411).
    let run = deliver(
        &SMARTHOST,
        Envelope { recipients: &RECIPIENTS[..1], ..envelope() },
        "220 s\r\n",
        vec![
            step("EHLO", EHLO_PLAIN_TLS),
            step("STARTTLS", "220 go\r\n250-fake\r\n250 AUTH PLAIN\r\n"),
            step("EHLO", EHLO_AFTER_TLS),
            step("AUTH PLAIN", "235 ok\r\n"),
            step("MAIL", "250 ok\r\n"),
            step("RCPT", "250 ok\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 ok\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert_eq!(run.discarded, "250-fake\r\n250 AUTH PLAIN\r\n".len());
    assert_eq!(run.results, [(0, Outcome::Delivered, 250, ResultReason::Reply)]);
}

#[test]
fn credentials_are_never_sent_in_clear() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, ..SMARTHOST };
    let run = deliver(
        &config,
        envelope(),
        "220 s\r\n",
        vec![step("EHLO", "250-s\r\n250 AUTH PLAIN LOGIN\r\n"), step("QUIT", "221 bye\r\n")],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert!(run.results.iter().all(|r| r.1 == Outcome::Deferred && r.3 == ResultReason::CredentialsNeedTls));
    assert!(run.lines.iter().all(|(line, _)| !line.starts_with("AUTH")));
}

#[test]
fn lmtp_gives_one_reply_per_accepted_recipient() {
    let config = ClientConfig {
        hostname: "mx.example.org",
        protocol: ClientProtocol::Lmtp,
        tls: TlsRequirement::Disabled,
        credentials: None,
    };
    let run = deliver(
        &config,
        envelope(),
        "220 mailbox LMTP\r\n",
        vec![
            step("LHLO mx.example.org", "250-mailbox\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
            step("MAIL FROM:<alice@example.org> BODY=8BITMIME", "250 ok\r\n"),
            step("RCPT TO:<a@far.example>", "250 ok\r\n"),
            step("RCPT TO:<b@far.example>", "550 5.1.1 unknown\r\n"),
            step("RCPT TO:<c@far.example>", "250 ok\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 2.0.0 a delivered\r\n452 4.2.2 c over quota\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"hello\r\n",
    );
    let mut results = run.results.clone();
    results.sort_by_key(|r| r.0);
    assert_eq!(
        results,
        [
            (0, Outcome::Delivered, 250, ResultReason::Reply),
            (1, Outcome::Bounced, 550, ResultReason::Reply),
            (2, Outcome::Deferred, 452, ResultReason::Reply),
        ]
    );
    assert!(run.lines.iter().all(|(line, _)| line != "STARTTLS"), "TLS disabled");
}

#[test]
fn server_size_limit_bounces_without_sending() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    let run = deliver(
        &config,
        Envelope { size: Some(2_000_000), ..envelope() },
        "220 s\r\n",
        vec![step("EHLO", "250-s\r\n250 SIZE 1000000\r\n"), step("QUIT", "221 bye\r\n")],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert!(run.results.iter().all(|r| r.1 == Outcome::Bounced && r.2 == 552 && r.3 == ResultReason::MessageTooBig));
}

#[test]
fn temporary_552_at_rcpt_and_refused_mail() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    let run = deliver(
        &config,
        Envelope { recipients: &RECIPIENTS[..2], ..envelope() },
        "220 s\r\n",
        vec![
            step("EHLO", "250 s\r\n"),
            step("MAIL FROM:<alice@example.org>", "250 ok\r\n"),
            step("RCPT", "250 ok\r\n"),
            step("RCPT", "552 too many recipients\r\n"),
            step("DATA", "354 go\r\n"),
            step("<end of data>", "250 ok\r\n"),
            step("QUIT", "221 bye\r\n"),
        ],
        Tls::Succeeds,
        b"x\r\n",
    );
    let mut results = run.results.clone();
    results.sort_by_key(|r| r.0);
    assert_eq!(results[1], (1, Outcome::Deferred, 552, ResultReason::Reply));
    let refused = deliver(
        &config,
        envelope(),
        "220 s\r\n",
        vec![step("EHLO", "250 s\r\n"), step("MAIL", "553 5.7.1 sender refused\r\n"), step("QUIT", "221 bye\r\n")],
        Tls::Succeeds,
        b"x\r\n",
    );
    assert!(refused.results.iter().all(|r| r.1 == Outcome::Bounced && r.2 == 553));
}

#[test]
fn lost_connection_and_timeout_defer() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    let now = Now::new(0, 0);
    let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
    assert!(client.poll(now).is_none());
    assert_eq!(client.deadline(), Some(300_000));
    let mut results = 0;
    while let Some(event) = client.poll(Now::new(0, 300_000)) {
        if let ClientEvent::RecipientResult(result) = event {
            assert_eq!((result.outcome, result.reason), (Outcome::Deferred, ResultReason::Timeout));
            results += 1;
        }
    }
    assert_eq!(results, 3);
    assert!(client.is_finished());

    let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
    client.receive(b"220 s\r\n", now);
    while client.poll(now).is_some() {}
    client.connection_closed();
    let mut reasons = Vec::new();
    while let Some(event) = client.poll(now) {
        if let ClientEvent::RecipientResult(result) = event {
            reasons.push(result.reason);
        }
    }
    assert_eq!(reasons, [ResultReason::ConnectionLost; 3]);
}

/// A driver stops at `Close` (the firmware's does): every recipient's result must come before
/// it, or the reason (timeout, lost connection, no TLS) is lost with the session.
#[test]
fn every_result_comes_before_close() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    let now = Now::new(0, 0);
    let until_close = |client: &mut ClientSession<'_>, at: Now| {
        let mut reasons = Vec::new();
        while let Some(event) = client.poll(at) {
            match event {
                ClientEvent::RecipientResult(result) => reasons.push(result.reason),
                ClientEvent::Close => return reasons,
                _ => {}
            }
        }
        panic!("the session ended without Close");
    };
    let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
    assert!(client.poll(now).is_none());
    assert_eq!(until_close(&mut client, Now::new(0, 300_000)), vec![ResultReason::Timeout; 3]);

    let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
    client.receive(b"220 s\r\n", now);
    while client.poll(now).is_some_and(|event| !matches!(event, ClientEvent::Close)) {}
    client.connection_closed();
    assert_eq!(until_close(&mut client, now).len(), 3);

    let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
    client.receive(b"220 s\r\n250 garbage\r\nnot a reply\r\n", now);
    assert_eq!(until_close(&mut client, now), vec![ResultReason::ProtocolError; 3]);
}

#[test]
fn malformed_replies_are_protocol_errors() {
    let config = ClientConfig { tls: TlsRequirement::Opportunistic, credentials: None, ..SMARTHOST };
    for garbage in ["hello\r\n", "250-a\r\n251 b\r\n", "220 bare lf\n", "999 x\r\n"] {
        let now = Now::new(0, 0);
        let mut client = ClientSession::new(&config, envelope(), false, now).unwrap();
        client.receive(garbage.as_bytes(), now);
        let mut reasons = Vec::new();
        while let Some(event) = client.poll(now) {
            if let ClientEvent::RecipientResult(result) = event {
                reasons.push(result.reason);
            }
        }
        assert_eq!(reasons, [ResultReason::ProtocolError; 3], "{garbage:?}");
    }
}

#[test]
fn envelopes_are_checked() {
    let config = SMARTHOST;
    let now = Now::new(0, 0);
    let bad = ["x@y.example\r\nRCPT TO:<evil@z.example"];
    assert!(ClientSession::new(&config, Envelope { recipients: &bad, ..envelope() }, false, now).is_err());
    assert!(ClientSession::new(&config, Envelope { sender: "a>b@c", ..envelope() }, false, now).is_err());
    assert!(ClientSession::new(&config, Envelope { recipients: &[], ..envelope() }, false, now).is_err());
    assert!(ClientSession::new(&config, Envelope { sender: "", ..envelope() }, false, now).is_ok());
}
