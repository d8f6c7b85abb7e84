//! Authenticated submission end to end, on one booted appliance with its self-signed
//! certificate and one mail user added with the real CLI (`homemx user add … --password-file`):
//! Debian's `swaks` on 587 (STARTTLS, then AUTH PLAIN and AUTH LOGIN) and on 465 (implicit
//! TLS, then AUTH) is accepted as the right user; a wrong password and an unknown user both get
//! `535 5.7.8` with the same text (no hint whether the user exists); AUTH is offered only inside
//! TLS and refused before it (`538 5.7.11`); MAIL without AUTH is `530 5.7.0` until the owner
//! opts in to `lan_relay_without_auth`. Password guessing from one address waits longer at
//! every failure and raises the `authentication_failures` alert at the fifth.

use std::net::Ipv4Addr;
use std::time::Instant;

use homemx_qemu::network::{LAN_CLIENT, ROUTER};
use homemx_qemu::tls_listeners::{Swaks, TlsAppliance, SUBMISSION, SUBMISSIONS};

const USER: &str = "carol@example.org";
const PASSWORD: &str = "carol-submits-Hq3";
/// A further LAN client (the unknown-user attempt comes from an address of its own, so the
/// failed-AUTH delays of another address cannot be what answers it).
const THIRD_LAN_CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 11);

/// swaks arguments for one message from `USER` to `to` with `auth` (mechanism, user,
/// password), if any.
fn message_arguments<'a>(to: &'a str, auth: Option<(&'a str, &'a str, &'a str)>, tls: &'a str) -> Vec<&'a str> {
    let mut arguments = vec![tls, "--from", USER, "--to", to, "--header", "Subject: submitted with swaks"];
    if let Some((mechanism, user, password)) = auth {
        arguments.extend(["--auth", mechanism, "--auth-user", user, "--auth-password", password]);
    }
    arguments
}

fn accepted(swaks: &Swaks, what: &str, authenticated: bool) {
    assert_eq!(swaks.exit_code, Some(0), "{what}: accepted\n{}", swaks.transcript);
    assert!(!authenticated || swaks.replied("235"), "{what}: 235 after AUTH\n{}", swaks.transcript);
    let replies = swaks.replies();
    let last = replies.iter().rev().find(|(_, line)| line.starts_with("250 ")).expect("a 250 for the message");
    assert!(last.0, "{what}: the message went inside TLS\n{}", swaks.transcript);
}

/// The `535` reply line of a refused AUTH.
fn auth_refused(swaks: &Swaks, what: &str) -> String {
    assert_ne!(swaks.exit_code, Some(0), "{what}: refused\n{}", swaks.transcript);
    let refusal = swaks.replies().into_iter().find(|(_, line)| line.starts_with("535")).map(|(tls, line)| {
        assert!(tls, "{what}: the refusal comes inside TLS");
        line
    });
    let refusal = refusal.unwrap_or_else(|| panic!("{what}: no 535 reply\n{}", swaks.transcript));
    assert!(refusal.starts_with("535 5.7.8"), "{what}: {refusal}");
    assert!(!swaks.replied("250 2.1.0") && !swaks.transcript.contains("-> MAIL"), "{what}: no MAIL after a refused AUTH\n{}", swaks.transcript);
    refusal
}

