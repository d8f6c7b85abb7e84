//! Inbound TLS on port 25, end to end, on one booted appliance with its self-signed
//! certificate (the clock set by SNTP):
//!
//! 1. A real sending MTA (Debian's Postfix, `smtp_tls_security_level = encrypt`) delivers to
//!    the appliance: the message reaches the LAN mailbox host, and Postfix's log shows TLS 1.3
//!    with ChaCha20-Poly1305 (the device's preference over Postfix's AES-first order); again
//!    with Postfix limited to TLS 1.2: TLS 1.2 with an ECDHE suite, ChaCha20-Poly1305 again.
//! 2. STARTTLS injection (CVE-2011-0411 class): `STARTTLS\r\nRSET\r\n` in one write; the RSET
//!    is answered neither before the switch nor inside TLS (the first reply inside TLS is the
//!    one to our own command); the EHLO state is reset by the handshake (MAIL before EHLO is
//!    `503`); inside TLS, EHLO offers no STARTTLS and a second STARTTLS is refused; port 25
//!    never offers AUTH.
//! 3. Bad handshakes (a ClientHello of garbage, half a ClientHello, a client that never sends
//!    its Finished): garbage is dropped at once (on 25 and 465), the stalled ones within the handshake
//!    timeout; meanwhile a plaintext sender on port 25 gets its `250` and `/health` answers.
//! 4. TLS slots exhausted by stalled handshakes: the next STARTTLS gets `454 4.7.0`, port 465
//!    answers `421`; once the timeout frees the slots, STARTTLS works again.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use homemx_qemu::network::{APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::peers::{connect_from, health, send_mail};
use homemx_qemu::postfix_sender::{PostfixSender, PostfixSenderConfig, TlsSession};
use homemx_qemu::tls_listeners::{HeldHandshake, TlsAppliance, SMTP, SUBMISSION, SUBMISSIONS};
use serde_json::Value;

/// The longest a stalled handshake may hold its slot: the device's handshake timeout
/// (`HANDSHAKE_TIMEOUT` in `firmware/services/src/inbound_tls.rs`, 20 s) plus the emulator's
/// slack.
const HANDSHAKE_TIMEOUT_LIMIT: Duration = Duration::from_secs(30);
/// How long a bad client waits for the device to close its connection before it reports that
/// it did not.
const HOLD_SECONDS: u64 = 40;
/// Further WAN clients: each bad handshake and each client beside them from an address of its
/// own (none used twice), so no per-address limit or ban is what answers it.
const WAN_CLIENTS: [Ipv4Addr; 10] = [
    Ipv4Addr::new(203, 0, 113, 21),
    Ipv4Addr::new(203, 0, 113, 22),
    Ipv4Addr::new(203, 0, 113, 23),
    Ipv4Addr::new(203, 0, 113, 24),
    Ipv4Addr::new(203, 0, 113, 25),
    Ipv4Addr::new(203, 0, 113, 31),
    Ipv4Addr::new(203, 0, 113, 32),
    Ipv4Addr::new(203, 0, 113, 33),
    Ipv4Addr::new(203, 0, 113, 34),
    Ipv4Addr::new(203, 0, 113, 35),
];

fn message(subject: &str) -> Vec<u8> {
    format!("From: Sender <someone@sender.example>\r\nTo: Alice <alice@example.org>\r\nSubject: {subject}\r\n\r\nsent with TLS required\r\n").into_bytes()
}

/// Has Postfix relay one message to the appliance with `tls_protocols`; returns the TLS session
/// Postfix logged, after the message reached the mailbox host (as message number `count`).
fn deliver_with_postfix(appliance: &TlsAppliance, label: &str, tls_protocols: &str, count: usize) -> TlsSession {
    let mut config = PostfixSenderConfig::new(SocketAddrV4::new(WAN_CLIENT, 25), SocketAddrV4::new(APPLIANCE, SMTP));
    config.tls_protocols = tls_protocols.to_string();
    let mut postfix = PostfixSender::start(appliance.namespace(), &config, &appliance.directory.join(label)).expect("Postfix starts");
    let file = appliance.directory.join(format!("{label}.eml"));
    std::fs::write(&file, message(label)).unwrap();
    let reply = send_mail(appliance.namespace(), WAN_CLIENT, config.listen, "someone@sender.example", &["alice@example.org"], &file, false)
        .expect("the SMTP client runs");
    assert_eq!(reply["data"][0], 250, "Postfix took the message: {reply}");
    // The first delivery attempt's outcome: sent, or deferred because TLS failed.
    let sent = postfix.wait_for_log(&["status=sent", "status=deferred"], Duration::from_secs(90)).unwrap_or_else(|error| panic!("{label}: {error}"));
    assert!(sent.contains("status=sent"), "{label}: Postfix could not deliver with TLS required: {sent}");
    assert!(sent.contains(&format!("relay={APPLIANCE}[{APPLIANCE}]:25")), "{sent}");
    let messages = appliance.mailbox.wait_for_messages(count, Duration::from_secs(60)).expect("the message reaches the mailbox host");
    let body = String::from_utf8_lossy(&messages[count - 1].0).to_string();
    assert!(body.contains(&format!("Subject: {label}")), "{body}");
    let sessions = postfix.tls_sessions();
    postfix.stop();
    assert_eq!(sessions.len(), 1, "one TLS session in Postfix's log: {sessions:?}");
    assert!(!postfix.log().contains("TLS is required, but"), "{}", postfix.log());
    eprintln!("Postfix ({tls_protocols}): {}", sessions[0].line);
    sessions[0].clone()
}

