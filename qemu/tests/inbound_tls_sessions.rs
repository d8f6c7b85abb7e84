//! The inbound TLS arena: the QEMU board serves three TLS sessions at once (`Sizing::tls_sessions`,
//! each permit with one of three static record buffers, rustls's state on a heap sized for them). With three held inside TLS
//! (STARTTLS on 25), a fourth client's STARTTLS gets `454 4.7.0` and its message still arrives in
//! clear, and a client on 465 gets `421` before any TLS; the three then each send a 100 KB message
//! in full 16 KB records and get `250`; once they closed, 465 takes a TLS client again. The heap's
//! high-water mark (`/health`) is printed: the per-session figure of the issue. With both
//! listeners of 465 holding a client, one more connection request waits for a listener (its SYN
//! unanswered until the retry) rather than being reset, and connects when a holder quits. Removing
//! the permit check lets the fourth STARTTLS through (`220`) and fails the test; removing 465
//! from the listen backlog (`network::BACKLOG_PORTS`) resets the waiting client and fails it too.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use homemx_qemu::network::APPLIANCE;
use homemx_qemu::tls_listeners::TlsAppliance;
use serde_json::Value;

/// The QEMU board's `Sizing::tls_sessions` (bsp/qemu-mps2).
const TLS_SESSIONS: usize = 3;
/// The QEMU board's listeners on port 465 (`Sizing::submission_sessions`).
const LISTENERS_465: usize = 2;
/// Each held session's message: several full TLS records.
const MESSAGE_BYTES: usize = 100 * 1024;

#[test]
fn a_session_beyond_the_tls_arena_is_refused_in_smtp_never_dropped() {
    let appliance = TlsAppliance::boot("inbound-tls-sessions", &["alice@example.org"], "").expect("the appliance with its certificate");
    let (network, machine) = (&appliance.network, &appliance.machine);
    let namespace = appliance.namespace().to_string();
    let (before, _) = homemx_qemu::peers::health(network).expect("/health");

    // One address per connection: the device lets one address hold two sessions.
    let sources: Vec<Ipv4Addr> = (0..TLS_SESSIONS as u8 + 3).map(|index| Ipv4Addr::new(192, 168, 77, 20 + index)).collect();
    for source in &sources {
        network.add_client_address(*source).expect("a LAN client address");
    }
    let script = homemx_qemu::repository_root().join("qemu/peers/tls_sessions.py");
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &namespace, "timeout", "300", "python3"]).arg(script);
    for source in &sources {
        command.args(["--source", &source.to_string()]);
    }
    let output = command
        .args(["--server", &APPLIANCE.to_string()])
        .args(["--hold", &TLS_SESSIONS.to_string(), "--message-bytes", &MESSAGE_BYTES.to_string()])
        .args(["--listeners-465", &LISTENERS_465.to_string()])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tls_sessions.py: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    println!("{result:#}");

    assert_eq!(result["held_starttls"], serde_json::json!(vec![220; TLS_SESSIONS]), "every TLS session of the arena is taken");
    assert_eq!(result["extra_starttls"][0], 454, "one more STARTTLS is refused for now: {result}");
    assert!(result["extra_starttls"][1][0].as_str().unwrap().starts_with("454 4.7.0"), "{result}");
    assert_eq!(result["extra_clear_message"], 250, "the refused client's mail still arrives (in clear, as it chose)");
    let implicit = result["implicit_when_full"].as_str().unwrap();
    assert!(implicit.starts_with("421 4.7.0"), "465 with the arena full answers 421 before any TLS: {implicit}");
    assert_eq!(result["held_messages"], serde_json::json!(vec![250; TLS_SESSIONS]), "each TLS session's 100 KB message is taken");
    assert_eq!(result["implicit_after"][0], "TLSv1.3", "{result}");
    assert!(result["implicit_after"][1].as_str().unwrap().starts_with("220 "), "465 serves again once a permit is back: {result}");
    let backlog = &result["implicit_backlog"];
    assert_eq!(backlog["while_full"], "waiting", "with every listener of 465 busy a connection request waits, never reset: {backlog}");
    assert_eq!(backlog["after"][0], "TLSv1.3", "the waiting client connects once a listener is free: {backlog}");
    assert!(backlog["after"][1].as_str().unwrap().starts_with("220 "), "{backlog}");
    machine.log.wait_for(0, "all 3 TLS sessions busy, STARTTLS of", Duration::from_secs(5)).expect("the refusal is logged");

    let (after, _) = homemx_qemu::peers::health(network).expect("/health");
    let high_water = |health: &Value| health["heap_high_water_bytes"].as_u64().expect("heap_high_water_bytes");
    println!(
        "heap high-water: {} B before the sessions (the provider connections), {} B with {TLS_SESSIONS} TLS sessions and 100 KB each; \
         {} B more per session",
        high_water(&before),
        high_water(&after),
        high_water(&after).saturating_sub(high_water(&before)) / TLS_SESSIONS as u64
    );
    homemx_qemu::budgets::assert_stack_within_budget("after the TLS sessions", after["stack_high_water_bytes"].as_u64().unwrap_or(0));
}
