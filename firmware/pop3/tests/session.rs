//! Scripted dialogues against a fake server: TLS forced (STLS missing, stripped, refused,
//! failed handshake, injected plaintext), login refusals, LIST/UIDL parsing, RETR with
//! dot-stuffing, DELE and QUIT, lost connections and timeouts.

mod common;

use common::*;
use homemx_pop3::{
    AbortReason, Failure, ListingSummary, LoginRefusal, MessageCommand, Pop3Config, Pop3Event, Pop3Session,
    RequestError, Stage, TlsMode, TlsProblem,
};

const BODY_ONE: &[u8] =
    b"Delivered-To: alice@example.org\r\nSubject: one\r\n\r\nHello\r\n.\r\n..\r\n.hidden\r\nend\r\n";
const BODY_TWO: &[u8] = b"Subject: two\r\n\r\nShort.\r\n";

fn listing_steps() -> Vec<Step> {
    vec![
        step("LIST", "+OK 2 messages\r\n1 90\r\n2 30\r\n.\r\n"),
        step("UIDL", "+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"),
    ]
}

fn full_steps() -> Vec<Step> {
    let mut steps = login_steps();
    steps.extend(listing_steps());
    steps.extend([
        step("RETR 1", retr_reply(BODY_ONE)),
        step("DELE 1", "+OK message 1 deleted\r\n"),
        step("RETR 2", retr_reply(BODY_TWO)),
        step("DELE 2", "+OK message 2 deleted\r\n"),
        step("QUIT", "+OK dewey POP3 server signing off (2 messages left)\r\n"),
    ]);
    steps
}

#[test]
fn full_fetch_over_stls() {
    let run = drive(&config(TlsMode::StartTls), GREETING, full_steps(), &Options::default());
    assert_eq!(
        run.verbs(),
        ["CAPA", "STLS", "CAPA", "USER", "PASS", "LIST", "UIDL", "RETR", "DELE", "RETR", "DELE", "QUIT"]
    );
    // Nothing but CAPA and STLS in clear.
    for (line, tls) in &run.lines {
        assert!(*tls || line == "CAPA" || line == "STLS", "{line} sent in clear");
    }
    assert_eq!(
        run.committed,
        [
            ("whqtswO00WBw418f9t5JxYwZ".to_string(), BODY_ONE.to_vec()),
            ("QhdPYR:00WBw1Ph7x7".to_string(), BODY_TWO.to_vec())
        ]
    );
    assert_eq!(run.events.first(), Some(&Ev::StartTls));
    assert!(run.events.contains(&Ev::ListingComplete(ListingSummary { messages: 2, listed: 2, complete: true })));
    assert!(run.events.contains(&Ev::End(1, BODY_ONE.len() as u64)));
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 2)));
    assert!(!run.events.iter().any(|event| matches!(event, Ev::Failed(_) | Ev::TlsProblem(_))));
    assert!(run.seen.contains("whqtswO00WBw418f9t5JxYwZ") && run.seen.contains("QhdPYR:00WBw1Ph7x7"));
    assert_eq!(run.unused_steps, 0);
}

#[test]
fn dot_stuffed_lines_are_unstuffed() {
    let mut steps = login_steps();
    steps.extend([
        step("LIST", "+OK\r\n1 40\r\n.\r\n"),
        step("UIDL", "+OK\r\n1 a\r\n.\r\n"),
        // A line of just "..", one of "...", a stuffed header-looking line, an empty line.
        step("RETR 1", "+OK\r\nA\r\n..\r\n...\r\n..From\r\n\r\n.\r\n"),
        step("DELE 1", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_eq!(run.committed, [("a".to_string(), b"A\r\n.\r\n..\r\n.From\r\n\r\n".to_vec())]);
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 1)));
}

#[test]
fn implicit_tls_skips_stls() {
    let mut steps = vec![step("CAPA", CAPA_TLS), step("USER", "+OK\r\n"), step("PASS", "+OK\r\n")];
    steps.extend([step("LIST", "+OK\r\n.\r\n"), step("UIDL", "+OK\r\n.\r\n"), step("QUIT", "+OK\r\n")]);
    let run = drive(&config(TlsMode::Implicit), GREETING, steps, &Options::default());
    assert_eq!(run.verbs(), ["CAPA", "USER", "PASS", "LIST", "UIDL", "QUIT"]);
    assert!(run.lines.iter().all(|(_, tls)| *tls));
    assert!(run.events.contains(&Ev::ListingComplete(ListingSummary { messages: 0, listed: 0, complete: true })));
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 0)));
}