fn first_line(reply: &Value) -> String {
    reply[0].as_str().unwrap_or("").to_string()
}

fn last_line(reply: &Value) -> String {
    reply.as_array().and_then(|lines| lines.last()).and_then(Value::as_str).unwrap_or("").to_string()
}

fn lines(reply: &Value) -> Vec<String> {
    reply.as_array().map(|lines| lines.iter().filter_map(|line| line.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// `/health` answers within a second.
fn assert_health_prompt(appliance: &TlsAppliance, context: &str) {
    let (_, elapsed) = health(&appliance.network).unwrap_or_else(|error| panic!("/health {context}: {error}"));
    assert!(elapsed < Duration::from_secs(1), "/health {context} took {elapsed:?}");
}

/// A session with STARTTLS on port 25 that must succeed: its report.
fn tls_session(appliance: &TlsAppliance, source: Ipv4Addr) -> Value {
    let report = appliance.probe(source, SMTP, &["--quiet-seconds", "0.5"]).expect("probe runs");
    assert!(report["version"].is_string(), "a TLS session on port 25: {report}");
    assert!(first_line(&report["ehlo_in_tls"]).starts_with("250"), "{report}");
    report
}

/// Waits for the held handshakes' ends; each must have been closed by the device within
/// [`HANDSHAKE_TIMEOUT_LIMIT`] of its bad input.
fn assert_closed_within_timeout(holds: Vec<HeldHandshake>) -> Vec<f64> {
    holds
        .into_iter()
        .map(|hold| {
            let (mode, port) = (hold.mode.clone(), hold.port);
            let report = hold.finish().expect("the hold reports");
            let closed = report["closed_after_seconds"].as_f64();
            assert!(
                closed.is_some_and(|seconds| seconds <= HANDSHAKE_TIMEOUT_LIMIT.as_secs_f64()),
                "a {mode} handshake on port {port} must lose its slot within {HANDSHAKE_TIMEOUT_LIMIT:?}: {report}"
            );
            closed.unwrap()
        })
        .collect()
}

#[test]
fn port_25_takes_mail_over_tls_resists_injection_and_bad_handshakes() {
    let started = Instant::now();
    let appliance = TlsAppliance::boot("inbound-tls", &["alice@example.org", "bob@example.org"], "").expect("the appliance boots with its certificate");
    for address in WAN_CLIENTS {
        appliance.network.add_client_address(address).unwrap();
    }
    eprintln!("booted, provisioned, certificate made in {:.0} s", started.elapsed().as_secs_f64());

    // 1. Postfix with TLS required: TLS 1.3, then TLS 1.2 only.
    let tls13 = deliver_with_postfix(&appliance, "postfix-tls13", "!SSLv2, !SSLv3", 1);
    assert_eq!(tls13.version, "TLSv1.3", "{}", tls13.line);
    assert_eq!(tls13.cipher, "TLS_CHACHA20_POLY1305_SHA256", "the device prefers ChaCha20 (Postfix offers AES-GCM first): {}", tls13.line);
    let tls12 = deliver_with_postfix(&appliance, "postfix-tls12", "!SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.3", 2);
    assert_eq!(tls12.version, "TLSv1.2", "{}", tls12.line);
    assert!(tls12.cipher.starts_with("ECDHE-"), "forward secrecy: {}", tls12.line);
    assert!(tls12.cipher.ends_with("-GCM-SHA256") || tls12.cipher.ends_with("-GCM-SHA384") || tls12.cipher.ends_with("-CHACHA20-POLY1305"), "AEAD: {}", tls12.line);
    assert_eq!(tls12.cipher, "ECDHE-ECDSA-CHACHA20-POLY1305", "the device prefers ChaCha20 in TLS 1.2 too: {}", tls12.line);
    eprintln!("section 1 (Postfix, TLS 1.3 and 1.2) done at {:.0} s", started.elapsed().as_secs_f64());

    // 2. STARTTLS injection; EHLO state reset; no second STARTTLS; no AUTH on port 25.
    let report = appliance.probe(WAN_CLIENT, SMTP, &["--inject", "--quiet-seconds", "3", "--first-in-tls", "MAIL FROM:<someone@sender.example>", "--second-starttls"]).unwrap();
    let ehlo = lines(&report["ehlo"]);
    assert!(ehlo.iter().any(|line| line.ends_with("STARTTLS")), "port 25 offers STARTTLS: {report}");
    assert!(ehlo.iter().all(|line| !line.contains("AUTH")), "no AUTH on port 25: {report}");
    assert!(last_line(&report["starttls"]).starts_with("220"), "{report}");
    assert_eq!(report["plaintext_after_starttls"], "", "the injected RSET is not answered before the switch: {report}");
    assert!(report["version"].is_string(), "the handshake completes: {report}");
    assert_eq!(report["unsolicited"], "", "the injected RSET is never answered inside TLS: {report}");
    assert!(last_line(&report["first_in_tls"]).starts_with("503 5.5.1"), "the EHLO state is reset by the handshake: {report}");
    let ehlo_in_tls = lines(&report["ehlo_in_tls"]);
    assert!(ehlo_in_tls.first().is_some_and(|line| line.starts_with("250")), "{report}");
    assert!(ehlo_in_tls.iter().all(|line| !line.contains("STARTTLS") && !line.contains("AUTH")), "inside TLS: no STARTTLS, no AUTH on 25: {report}");
    assert!(last_line(&report["second_starttls"]).starts_with("503"), "a second STARTTLS is refused: {report}");
    assert!(last_line(&report["quit"]).starts_with("221"), "the session goes on after the refusal: {report}");
    eprintln!("section 2 (injection) done at {:.0} s", started.elapsed().as_secs_f64());

    // 3. Bad handshakes: garbage is dropped at once; the stalled ones hold a slot until the
    //    handshake timeout, while a plaintext sender and /health are served.
    let garbage = appliance.hold(WAN_CLIENTS[0], SMTP, "garbage", HOLD_SECONDS).unwrap();
    assert!(garbage.held(), "STARTTLS accepted: {}", garbage.first);
    let implicit_garbage = appliance.hold(LAN_CLIENT, SUBMISSIONS, "garbage", HOLD_SECONDS).unwrap();
    let garbage_closed = assert_closed_within_timeout(vec![garbage, implicit_garbage]);
    assert!(garbage_closed.iter().all(|seconds| *seconds < 10.0), "a garbage ClientHello (25, 465) is refused at once, not held: {garbage_closed:?}");
    let truncated = appliance.hold(WAN_CLIENTS[1], SMTP, "truncated", HOLD_SECONDS).unwrap();
    let unfinished = appliance.hold(WAN_CLIENTS[2], SMTP, "unfinished", HOLD_SECONDS).unwrap();
    assert!(truncated.held() && unfinished.held(), "{} {}", truncated.first, unfinished.first);
    let file = appliance.directory.join("plain.eml");
    std::fs::write(&file, message("plaintext beside stalled handshakes")).unwrap();
    let reply = send_mail(appliance.namespace(), WAN_CLIENTS[3], APPLIANCE, "someone@sender.example", &["bob@example.org"], &file, false).unwrap();
    assert_eq!(reply["data"][0], 250, "a plaintext sender is served beside two stalled handshakes: {reply}");
    assert_health_prompt(&appliance, "beside two stalled handshakes");
    let stalled = assert_closed_within_timeout(vec![truncated, unfinished]);
    eprintln!("stalled handshakes dropped after {stalled:?} s (garbage after {garbage_closed:?} s)");
    tls_session(&appliance, WAN_CLIENTS[4]);
    eprintln!("section 3 (bad handshakes) done at {:.0} s", started.elapsed().as_secs_f64());

    // 4. Every TLS slot held by a stalled handshake (on 25 from WAN clients, then on 587 from
    //    the LAN): the next STARTTLS gets 454 4.7.0, port 465 gets 421; after the timeout
    //    STARTTLS works again.
    let attempts = [(WAN_CLIENTS[5], SMTP), (WAN_CLIENTS[6], SMTP), (WAN_CLIENTS[7], SMTP), (LAN_CLIENT, SUBMISSION), (ROUTER, SUBMISSION), (WAN_CLIENTS[8], SMTP)];
    let mut holds = Vec::new();
    let mut refused = None;
    for (source, port) in attempts {
        let hold = appliance.hold(source, port, "unfinished", HOLD_SECONDS).unwrap();
        if hold.held() {
            holds.push(hold);
        } else {
            refused = Some(hold.first.clone());
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("{} stalled handshakes held and STARTTLS still offered: no TLS slot limit", holds.len()));
    assert!(last_line(&refused["starttls"]).starts_with("454 4.7.0"), "all {} TLS slots busy: {refused}", holds.len());
    eprintln!("the TLS slots: {} (the next STARTTLS: {})", holds.len(), last_line(&refused["starttls"]));
    let implicit = appliance
        .network
        .run_inside(move || {
            let mut stream = connect_from(LAN_CLIENT, SocketAddrV4::new(APPLIANCE, SUBMISSIONS), Duration::from_secs(10)).expect("TCP connect to 465");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            String::from_utf8_lossy(&answer).to_string()
        })
        .unwrap();
    assert!(implicit.starts_with("421"), "port 465 with every TLS slot busy: {implicit:?}");
    assert_health_prompt(&appliance, "with every TLS slot busy");
    assert_closed_within_timeout(holds);
    tls_session(&appliance, WAN_CLIENTS[9]);
    homemx_qemu::peers::assert_short_polls(&appliance.network);
    eprintln!("inbound_tls: {:.0} s in all", started.elapsed().as_secs_f64());
}
