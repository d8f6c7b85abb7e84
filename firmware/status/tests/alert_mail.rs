//! The alert mail: the rate limiter over simulated weeks, and the composed message's form
//! (CRLF only, headers then body, short ASCII lines, the required headers once each).

mod common;

use homemx_status::alert_mail::{
    is_valid_domain, CLOCK_FLOOR_UNIX, DAILY_LIMIT, DAY_MS, PER_KIND_INTERVAL_MS,
};
use homemx_status::{
    compose, AlertBoard, AlertKind, AlertMail, AlertMailer, ComposeError, MAIL_BUFFER_SIZE,
};
use proptest::prelude::*;

const MINUTE_MS: u64 = 60_000;
const WEEK_MS: u64 = 7 * DAY_MS;

/// One mail the simulation sent: when, and which kinds were fresh in it.
struct Sent {
    at_ms: u64,
    fresh: Vec<AlertKind>,
}

/// Runs a week minute by minute: `events(minute, board)` changes the board, then the mailer
/// is asked and every due mail is composed, checked and marked sent.
fn simulate(mut events: impl FnMut(u64, &mut AlertBoard)) -> Vec<Sent> {
    let mut board = AlertBoard::new();
    let mut mailer = AlertMailer::new();
    let mut sent = Vec::new();
    let mut buffer = vec![0u8; MAIL_BUFFER_SIZE];
    for minute in 0..WEEK_MS / MINUTE_MS {
        let now_ms = minute * MINUTE_MS;
        events(minute, &mut board);
        if let Some(mail) = mailer.due(&board, now_ms) {
            assert!(mail.fresh_count() >= 1);
            let length = compose(
                "example.org",
                &mail,
                Some(common::NOW + now_ms / 1000),
                minute,
                &mut buffer,
            )
            .expect("composes");
            check_message(std::str::from_utf8(&buffer[..length]).expect("UTF-8"));
            mailer.sent(&mail, now_ms);
            assert_eq!(
                mailer.due(&board, now_ms),
                None,
                "nothing due right after sending"
            );
            sent.push(Sent {
                at_ms: now_ms,
                fresh: mail
                    .alerts
                    .iter()
                    .filter(|m| m.fresh)
                    .map(|m| m.alert.kind)
                    .collect(),
            });
        }
    }
    sent
}

fn check_limits(sent: &[Sent]) {
    for (index, mail) in sent.iter().enumerate() {
        let in_window = sent[index..]
            .iter()
            .take_while(|later| later.at_ms < mail.at_ms + DAY_MS)
            .count();
        assert!(
            in_window <= DAILY_LIMIT,
            "{in_window} mails in the day from {} ms",
            mail.at_ms
        );
    }
    for kind in AlertKind::ALL {
        let times: Vec<u64> = sent
            .iter()
            .filter(|mail| mail.fresh.contains(&kind))
            .map(|mail| mail.at_ms)
            .collect();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= PER_KIND_INTERVAL_MS,
                "{kind:?} mailed at {pair:?}"
            );
        }
    }
}

#[test]
fn a_single_alert_is_mailed_at_once_and_once() {
    let sent = simulate(|minute, board| {
        if minute == 90 {
            board.raise(AlertKind::UnlockFailed, minute * MINUTE_MS);
        }
    });
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].at_ms, 90 * MINUTE_MS);
    assert_eq!(sent[0].fresh, vec![AlertKind::UnlockFailed]);
}

#[test]
fn a_condition_raised_every_minute_reminds_every_six_hours() {
    let sent = simulate(|minute, board| {
        board.raise(
            AlertKind::PeerUnreachable(homemx_status::Peer::Smarthost),
            minute * MINUTE_MS,
        );
    });
    check_limits(&sent);
    assert_eq!(sent.len(), 28, "4 a day for 7 days");
    assert!(sent
        .iter()
        .all(|mail| mail.at_ms % PER_KIND_INTERVAL_MS == 0));
}

#[test]
fn flapping_kinds_in_turn_hit_the_daily_cap() {
    // A different kind every 20 minutes, each cleared after 10: without the cap that is 72
    // mails a day.
    let sent = simulate(|minute, board| {
        let kind = AlertKind::ALL[(minute / 20) as usize % AlertKind::ALL.len()];
        match minute % 20 {
            0 => {
                board.raise(kind, minute * MINUTE_MS);
            }
            10 => {
                board.clear(kind);
            }
            _ => {}
        }
    });
    check_limits(&sent);
    assert_eq!(sent.len(), 7 * DAILY_LIMIT);
}