#[test]
fn implicit_tls_without_capa_support_logs_in_with_user() {
    let steps = vec![
        step("CAPA", "-ERR unknown command\r\n"),
        step("USER", "+OK\r\n"),
        step("PASS", "+OK\r\n"),
        step("LIST", "+OK\r\n.\r\n"),
        step("UIDL", "+OK\r\n.\r\n"),
        step("QUIT", "+OK\r\n"),
    ];
    let run = drive(&config(TlsMode::Implicit), GREETING, steps, &Options::default());
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 0)));
}

/// Asserts that the run stopped for TLS with `problem` and never sent credentials.
fn assert_tls_refused(run: &Run, problem: TlsProblem) {
    assert!(run.events.contains(&Ev::TlsProblem(problem)), "{:?}", run.events);
    assert!(run.events.contains(&Ev::Failed(Failure::TlsUnavailable)));
    assert!(!run.sent("USER") && !run.sent("PASS") && !run.sent("AUTH"), "{:?}", run.lines);
    assert!(!run.events.contains(&Ev::PasswordNeeded));
    assert!(matches!(run.events.last(), Some(Ev::Close(_, 0))));
}

#[test]
fn capa_without_stls_stops_before_login() {
    let steps = vec![step("CAPA", "+OK\r\nUSER\r\nUIDL\r\n.\r\n"), step("QUIT", "+OK\r\n")];
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_tls_refused(&run, TlsProblem::NotOffered);
    assert_eq!(run.verbs(), ["CAPA", "QUIT"]);
}

#[test]
fn tampered_capability_is_reported_as_stripping() {
    let steps = vec![step("CAPA", "+OK\r\nTOP\r\nUIDL\r\nXXXX\r\nUSER\r\n.\r\n"), step("QUIT", "+OK\r\n")];
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_tls_refused(&run, TlsProblem::Stripped);
}

#[test]
fn refused_capa_in_clear_means_no_tls() {
    let steps = vec![step("CAPA", "-ERR what\r\n"), step("QUIT", "+OK\r\n")];
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_tls_refused(&run, TlsProblem::NotOffered);
}

#[test]
fn stls_refused() {
    let steps = vec![step("CAPA", CAPA_STLS), step("STLS", "-ERR TLS not available now\r\n"), step("QUIT", "+OK\r\n")];
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_tls_refused(&run, TlsProblem::Refused);
    assert_eq!(run.verbs(), ["CAPA", "STLS", "QUIT"]);
}

#[test]
fn failed_handshake_closes_without_a_word() {
    let steps = vec![step("CAPA", CAPA_STLS), step("STLS", "+OK\r\n")];
    let options = Options { tls: Tls::Fails, ..Options::default() };
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &options);
    assert_tls_refused(&run, TlsProblem::HandshakeFailed);
    assert_eq!(run.verbs(), ["CAPA", "STLS"]);
    assert_eq!(run.events.last(), Some(&Ev::Close(false, 0)));
}

#[test]
fn plaintext_injected_after_stls_ok_is_discarded() {
    let injected = "-ERR [AUTH] injected\r\n+OK\r\nSTLS\r\n.\r\n";
    let mut steps = vec![step("CAPA", CAPA_STLS), step("STLS", format!("+OK Begin TLS\r\n{injected}"))];
    steps.extend(login_steps().into_iter().skip(2));
    steps.extend([step("LIST", "+OK\r\n.\r\n"), step("UIDL", "+OK\r\n.\r\n"), step("QUIT", "+OK\r\n")]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Discarded(injected.len())), "{:?}", run.events);
    assert_eq!(run.verbs(), ["CAPA", "STLS", "CAPA", "USER", "PASS", "LIST", "UIDL", "QUIT"]);
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 0)));
}

