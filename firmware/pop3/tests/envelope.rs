//! `envelope_recipient` against real-world header forms (Postfix, Exim, qmail, Dovecot,
//! Gmail, Microsoft) and hostile ones.

use homemx_pop3::envelope_recipient;

const NAMES: &[&str] = &["Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To"];

fn find(header: &str) -> Option<String> {
    envelope_recipient(header.as_bytes(), NAMES).map(|address| address.as_str().to_string())
}

#[test]
fn real_world_forms() {
    let cases: &[(&str, Option<&str>)] = &[
        ("Delivered-To: alice@example.org\r\n\r\n", Some("alice@example.org")),
        ("Delivered-To: Alice.Smith@Example.ORG\r\n", Some("Alice.Smith@example.org")),
        ("X-Original-To: bob@example.org\r\n", Some("bob@example.org")),
        ("Envelope-to: carol@example.org\r\n", Some("carol@example.org")),
        ("Envelope-To: carol@example.org, dave@example.org\r\n", Some("carol@example.org")),
        ("X-Envelope-To: <erin@example.org>\r\n", Some("erin@example.org")),
        ("delivered-to: lower@example.org\r\n", Some("lower@example.org")),
        ("DELIVERED-TO: upper@example.org\r\n", Some("upper@example.org")),
        ("Delivered-To : spaced@example.org\r\n", Some("spaced@example.org")),
        ("Delivered-To:nospace@example.org\r\n", Some("nospace@example.org")),
        ("Delivered-To:\r\n folded@example.org\r\n", Some("folded@example.org")),
        ("Delivered-To: \"Frank\r\n\t Doe\" <frank@example.org>\r\n", Some("frank@example.org")),
        ("Delivered-To: Frank Doe <frank@Example.org>\r\n", Some("frank@example.org")),
        ("Delivered-To: \"Doe, Frank\" <frank@example.org>\r\n", Some("frank@example.org")),
        ("Delivered-To: frank@example.org (Frank Doe)\r\n", Some("frank@example.org")),
        ("Delivered-To: (via backup (mx2)) <frank@example.org> (x)\r\n", Some("frank@example.org")),
        ("Delivered-To: frank(c1)@(c2)example.org\r\n", Some("frank@example.org")),
        ("Delivered-To: frank @ example.org\r\n", Some("frank@example.org")),
        ("Delivered-To: <@relay.example,@mx.example:grace@example.org>\r\n", Some("grace@example.org")),
        ("Delivered-To: \"odd local\"@example.org\r\n", Some("\"odd local\"@example.org")),
        ("Delivered-To: \"a@b\"@example.org\r\n", Some("\"a@b\"@example.org")),
        ("Delivered-To: user+tag@example.org\r\n", Some("user+tag@example.org")),
        ("Delivered-To: example.org-alice@example.org\r\n", Some("example.org-alice@example.org")),
        ("Delivered-To: root@[192.0.2.1]\r\n", Some("root@[192.0.2.1]")),
        ("Delivered-To: alice@example.org.\r\n", Some("alice@example.org")),
        ("Delivered-To: jörg@exämple.org\r\n", Some("jörg@exämple.org")),
        ("Delivered-To: Team: heidi@example.org, ivan@example.org;\r\n", Some("heidi@example.org")),
        ("Delivered-To: alice@example.org   \r\n", Some("alice@example.org")),
        ("Delivered-To: alice@example.org\n\n", Some("alice@example.org")),
        // Not addresses.
        ("Delivered-To: alice\r\n", None),
        ("Delivered-To: <>\r\n", None),
        ("Delivered-To: undisclosed-recipients:;\r\n", None),
        ("Delivered-To: @example.org\r\n", None),
        ("Delivered-To: alice@\r\n", None),
        ("Delivered-To: .alice@example.org\r\n", None),
        ("Delivered-To: alice@exa mple.org\r\n", None),
        ("Delivered-To: Alice Smith alice@example.org\r\n", None),
        ("Delivered-To: <alice@example.org\r\n", None),
        ("Delivered-To: \"unterminated@example.org\r\n", None),
        ("Delivered-To: alice@example..org\r\n", None),
        ("Delivered-To: alice@-\x01.org\r\n", None),
        ("X-Delivered-To: alice@example.org\r\n", None),
        ("Delivered-To-X: alice@example.org\r\n", None),
        ("", None),
    ];
    for &(header, expected) in cases {
        assert_eq!(find(header).as_deref(), expected, "{header:?}");
    }
}

#[test]
fn only_the_header_section_counts() {
    assert_eq!(find("Subject: x\r\n\r\nDelivered-To: alice@example.org\r\n"), None);
    assert_eq!(find("Subject: x\n\nDelivered-To: alice@example.org\n"), None);
    // A body line indented like a continuation does not join the header either.
    assert_eq!(find("Delivered-To: alice\r\n\r\n @example.org\r\n"), None);
}

#[test]
fn configured_order_and_topmost_occurrence() {
    let header = "Received: from mx2.provider.example\r\n\
                  X-Original-To: second@example.org\r\n\
                  Delivered-To: first@example.org\r\n\
                  Delivered-To: older@example.org\r\n\
                  Subject: hi\r\n\r\nbody";
    assert_eq!(find(header).as_deref(), Some("first@example.org"));
    let header = header.as_bytes();
    let address = envelope_recipient(header, &["X-Original-To", "Delivered-To"]).unwrap();
    assert_eq!(address.as_str(), "second@example.org");
    assert!(envelope_recipient(header, &[]).is_none());
    assert!(envelope_recipient(header, &["Envelope-To"]).is_none());
}

#[test]
fn an_unparseable_field_falls_through_to_the_next() {
    let header = "Delivered-To: nobody\r\nDelivered-To: alice@example.org\r\n";
    assert_eq!(find(header).as_deref(), Some("alice@example.org"));
    let header = "Delivered-To: garbage\r\nX-Original-To: bob@example.org\r\n";
    assert_eq!(find(header).as_deref(), Some("bob@example.org"));
}

#[test]
fn mbox_from_line_and_odd_lines_are_skipped() {
    let header = "From alice@example.org Mon Jan  1 00:00:00 2024\r\n\
                  no colon here\r\n\
                  Delivered-To: bob@example.org\r\n";
    assert_eq!(find(header).as_deref(), Some("bob@example.org"));
    assert_eq!(find(" leading continuation: x\r\nDelivered-To: c@example.org\r\n").as_deref(), Some("c@example.org"));
}

#[test]
fn length_limits() {
    let local = "a".repeat(64);
    let domain = format!("{}.example", "b".repeat(180));
    let fits = format!("{local}@{domain}");
    assert!(fits.len() <= 254);
    assert_eq!(find(&format!("Delivered-To: {fits}\r\n")).as_deref(), Some(fits.as_str()));
    let too_long = format!("{local}@{}.example", "b".repeat(200));
    assert_eq!(find(&format!("Delivered-To: {too_long}\r\n")), None);
    let huge = format!("Delivered-To: <a@example.org> ({})\r\n", "c".repeat(2000));
    assert_eq!(find(&huge), None);
}