#[test]
fn a_raised_again_alert_waits_for_its_interval() {
    let sent = simulate(|minute, board| match minute {
        0 | 60 | 400 => {
            board.raise(AlertKind::NdnGenerated, minute * MINUTE_MS);
        }
        _ => {}
    });
    let times: Vec<u64> = sent.iter().map(|mail| mail.at_ms / MINUTE_MS).collect();
    // The raise at 60 min goes out when the 6 hours since the first mail are over (360), the
    // raise at 400 min 6 hours after that.
    assert_eq!(times, vec![0, 360, 720]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_weeks_respect_both_limits(events in proptest::collection::vec((0..7 * 24 * 60u64, 0..AlertKind::ALL.len(), any::<bool>()), 0..400)) {
        let mut events = events;
        events.sort();
        let mut next = 0;
        let sent = simulate(|minute, board| {
            while next < events.len() && events[next].0 == minute {
                let (_, kind, raise) = events[next];
                if raise {
                    board.raise(AlertKind::ALL[kind], minute * MINUTE_MS);
                } else {
                    board.clear(AlertKind::ALL[kind]);
                }
                next += 1;
            }
        });
        check_limits(&sent);
        // Liveness: the first raise of the week goes out at once (nothing was sent before).
        if let Some(first) = events.iter().find(|event| event.2) {
            prop_assert_eq!(sent.first().map(|mail| mail.at_ms), Some(first.0 * MINUTE_MS));
        }
    }
}

/// Checks the message's form; returns (headers, body).
fn check_message(message: &str) -> (Vec<(String, String)>, String) {
    assert!(message.is_ascii(), "7-bit only");
    let bytes = message.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'\n' {
            assert!(index > 0 && bytes[index - 1] == b'\r', "bare LF at {index}");
        }
        if byte == b'\r' {
            assert_eq!(bytes.get(index + 1), Some(&b'\n'), "bare CR at {index}");
        }
        assert!(
            byte >= 0x20 || byte == b'\r' || byte == b'\n',
            "control byte {byte:#x}"
        );
    }
    assert!(message.ends_with("\r\n"));
    let (head, body) = message
        .split_once("\r\n\r\n")
        .expect("blank line between headers and body");
    // Body lines are wrapped at 78; header lines only exceed it with a very long domain
    // (an address cannot be folded), and never reach RFC 5322's hard limit of 998.
    for line in head.split("\r\n") {
        assert!(line.len() < 998, "header line of {} characters", line.len());
    }
    for line in body.split("\r\n") {
        let one_word = !line.trim_start().contains(' ');
        assert!(
            line.len() <= 78 || (one_word && line.len() < 998),
            "line of {} characters: {line:?}",
            line.len()
        );
    }
    let mut headers = Vec::new();
    for line in head.split("\r\n") {
        let (name, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not a header: {line:?}"));
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{name:?}"
        );
        headers.push((name.to_string(), value.to_string()));
    }
    for required in [
        "Date",
        "From",
        "To",
        "Subject",
        "Message-ID",
        "Auto-Submitted",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ] {
        assert_eq!(
            headers.iter().filter(|(name, _)| name == required).count(),
            1,
            "{required} once"
        );
    }
    (headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(header, _)| header == name)
        .map(|(_, value)| value.as_str())
        .unwrap()
}

fn mail_of(kinds: &[AlertKind]) -> AlertMail {
    let board = common::board_of(kinds);
    AlertMailer::new().due(&board, 3 * 3_600_000).expect("due")
}

#[test]
fn the_message_has_the_required_headers_and_says_what_happened() {
    let mut board = common::board_of(&[AlertKind::StrippingSuspected, AlertKind::MxMismatch]);
    board.raise(AlertKind::StrippingSuspected, 7_000);
    let mail = AlertMailer::new().due(&board, 2 * 3_600_000).unwrap();
    let mut buffer = [0u8; MAIL_BUFFER_SIZE];
    let length = compose(
        "example.org",
        &mail,
        Some(1_700_000_000),
        0x1234_abcd,
        &mut buffer,
    )
    .unwrap();
    let message = std::str::from_utf8(&buffer[..length]).unwrap();
    println!("{message}");
    assert!(message.split("\r\n").all(|line| line.len() <= 78));
    let (headers, body) = check_message(message);
    assert_eq!(header(&headers, "Date"), "Tue, 14 Nov 2023 22:13:20 +0000");
    assert_eq!(
        header(&headers, "From"),
        "\"homemx\" <MAILER-DAEMON@example.org>"
    );
    assert_eq!(header(&headers, "To"), "<postmaster@example.org>");
    assert_eq!(
        header(&headers, "Subject"),
        "[homemx] 2 alerts: STARTTLS stripping suspected and 1 more"
    );
    assert_eq!(
        header(&headers, "Message-ID"),
        "<alert.000000001234abcd@example.org>"
    );
    assert_eq!(header(&headers, "Auto-Submitted"), "auto-generated");
    assert_eq!(
        header(&headers, "Content-Type"),
        "text/plain; charset=utf-8"
    );
    assert!(body.contains("* NEW: STARTTLS stripping suspected\r\n"));
    assert!(body.contains(
        "  Seen 2 times, first 2 h ago, last 1 h 59 min ago (at 2023-11-14 20:13 UTC).\r\n"
    ));
    assert!(body.contains("* NEW: MX does not point here\r\n  Seen once, 1 h 59 min ago"));
    assert!(body.contains("reports 2 active alerts (2 new since\r\nthe last alert mail).\r\n"));
    assert!(!body.contains("clock is not set"));
}

