//! Table tests: relay tricks (each refused, with its code) and SMTP smuggling variants (each
//! refused, never an end of data or a command boundary).

mod common;

use common::*;

/// (recipient as sent by a WAN client, expected reply line prefix, why). A LAN client gets
/// [`NO_OUTBOUND`] instead of the plain relay denial: these sessions have no smarthost.
const RELAY_TRICKS: &[(&str, &str, &str)] = &[
    ("<user@foreign.example>", "550 5.7.1 Relay access denied", "plain foreign domain"),
    ("<alice@sub.example.org>", "550 5.7.1 Relay access denied", "subdomain is foreign"),
    ("<alice@notexample.org>", "550 5.7.1 Relay access denied", "suffix match is not a match"),
    ("<alice@example.org.evil.example>", "550 5.7.1 Relay access denied", "prefix match is not a match"),
    ("<user%foreign.example@example.org>", "550 5.7.1 Relay access denied: % in local part", "percent hack"),
    ("<alice%foreign.example@example.org>", "550 5.7.1 Relay access denied: % in local part", "percent hack, known user"),
    ("<foreign.example!user@example.org>", "550 5.7.1 Relay access denied: ! in local part", "bang path"),
    ("<\"user@foreign.example\"@example.org>", "550 5.7.1 Relay access denied: @ in local part", "quoted @"),
    ("<\"user\\@foreign.example\"@example.org>", "550 5.7.1 Relay access denied: @ in local part", "quoted-pair @"),
    ("<\"user%foreign.example\"@example.org>", "550 5.7.1 Relay access denied: % in local part", "quoted %"),
    ("<\"alice bob\"@example.org>", "550 5.7.1 Relay access denied: unusual quoted local part", "quoted space"),
    ("<@example.org:user@foreign.example>", "550 5.7.1 Relay access denied: source routes not accepted", "source route out"),
    ("<@foreign.example:alice@example.org>", "550 5.7.1 Relay access denied: source routes not accepted", "source route in"),
    ("<@a.example,@b.example:user@c.example>", "550 5.7.1 Relay access denied: source routes not accepted", "multi-hop route"),
    ("<alice@[192.0.2.1]>", "550 5.7.1 Relay access denied: address literals not accepted", "IPv4 literal"),
    ("<alice@[IPv6:2001:db8::1]>", "550 5.7.1 Relay access denied: address literals not accepted", "IPv6 literal"),
    ("<user@foreign.example@example.org>", "501 5.1.3 Bad recipient address syntax", "double @"),
    ("<user@example.org@foreign.example>", "501 5.1.3 Bad recipient address syntax", "double @ reversed"),
    ("<alice@example.org.>", "501 5.1.3 Bad recipient address syntax", "trailing dot"),
    ("<alice@example..org>", "501 5.1.3 Bad recipient address syntax", "empty label"),
    ("<user>", "501 5.1.3 Bad recipient address syntax", "bare local part"),
    ("<\"user@foreign.example\">", "501 5.1.3 Bad recipient address syntax", "quoted address without domain"),
    ("user@foreign.example", "501 5.1.3 Bad recipient address syntax", "no angle brackets"),
    ("<user@foreign.example", "501 5.1.3 Bad recipient address syntax", "unclosed bracket"),
    ("<user@foreign.example>>", "501 5.5.4 Syntax error", "trailing junk"),
    ("<us\u{e9}r@example.org>", "501 5.1.3 Bad recipient address syntax", "8-bit local part without SMTPUTF8"),
    ("<nobody@example.org>", "550 5.1.1 Recipient address rejected: user unknown", "unknown recipient"),
    ("<NoBody@EXAMPLE.ORG>", "550 5.1.1 Recipient address rejected: user unknown", "unknown, any case"),
];

/// Recipients that must be accepted (so the table above is not refusing everything).
const ACCEPTED: &[&str] = &[
    "<alice@example.org>",
    "<ALICE@Example.Org>",
    "<\"alice\"@example.org>",
    "<postmaster@example.org>",
    "<POSTMASTER@example.org>",
    "<abuse@example.org>",
    "<Postmaster>",
    "<postmaster>",
];

/// A LAN client's reply for a plain foreign domain while no smarthost is configured.
const NO_OUTBOUND: &str = "550 5.7.1 outbound mail is not configured";

fn recipient_reply(recipient: &str, client: &'static str) -> Transcript {
    let script = format!("EHLO c.example\r\nMAIL FROM:<someone@remote.example>\r\nRCPT TO:{recipient}\r\nRSET\r\n");
    run(Options { client, ..Options::default() }, &[script.as_bytes()])
}