#[test]
fn wrong_password_fails_and_quits() {
    for (reply, refusal) in [
        ("-ERR [AUTH] Authentication failed.\r\n", LoginRefusal::Credentials),
        ("-ERR [IN-USE] Mailbox locked\r\n", LoginRefusal::InUse),
        ("-ERR [SYS/TEMP] try later\r\n", LoginRefusal::Temporary),
        ("-ERR invalid password\r\n", LoginRefusal::Unspecified),
    ] {
        let mut steps = login_steps();
        steps.pop();
        steps.extend([step("PASS secret", reply), step("QUIT", "+OK\r\n")]);
        let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
        assert!(run.events.contains(&Ev::Failed(Failure::LoginRefused(refusal))), "{:?}", run.events);
        assert_eq!(run.verbs().last().map(String::as_str), Some("QUIT"));
        assert!(!run.sent("LIST"));
        assert_eq!(run.events.last(), Some(&Ev::Close(true, 0)));
    }
}

#[test]
fn user_refused() {
    let mut steps = login_steps();
    steps.truncate(3);
    steps.extend([step("USER", "-ERR no such user\r\n"), step("QUIT", "+OK\r\n")]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Failed(Failure::LoginRefused(LoginRefusal::Unspecified))));
    assert!(!run.sent("PASS"));
}

#[test]
fn invalid_password_is_never_sent() {
    let mut steps = login_steps();
    steps.pop();
    steps.push(step("QUIT", "+OK\r\n"));
    let options = Options { password: b"secret\r\nDELE 1".to_vec(), ..Options::default() };
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &options);
    assert!(run.events.contains(&Ev::Failed(Failure::InvalidPassword)));
    assert!(!run.sent("PASS") && !run.sent("DELE"));
    assert_eq!(run.verbs().last().map(String::as_str), Some("QUIT"));
}

#[test]
fn auth_plain_when_user_is_not_offered() {
    let steps = vec![
        step("CAPA", CAPA_STLS),
        step("STLS", "+OK\r\n"),
        step("CAPA", "+OK\r\nUIDL\r\nSASL PLAIN\r\n.\r\n"),
        // base64("\0user@example.org\0secret")
        step("AUTH PLAIN AHVzZXJAZXhhbXBsZS5vcmcAc2VjcmV0", "+OK\r\n"),
        step("LIST", "+OK\r\n.\r\n"),
        step("UIDL", "+OK\r\n.\r\n"),
        step("QUIT", "+OK\r\n"),
    ];
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.lines.iter().any(|(line, tls)| line.starts_with("AUTH PLAIN") && *tls));
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 0)));
}

#[test]
fn listing_parse_and_bounds() {
    let mut list = String::from("+OK 70 messages (a lot)\r\n");
    let mut uidl = String::from("+OK\r\n");
    for number in 1..=70 {
        list.push_str(&format!("{number} {}\r\n", number * 100));
        uidl.push_str(&format!("{number} uid-{number:04}\r\n"));
    }
    list.push_str(".\r\n");
    uidl.push_str(".\r\n");
    let mut steps = login_steps();
    steps.extend([step("LIST", &list), step("UIDL", &uidl)]);
    // The size limit is 10 000: messages 1..=64 are listed, 1..=99 fit; 65.. are not listed.
    let options = Options { seen: (1..=64).map(|n| format!("uid-{n:04}")).collect(), ..Options::default() };
    steps.extend((1..=64).map(|_| step("DELE", "+OK\r\n")));
    steps.push(step("QUIT", "+OK\r\n"));
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &options);
    let listed: Vec<_> = run.events.iter().filter(|event| matches!(event, Ev::Listed(..))).collect();
    assert_eq!(listed.len(), 64);
    assert_eq!(listed[0], &Ev::Listed(1, 100, "uid-0001".into()));
    assert!(run.events.contains(&Ev::ListingComplete(ListingSummary { messages: 70, listed: 64, complete: false })));
    // Seen messages are deleted without RETR; the incomplete listing prunes nothing.
    assert!(!run.sent("RETR"));
    assert_eq!(run.seen.len(), 64);
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 64)));
}