#[test]
fn submission_takes_mail_only_after_auth_inside_tls() {
    let started = Instant::now();
    let appliance = TlsAppliance::boot("submission-auth", &["alice@example.org", "bob@example.org", USER], "lan_relay_without_auth = false\n").expect("the appliance boots with its certificate");
    appliance.network.add_client_address(THIRD_LAN_CLIENT).unwrap();
    appliance.add_user(USER, PASSWORD).expect("homemx user add");
    let toml = std::fs::read_to_string(appliance.directory.join("homemx.toml")).unwrap();
    assert!(toml.contains("[[users]]") && toml.contains(USER), "the CLI wrote the user into homemx.toml:\n{toml}");
    eprintln!("booted, provisioned, user added in {:.0} s", started.elapsed().as_secs_f64());

    // 587: AUTH PLAIN and AUTH LOGIN after STARTTLS, a local and a foreign recipient.
    let plain = appliance.swaks(LAN_CLIENT, SUBMISSION, &message_arguments("bob@example.org", Some(("PLAIN", USER, PASSWORD)), "--tls")).unwrap();
    accepted(&plain, "587 AUTH PLAIN", true);
    let replies = plain.replies();
    let before_tls: Vec<&String> = replies.iter().filter(|(tls, _)| !tls).map(|(_, line)| line).collect();
    let inside_tls: Vec<&String> = replies.iter().filter(|(tls, _)| *tls).map(|(_, line)| line).collect();
    assert!(before_tls.iter().any(|line| line.contains("STARTTLS")), "587 offers STARTTLS: {before_tls:?}");
    assert!(before_tls.iter().all(|line| !line.contains("AUTH")), "no AUTH before TLS: {before_tls:?}");
    assert!(inside_tls.iter().any(|line| line.contains("AUTH PLAIN LOGIN")), "AUTH PLAIN LOGIN inside TLS: {inside_tls:?}");
    let messages = appliance.mailbox.wait_for_messages(1, std::time::Duration::from_secs(60)).expect("the submitted message is delivered");
    assert!(String::from_utf8_lossy(&messages[0].0).contains("Subject: submitted with swaks"));
    let login = appliance.swaks(LAN_CLIENT, SUBMISSION, &message_arguments("dave@remote.example", Some(("LOGIN", USER, PASSWORD)), "--tls")).unwrap();
    accepted(&login, "587 AUTH LOGIN to a foreign recipient (relayed for the user)", true);

    // 465: implicit TLS, then AUTH.
    let implicit = appliance.swaks(ROUTER, SUBMISSIONS, &message_arguments("bob@example.org", Some(("PLAIN", USER, PASSWORD)), "--tls-on-connect")).unwrap();
    accepted(&implicit, "465 AUTH PLAIN", true);
    assert!(implicit.replies().iter().all(|(tls, _)| *tls), "465: every reply inside TLS\n{}", implicit.transcript);
    eprintln!("accepted submissions done at {:.0} s", started.elapsed().as_secs_f64());

    // Refusals: a wrong password and an unknown user get the same 535 5.7.8.
    let wrong = appliance.swaks(LAN_CLIENT, SUBMISSION, &message_arguments("bob@example.org", Some(("PLAIN", USER, "not-the-password")), "--tls")).unwrap();
    let wrong = auth_refused(&wrong, "a wrong password");
    let unknown = appliance
        .swaks(THIRD_LAN_CLIENT, SUBMISSION, &message_arguments("bob@example.org", Some(("LOGIN", "mallory@example.org", PASSWORD)), "--tls"))
        .unwrap();
    let unknown = auth_refused(&unknown, "an unknown user");
    assert_eq!(wrong, unknown, "no hint whether the user exists");
    let wrong_465 = appliance.swaks(ROUTER, SUBMISSIONS, &message_arguments("bob@example.org", Some(("PLAIN", USER, "not-the-password")), "--tls-on-connect")).unwrap();
    auth_refused(&wrong_465, "a wrong password on 465");

    // AUTH before TLS: 538 5.7.11 (the probe sends it; swaks would not, as it is not offered).
    let credentials = base64(&format!("\0{USER}\0{PASSWORD}"));
    let report = appliance.probe(ROUTER, SUBMISSION, &["--auth-before-tls", &format!("AUTH PLAIN {credentials}")]).unwrap();
    let auth = report["auth"].as_array().and_then(|lines| lines.last()).and_then(|line| line.as_str()).unwrap_or("").to_string();
    assert!(auth.starts_with("538 5.7.11"), "AUTH before TLS: {report}");

    // MAIL without AUTH, inside TLS: 530 5.7.0.
    let anonymous = appliance.swaks(ROUTER, SUBMISSION, &message_arguments("bob@example.org", None, "--tls")).unwrap();
    assert_ne!(anonymous.exit_code, Some(0), "{}", anonymous.transcript);
    assert!(anonymous.replies().iter().any(|(tls, line)| *tls && line.starts_with("530 5.7.0")), "MAIL without AUTH: 530\n{}", anonymous.transcript);
    eprintln!("refusals done at {:.0} s", started.elapsed().as_secs_f64());

    // The owner's opt-in: LAN clients relay by address alone.
    let config = appliance.directory.join("homemx.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("lan_relay_without_auth = false\n"), "{text}");
    std::fs::write(&config, text.replace("lan_relay_without_auth = false\n", "lan_relay_without_auth = true\n")).unwrap();
    let output = appliance.owner.homemx(&["config", "set", "--config", "homemx.toml"]);
    assert!(output.status.success(), "config set: {}", String::from_utf8_lossy(&output.stderr));
    let opted_in = appliance.swaks(ROUTER, SUBMISSION, &message_arguments("bob@example.org", None, "--tls")).unwrap();
    accepted(&opted_in, "lan_relay_without_auth = true: MAIL without AUTH", false);

    // Password guessing from one address: every refusal waits longer (1 s doubling), and the
    // fifth failure in the hour raises the `authentication_failures` alert, which names the
    // address and stays until the owner acknowledges it.
    let guesser = Ipv4Addr::new(192, 168, 77, 12);
    appliance.network.add_client_address(guesser).unwrap();
    let mut waits = Vec::new();
    for guess in 0..5 {
        let password = format!("guess-{guess}");
        let before = Instant::now();
        let attempt = appliance.swaks(guesser, SUBMISSION, &message_arguments("bob@example.org", Some(("PLAIN", USER, &password)), "--tls")).unwrap();
        auth_refused(&attempt, "a guessed password");
        waits.push(before.elapsed().as_secs_f64());
    }
    eprintln!("seconds per refused guess: {waits:.1?}");
    assert!(waits[4] >= 16.0 && waits[4] > waits[0] + 10.0, "the delay grows per failure: {waits:?}");
    let status = appliance.owner.status();
    let alerts = status["alerts"].as_array().cloned().unwrap_or_default();
    let alert = alerts.iter().find(|alert| alert["kind"] == "authentication_failures").unwrap_or_else(|| panic!("the alert is raised: {status}"));
    assert_eq!(alert["needs_acknowledgement"], true, "{alert}");
    let logged = appliance.machine.log.lines().into_iter().find(|line| line.contains("ALERT authentication_failures")).expect("the alert is logged");
    assert!(logged.contains(&guesser.to_string()), "the alert names the address: {logged}");
    assert!(!logged.contains("guess-"), "no password in the log: {logged}");
    homemx_qemu::peers::assert_short_polls(&appliance.network);
    eprintln!("submission_auth: {:.0} s in all", started.elapsed().as_secs_f64());
}

/// Standard base64 (RFC 4648) of `text`.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let value = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(value >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