#[test]
fn relay_tricks_are_refused() {
    for &(recipient, expected, why) in RELAY_TRICKS {
        for client in [WAN, LAN] {
            let transcript = recipient_reply(recipient, client);
            let lines = transcript.lines();
            let reply = &lines[lines.len() - 2];
            let expected = if client == LAN && expected == "550 5.7.1 Relay access denied" { NO_OUTBOUND } else { expected };
            assert!(reply.starts_with(expected), "{why}: {recipient} from {client} got {reply:?}");
            assert!(!transcript.has_event("RecipientAccepted"), "{why}");
            assert!(transcript.has_event("Refused"), "{why}: refusal must be logged");
        }
    }
}

#[test]
fn relay_attempts_are_logged_with_their_reason() {
    assert!(recipient_reply("<user%foreign.example@example.org>", WAN).has_event("RelayTrick(PercentHack)"));
    assert!(recipient_reply("<foreign.example!user@example.org>", WAN).has_event("RelayTrick(BangPath)"));
    assert!(recipient_reply("<@x.example:user@example.org>", WAN).has_event("RelayTrick(SourceRoute)"));
    assert!(recipient_reply("<\"a@b.example\"@example.org>", WAN).has_event("RelayTrick(QuotedAt)"));
    assert!(recipient_reply("<user@foreign.example>", WAN).has_event("RelayDenied"));
    assert!(recipient_reply("<user@foreign.example>", LAN).has_event("OutboundNotConfigured"));
    assert!(recipient_reply("<nobody@example.org>", WAN).has_event("UnknownRecipient"));
}

#[test]
fn local_recipients_are_accepted() {
    for recipient in ACCEPTED {
        let transcript = recipient_reply(recipient, WAN);
        let lines = transcript.lines();
        assert_eq!(lines[lines.len() - 2], "250 2.1.5 Recipient OK", "{recipient}");
    }
}

/// Message data variants that try to end DATA or start a command with bare CR or LF.
const SMUGGLING: &[(&str, &str)] = &[
    ("\\n.\\n", "Subject: a\r\n\r\nbody\n.\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\r.\\r", "Subject: a\r\n\r\nbody\r.\rMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\r\\n.\\n", "Subject: a\r\n\r\nbody\r\n.\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\n.\\r\\n", "Subject: a\r\n\r\nbody\n.\r\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\r.\\r\\n", "Subject: a\r\n\r\nbody\r.\r\nMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\r\\n.\\r", "Subject: a\r\n\r\nbody\r\n.\rMAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@example.org>\r\n"),
    ("\\r\\r\\n.\\r\\r\\n", "Subject: a\r\n\r\nbody\r\r\n.\r\r\nMAIL FROM:<x@evil.example>\r\n"),
    ("bare LF inside a line", "Subject: a\r\n\r\nfirst\nsecond\r\n"),
    ("bare CR inside a line", "Subject: a\r\n\r\nfirst\rsecond\r\n"),
    ("bare LF in a header", "Subject: a\nBcc: x@evil.example\r\n\r\nbody\r\n"),
    ("LF line ends only", "Subject: a\n\nbody\n"),
    ("CR at the very end", "body\r\n\r"),
];

#[test]
fn smuggling_variants_are_refused_and_never_end_data() {
    for &(name, data) in SMUGGLING {
        // The smuggled content, then the real end of data, then a real command.
        let script = format!(
            "EHLO c.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{data}\r\n.\r\nNOOP\r\n"
        );
        for chunking in [0usize, 1, 2, 7] {
            let chunks: Vec<&[u8]> = if chunking == 0 {
                vec![script.as_bytes()]
            } else {
                script.as_bytes().chunks(chunking).collect()
            };
            let transcript = run(Options::default(), &chunks);
            let lines = transcript.lines();
            assert_eq!(
                lines[lines.len() - 2..],
                ["554 5.5.2 Message refused: bare CR or LF in data, only CRLF ends a line", "250 2.0.0 Ok"],
                "{name} chunk {chunking}"
            );
            // Exactly one transaction started: the smuggled MAIL was never a command.
            assert_eq!(transcript.events.iter().filter(|e| e.contains("TransactionStarted")).count(), 1, "{name}");
            assert!(transcript.messages.is_empty(), "{name}");
            assert!(transcript.has_event("TransactionAborted(Refused(BareLineEnding))"), "{name}");
            assert!(transcript.has_event("reason: BareLineEnding, code: 554"), "{name}");
        }
    }
}

#[test]
fn lookalike_terminators_inside_a_clean_message_are_data() {
    // Stuffed dots and dots inside lines are data; only CRLF.CRLF ends.
    let data = "..\r\n.a\r\n a.\r\n...\r\n. \r\n";
    let script = format!("EHLO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{data}.\r\n");
    let transcript = run_script(&script);
    assert_eq!(body_of(&transcript.messages[0]), b".\r\na\r\n a.\r\n..\r\n \r\n");
}