#[test]
fn odd_listings() {
    let mut steps = login_steps();
    steps.extend([
        step("LIST", "+OK\r\n1 10 extra\r\n2 20000\r\n3 30\r\n4 40\r\n.\r\n"),
        // 2 is too large, 3 has an invalid unique-id, 4 is listed twice, 9 is not in LIST.
        step("UIDL", "+OK\r\n1 one\r\n2 two\r\n3 bad\x01id\r\n4 four\r\n4 again\r\n9 nine\r\n.\r\n"),
        step("RETR 1", retr_reply(b"1\r\n")),
        step("DELE 1", "+OK\r\n"),
        step("RETR 4", retr_reply(b"4\r\n")),
        step("DELE 4", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Listed(1, 10, "one".into())));
    assert!(run.events.contains(&Ev::TooLarge(2, 20000, "two".into())));
    assert!(run.events.contains(&Ev::Listed(4, 40, "four".into())));
    assert!(run.events.contains(&Ev::ListingComplete(ListingSummary { messages: 4, listed: 3, complete: false })));
    assert_eq!(run.committed.len(), 2);
    assert!(!run.sent("RETR 2") && !run.sent("RETR 3"));
}

#[test]
fn malformed_listing_is_a_protocol_error() {
    for list in ["+OK\r\n1\r\n.\r\n", "+OK\r\nx 5\r\n.\r\n", "+OK\r\n0 5\r\n.\r\n"] {
        let mut steps = login_steps();
        steps.push(step("LIST", list));
        let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
        assert!(run.events.contains(&Ev::Failed(Failure::ProtocolError)), "{list:?}");
        assert_eq!(run.events.last(), Some(&Ev::Close(false, 0)));
    }
}

#[test]
fn uidl_refused_fails_the_run() {
    let mut steps = login_steps();
    steps.extend([
        step("LIST", "+OK\r\n1 5\r\n.\r\n"),
        step("UIDL", "-ERR not supported\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Failed(Failure::Refused(Stage::Uidl))));
    assert!(!run.sent("RETR"));
}

#[test]
fn retr_refused_goes_on() {
    let mut steps = login_steps();
    steps.extend(listing_steps());
    steps.extend([
        step("RETR 1", "-ERR no such message\r\n"),
        step("RETR 2", retr_reply(BODY_TWO)),
        step("DELE 2", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Refused(1, MessageCommand::Retrieve)));
    assert_eq!(run.committed.len(), 1);
    assert_eq!(run.events.last(), Some(&Ev::Close(true, 1)));
}

#[test]
fn body_larger_than_the_limit_is_aborted_and_the_run_goes_on() {
    let mut steps = login_steps();
    let big = "x".repeat(98) + "\r\n";
    let big = big.repeat(150); // 15 000 octets, listed as 90
    steps.extend(listing_steps());
    steps.extend([
        step("RETR 1", retr_reply(big.as_bytes())),
        step("RETR 2", retr_reply(BODY_TWO)),
        step("DELE 2", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Aborted(1, AbortReason::TooLarge)));
    let delivered: usize = run.events.iter().map(|event| if let Ev::Data(data) = event { data.len() } else { 0 }).sum();
    assert!(delivered <= 10_000 + BODY_TWO.len());
    assert_eq!(run.committed, [("QhdPYR:00WBw1Ph7x7".to_string(), BODY_TWO.to_vec())]);
}

#[test]
fn connection_lost_mid_retr_deletes_nothing() {
    let mut steps = login_steps();
    steps.extend(listing_steps());
    steps.extend([
        step("RETR 1", retr_reply(BODY_ONE)),
        step("DELE 1", "+OK\r\n"),
        step_then_close("RETR 2", "+OK\r\nSubject: two\r\n\r\nhalf a bo"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    let tail: Vec<_> = run.events.iter().rev().take(3).rev().cloned().collect();
    assert_eq!(
        tail,
        [Ev::Aborted(2, AbortReason::SessionFailed), Ev::Failed(Failure::ConnectionLost), Ev::Close(false, 0)]
    );
    // Message 1 was committed and remembered: the next run deletes it instead of fetching it.
    assert_eq!(run.committed.len(), 1);
    assert!(run.seen.contains("whqtswO00WBw418f9t5JxYwZ"));
    let mut steps = login_steps();
    steps.extend(listing_steps());
    steps.extend([
        step("DELE 1", "+OK\r\n"),
        step("RETR 2", retr_reply(BODY_TWO)),
        step("DELE 2", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let seen = run.seen.uidls();
    let second = drive(&config(TlsMode::StartTls), GREETING, steps, &Options { seen, ..Options::default() });
    assert_eq!(second.committed, [("QhdPYR:00WBw1Ph7x7".to_string(), BODY_TWO.to_vec())]);
    assert_eq!(second.events.last(), Some(&Ev::Close(true, 2)));
}

#[test]
fn quit_refused_means_deletions_not_final() {
    let mut steps = login_steps();
    steps.extend(listing_steps());
    steps.extend([
        step("RETR 1", retr_reply(BODY_ONE)),
        step("DELE 1", "+OK\r\n"),
        step("RETR 2", retr_reply(BODY_TWO)),
        step("DELE 2", "-ERR cannot\r\n"),
        step("QUIT", "-ERR some deleted messages not removed\r\n"),
    ]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert!(run.events.contains(&Ev::Refused(2, MessageCommand::Delete)));
    assert!(run.events.contains(&Ev::Failed(Failure::Refused(Stage::Quit))));
    assert_eq!(run.events.last(), Some(&Ev::Close(false, 0)));
}

#[test]
fn connection_lost_after_quit_is_not_final() {
    let mut steps = login_steps();
    steps.extend([step("LIST", "+OK\r\n.\r\n"), step("UIDL", "+OK\r\n.\r\n"), step_then_close("QUIT", "")]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    assert_eq!(run.events.last(), Some(&Ev::Close(false, 0)));
}

#[test]
fn greeting_refused_or_garbage() {
    let run = drive(&config(TlsMode::StartTls), b"-ERR go away\r\n", vec![], &Options::default());
    assert_eq!(run.events, [Ev::Failed(Failure::Refused(Stage::Greeting)), Ev::Close(false, 0)]);
    let run = drive(&config(TlsMode::StartTls), b"220 smtp.example ESMTP\r\n", vec![], &Options::default());
    assert_eq!(run.events, [Ev::Failed(Failure::ProtocolError), Ev::Close(false, 0)]);
    let long = [b"+OK ".as_slice(), &[b'a'; 600], b"\r\n"].concat();
    let run = drive(&config(TlsMode::StartTls), &long, vec![], &Options::default());
    assert_eq!(run.events, [Ev::Failed(Failure::ProtocolError), Ev::Close(false, 0)]);
}

#[test]
fn bare_lf_is_not_a_line_end() {
    // A status line ended by bare LF is never complete: the session waits and times out.
    let config = config(TlsMode::StartTls);
    let mut session = Pop3Session::new(&config, 0).unwrap();
    session.receive(b"+OK ready\n", 0);
    assert_eq!(session.poll(1000), None);
    assert!(session.output().is_empty());
    assert_eq!(session.poll(60_000), Some(Pop3Event::Failed(Failure::Timeout)));
    // In a body, bare LF is content (it ends neither a line nor the message), and it is
    // committed as CRLF.
    let mut steps = login_steps();
    steps.extend([
        step("LIST", "+OK\r\n1 10\r\n.\r\n"),
        step("UIDL", "+OK\r\n1 u\r\n.\r\n"),
        step("RETR 1", "+OK\r\na\n.\nb\r\n.\r\n"),
        step("DELE 1", "+OK\r\n"),
        step("QUIT", "+OK\r\n"),
    ]);
    let run = drive(&config, GREETING, steps, &Options::default());
    assert_eq!(run.committed, [("u".to_string(), b"a\r\n.\r\nb\r\n".to_vec())]);
}

/// A message served with bare LF and bare CR line ends and `.` lines after them (a mailbox
/// written by another program, or an attacker's smuggling attempt), in every chunking: the
/// committed body has CRLF line ends only, every line intact, and the session goes on with
/// the next message (no line after a bare line end was taken as the terminator or as a reply).
#[test]
fn bare_line_ends_in_a_body_are_normalised_to_crlf() {
    let served: &[u8] = b"Subject: smuggle\n\nfirst\n.\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\n.\r\n\
.leading dot\r\nlf line\n..two dots after lf\nold mac\rline\r\r\n..\r\r\nlast\r\n";
    let expected: &[u8] = b"Subject: smuggle\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.org>\r\n.\r\n\
leading dot\r\nlf line\r\n..two dots after lf\r\nold mac\r\nline\r\n\r\n.\r\n\r\nlast\r\n";
    let mut retr = b"+OK\r\n".to_vec();
    retr.extend_from_slice(served);
    retr.extend_from_slice(b".\r\n");
    let steps = || {
        let mut steps = login_steps();
        steps.extend([
            step("LIST", "+OK\r\n1 200\r\n2 5\r\n.\r\n"),
            step("UIDL", "+OK\r\n1 smuggle\r\n2 next\r\n.\r\n"),
            step("RETR 1", retr.clone()),
            step("DELE 1", "+OK\r\n"),
            step("RETR 2", "+OK\r\nok\r\n.\r\n"),
            step("DELE 2", "+OK\r\n"),
            step("QUIT", "+OK\r\n"),
        ]);
        steps
    };
    let config = config(TlsMode::StartTls);
    for chunks in [vec![], vec![1], vec![2], vec![3], vec![7, 1, 2], vec![64]] {
        let run = drive(&config, GREETING, steps(), &Options { chunks: chunks.clone(), ..Options::default() });
        assert_eq!(
            run.committed,
            [("smuggle".to_string(), expected.to_vec()), ("next".to_string(), b"ok\r\n".to_vec())],
            "chunks {chunks:?}: {:?}",
            String::from_utf8_lossy(&run.committed.first().map(|c| c.1.clone()).unwrap_or_default())
        );
        assert!(run.events.contains(&Ev::End(1, expected.len() as u64)), "{chunks:?}: {:?}", run.events);
        assert_eq!(run.events.last(), Some(&Ev::Close(true, 2)));
        assert_eq!(run.unused_steps, 0);
    }
}

#[test]
fn timeouts() {
    let config = Pop3Config { reply_timeout_ms: 5_000, ..config(TlsMode::Implicit) };
    let mut session = Pop3Session::new(&config, 100).unwrap();
    assert_eq!(session.deadline(), Some(5_100));
    assert_eq!(session.poll(5_099), None);
    assert_eq!(session.poll(5_100), Some(Pop3Event::Failed(Failure::Timeout)));
    assert_eq!(session.poll(5_100), Some(Pop3Event::Close { deletions_final: false, deleted: 0 }));
    assert!(session.is_finished());
    assert_eq!(session.poll(9_000), None);

    // Inside a body the timeout runs between chunks.
    let mut session = Pop3Session::new(&config, 0).unwrap();
    let mut now = 0;
    let feed = |session: &mut Pop3Session<'_>, bytes: &[u8], now: u64| {
        session.receive(bytes, now);
        let mut events = Vec::new();
        while let Some(event) = session.poll(now) {
            events.push(format!("{event:?}"));
        }
        let length = session.output().len();
        session.output_sent(length);
        events
    };
    feed(&mut session, GREETING, now);
    feed(&mut session, b"+OK\r\nUSER\r\n.\r\n", now);
    assert!(feed(&mut session, b"+OK\r\n", now).contains(&"PasswordNeeded".to_string()));
    session.send_password(b"pw", now).unwrap();
    feed(&mut session, b"+OK\r\n", now);
    feed(&mut session, b"+OK\r\n1 100000\r\n.\r\n", now);
    feed(&mut session, b"+OK\r\n1 u\r\n.\r\n", now);
    assert!(session.is_ready());
    assert_eq!(session.deadline(), None);
    assert_eq!(session.retrieve(1, now), Err(RequestError::TooLarge));
    assert_eq!(session.retrieve(2, now), Err(RequestError::UnknownMessage));
    now += 1;
    assert_eq!(session.delete(1, now), Ok(()));
    assert_eq!(session.deadline(), Some(now + 5_000));
}

#[test]
fn slow_body_stays_alive_while_data_flows() {
    let config = Pop3Config { reply_timeout_ms: 5_000, ..config(TlsMode::Implicit) };
    let mut session = Pop3Session::new(&config, 0).unwrap();
    let mut now = 0;
    for reply in [GREETING, b"+OK\r\n.\r\n", b"+OK\r\n"] {
        session.receive(reply, now);
        while session.poll(now).is_some() {}
        let length = session.output().len();
        session.output_sent(length);
    }
    session.send_password(b"pw", now).unwrap();
    for reply in [&b"+OK\r\n"[..], b"+OK\r\n1 500\r\n.\r\n", b"+OK\r\n1 u\r\n.\r\n"] {
        session.receive(reply, now);
        while session.poll(now).is_some() {}
    }
    session.retrieve(1, now).unwrap();
    session.receive(b"+OK\r\n", now);
    assert_eq!(session.poll(now), Some(Pop3Event::MessageBegin { number: 1, size: 500 }));
    // One line every 4 s: 40 s in all, never 5 s without data.
    let mut body = Vec::new();
    for _ in 0..10 {
        now += 4_000;
        session.receive(b"line\r\n", now);
        while let Some(event) = session.poll(now) {
            if let Pop3Event::MessageData(chunk) = event {
                body.extend_from_slice(chunk);
            } else {
                panic!("unexpected {event:?}");
            }
        }
    }
    session.receive(b".\r\n", now);
    assert_eq!(session.poll(now), Some(Pop3Event::MessageEnd { number: 1, octets: 60 }));
    assert_eq!(body, b"line\r\n".repeat(10));
    // Then silence: the QUIT reply never comes.
    session.finish(now).unwrap();
    assert_eq!(session.poll(now + 5_000), Some(Pop3Event::Failed(Failure::Timeout)));
}

#[test]
fn requests_out_of_turn_are_refused() {
    let config = config(TlsMode::Implicit);
    let mut session = Pop3Session::new(&config, 0).unwrap();
    assert_eq!(session.retrieve(1, 0), Err(RequestError::NotReady));
    assert_eq!(session.delete(1, 0), Err(RequestError::NotReady));
    assert_eq!(session.finish(0), Err(RequestError::NotReady));
    assert_eq!(session.send_password(b"pw", 0), Err(RequestError::NotReady));
    let bad = Pop3Config { username: "two words", ..config };
    assert!(Pop3Session::new(&bad, 0).is_err());
    let bad = Pop3Config { username: "", ..config };
    assert!(Pop3Session::new(&bad, 0).is_err());
}

#[test]
fn password_never_in_debug_output() {
    let config = config(TlsMode::Implicit);
    let mut session = Pop3Session::new(&config, 0).unwrap();
    for reply in [GREETING, b"+OK\r\nUSER\r\n.\r\n", b"+OK\r\n"] {
        session.receive(reply, 0);
        let mut events = Vec::new();
        while let Some(event) = session.poll(0) {
            events.push(format!("{event:?}"));
        }
        let length = session.output().len();
        session.output_sent(length);
        assert!(events.iter().all(|event| !event.contains("hunter2")));
    }
    session.send_password(b"hunter2", 0).unwrap();
    assert_eq!(session.output(), b"PASS hunter2\r\n");
    assert!(!format!("{session:?}").contains("hunter2"));
    assert!(!format!("{config:?}").contains("hunter2"));
    session.output_sent(5);
    assert_eq!(session.output(), b"hunter2\r\n");
    session.output_sent(9);
    assert!(session.output().is_empty());
    session.receive(b"-ERR [AUTH] no\r\n", 0);
    while let Some(event) = session.poll(0) {
        assert!(!format!("{event:?}").contains("hunter2"));
    }
}

#[test]
fn unsolicited_response_while_ready_is_a_protocol_error() {
    let mut steps = login_steps();
    steps.extend([step("LIST", "+OK\r\n1 5\r\n.\r\n"), step("UIDL", "+OK\r\n1 u\r\n.\r\n+OK surprise\r\n")]);
    let run = drive(&config(TlsMode::StartTls), GREETING, steps, &Options::default());
    // Taken as the reply to the next RETR, the surprise would turn the real reply into a body.
    assert!(run.events.contains(&Ev::Failed(Failure::ProtocolError)));
    assert!(!run.sent("RETR"));
    assert!(run.committed.is_empty());
}

#[test]
fn ram_figures() {
    // Printed for the README (`cargo test -p homemx-pop3 ram_figures -- --nocapture`).
    println!(
        "Pop3Session {} bytes, SeenRing {} bytes",
        std::mem::size_of::<Pop3Session<'_>>(),
        std::mem::size_of::<homemx_pop3::SeenRing>()
    );
    assert!(std::mem::size_of::<Pop3Session<'_>>() < 3 * 1024);
}