#[test]
fn without_a_clock_the_date_is_the_floor_and_the_body_says_so() {
    let mail = mail_of(&[AlertKind::PeerUnreachable(homemx_status::Peer::Time)]);
    let mut buffer = [0u8; MAIL_BUFFER_SIZE];
    let length = compose("example.org", &mail, None, 1, &mut buffer).unwrap();
    let (headers, body) = check_message(std::str::from_utf8(&buffer[..length]).unwrap());
    assert_eq!(header(&headers, "Date"), "Thu, 1 Jan 2026 00:00:00 +0000");
    assert_eq!(CLOCK_FLOOR_UNIX, 1_767_225_600);
    assert_eq!(
        header(&headers, "Subject"),
        "[homemx] Time server unreachable"
    );
    assert!(body.contains("clock is not set yet"));
    assert!(!body.contains("(at "));
}

#[test]
fn only_plain_domains_are_accepted() {
    let mail = mail_of(&[AlertKind::UnlockFailed]);
    let mut buffer = [0u8; MAIL_BUFFER_SIZE];
    let long_label = "a".repeat(64);
    let too_long = ["a".repeat(63).as_str(); 4].join(".") + ".b";
    for bad in [
        "",
        "exa mple.org",
        "example.org\r\nBcc: x@evil.example",
        "-a.org",
        "a-.org",
        "a..org",
        ".org",
        "org.",
        "ex@mple.org",
        "bücher.example",
        long_label.as_str(),
        too_long.as_str(),
    ] {
        assert!(!is_valid_domain(bad), "{bad:?}");
        assert_eq!(
            compose(bad, &mail, Some(0), 0, &mut buffer),
            Err(ComposeError::InvalidDomain),
            "{bad:?}"
        );
    }
    for good in [
        "example.org",
        "localhost",
        "xn--bcher-kva.example",
        "a1-b2.c3",
    ] {
        assert!(is_valid_domain(good), "{good:?}");
    }
    let empty = AlertMail {
        now_ms: 0,
        alerts: heapless::Vec::new(),
        dropped: 0,
    };
    assert_eq!(
        compose("example.org", &empty, Some(0), 0, &mut buffer),
        Err(ComposeError::NoAlerts)
    );
    assert_eq!(
        compose("example.org", &mail, Some(0), 0, &mut buffer[..100]),
        Err(ComposeError::Overflow)
    );
}

#[test]
fn the_largest_mail_fits_the_buffer() {
    let domain = ["a".repeat(63).as_str(); 4]
        .join(".")
        .get(..253)
        .unwrap()
        .to_string();
    let domain = domain.trim_end_matches('.').to_string();
    assert!(is_valid_domain(&domain), "{}", domain.len());
    let mut largest = 0;
    let mut buffer = vec![0u8; MAIL_BUFFER_SIZE];
    for kinds in common::combinations(homemx_status::MAX_ALERTS) {
        let snapshot = common::largest('x', &kinds);
        let mut mail = AlertMailer::new().due(&snapshot.alerts, u64::MAX).unwrap();
        mail.dropped = u32::MAX;
        for date in [None, Some(u64::MAX / 1000)] {
            let length = compose(&domain, &mail, date, u64::MAX, &mut buffer).expect("fits");
            largest = largest.max(length);
            if kinds[0] == AlertKind::ALL[0] {
                check_message(std::str::from_utf8(&buffer[..length]).unwrap());
            }
        }
    }
    println!("largest alert mail: {largest} bytes (buffer {MAIL_BUFFER_SIZE})");
    assert!(largest + 8 * 7 <= MAIL_BUFFER_SIZE);
}

#[test]
fn no_secrets_or_contents_in_the_mail() {
    // The mail is built from the alert kinds' constant texts, counts and times only; check
    // that nothing looks like an address other than the two header addresses.
    let mail = mail_of(&AlertKind::ALL[..8]);
    let mut buffer = [0u8; MAIL_BUFFER_SIZE];
    let length = compose("example.org", &mail, Some(1_700_000_000), 7, &mut buffer).unwrap();
    let (_, body) = check_message(std::str::from_utf8(&buffer[..length]).unwrap());
    assert!(!body.contains('@'));
}
