//! Instructions per operation, counted by the QEMU TCG plugin (no `-icount`: the appliance
//! runs in real time against real peers on the isolated network). The workload
//! (`homemx_qemu::operation_workload`, shared with `cargo xtask bench`) makes a provisioned
//! appliance with every provider peer and the LAN mailbox host do each marked operation ten
//! times (but the ACME issuance: tests/acme.rs counts one); every count must lie in a plausible range, the figures and their spread are printed,
//! not asserted (a spread is a measurement), and the unlock is compared with the cost anchor of
//! the platform notes.

use homemx_qemu::instructions::{Operation, OperationCount, Spread};
use homemx_qemu::operation_workload::measure_operations;

/// Times each operation is repeated for the stability figures.
const REPEATS: usize = 10;

/// Plausible counts: more than a mark's own few instructions, less than a generous ceiling
/// (an order of magnitude above what each was seen to cost).
fn plausible_range(operation: Operation) -> (u64, u64) {
    match operation {
        // RAM wipe, .data/.bss, board and network bring-up, DHCP.
        Operation::BootToReady => (1_000_000, 500_000_000),
        // P-256 key exchange, ECDSA P-256 chain and signature checks (platform notes: 22-45 M).
        Operation::TlsHandshakeSmarthost | Operation::TlsHandshakeBackupMx | Operation::TlsHandshakeDynDns => (2_000_000, 1_000_000_000),
        Operation::MxMessage | Operation::MxMessageTls | Operation::MailboxDelivery | Operation::BackupMxMessage => (20_000, 500_000_000),
        // X25519 and one ECDSA P-256 signature (platform notes: 10.6 M with X25519).
        Operation::TlsHandshakeServer => (2_000_000, 1_000_000_000),
        // HTTPS to two check-IP services (a handshake each), DNS, maybe an update.
        Operation::DynDnsCheck => (4_000_000, 3_000_000_000),
        // PBKDF2 with 40,000 iterations (~250 M) and the spool mount.
        Operation::Unlock => (50_000_000, 3_000_000_000),
        // Not in this workload (no ACME server): tests/acme.rs counts one issuance.
        Operation::AcmeIssuance => (0, u64::MAX),
    }
}

/// Prints min/median/max and the spread of `runs`, and how much of the spread goes with the
/// host time each took: the least-squares line of instructions over milliseconds (its slope
/// is what a millisecond of waiting costs: timer ticks) and the spread left without it.
fn print_figures(what: &str, runs: &[OperationCount]) {
    let counts: Vec<u64> = runs.iter().map(|run| run.instructions).collect();
    let spread = Spread::of(&counts).expect("counts to show");
    println!(
        "{what}: {} runs: min {} median {} max {} instructions; spread (max-min)/median {:.2} %",
        counts.len(),
        spread.min,
        spread.median,
        spread.max,
        spread.spread * 100.0
    );
    let milliseconds: Vec<f64> = runs.iter().map(|run| run.host_time.as_secs_f64() * 1000.0).collect();
    println!("  instructions: {counts:?}");
    println!("  host ms:      {:?}", milliseconds.iter().map(|ms| ms.round() as u64).collect::<Vec<_>>());
    let n = counts.len() as f64;
    let mean_ms = milliseconds.iter().sum::<f64>() / n;
    let mean_count = counts.iter().sum::<u64>() as f64 / n;
    let variance_ms: f64 = milliseconds.iter().map(|ms| (ms - mean_ms).powi(2)).sum();
    if counts.len() > 2 && variance_ms > 0.0 {
        let covariance: f64 = milliseconds.iter().zip(&counts).map(|(ms, &count)| (ms - mean_ms) * (count as f64 - mean_count)).sum();
        let slope = covariance / variance_ms;
        let at_no_wait: Vec<u64> =
            milliseconds.iter().zip(&counts).map(|(ms, &count)| (count as f64 - slope * ms).max(0.0) as u64).collect();
        let residual = Spread::of(&at_no_wait).expect("counts");
        println!(
            "  {slope:.0} instructions per host ms waited (least squares); without the time-proportional part: median {} spread {:.2} %",
            residual.median,
            residual.spread * 100.0
        );
    }
}

#[test]
fn every_operation_is_counted_and_the_counts_are_printed_with_their_spread() {
    let measured = measure_operations(REPEATS).unwrap_or_else(|error| panic!("{error}"));
    let counts = &measured.all;
    println!("instructions per operation (plugin, no -icount):");
    for operation in Operation::ALL.into_iter().filter(|operation| *operation != Operation::AcmeIssuance) {
        let each = counts.counts(operation);
        let (cancelled, overlapped) = counts.uncounted(operation);
        println!("  {:<26} {each:?} (cancelled {cancelled}, overlapped {overlapped})", operation.name());
        assert!(!each.is_empty(), "{} was not counted", operation.name());
        let (floor, ceiling) = plausible_range(operation);
        for &count in &each {
            assert!((floor..ceiling).contains(&count), "{}: {count} instructions is outside {floor}..{ceiling}", operation.name());
        }
    }
    assert_eq!(measured.boot_to_ready.len(), 1, "one boot");
    for (what, runs) in [
        ("MX messages", &measured.mx_message),
        ("unlocks", &measured.unlock),
        ("smarthost handshakes", &measured.smarthost_handshake),
        ("server handshakes", &measured.server_handshake),
        ("MX messages over TLS", &measured.mx_message_tls),
        ("POP3 messages", &measured.backup_mx_message),
        ("same-state unlocks", &measured.same_state.unlock),
        ("same-state MX messages", &measured.same_state.mx_message),
    ] {
        assert!(runs.len() >= REPEATS, "{what}: {} counted, not {REPEATS}", runs.len());
    }

    println!();
    println!("boot to ready: {} instructions", measured.boot_to_ready[0].instructions);
    print_figures("10 KB message through the MX, session start to 250", &measured.mx_message);
    print_figures("TLS server handshake (STARTTLS on 25, self-signed P-256)", &measured.server_handshake);
    print_figures("10 KB message through the MX inside TLS, handshake end to 250", &measured.mx_message_tls);
    print_figures("delivery to the LAN mailbox host (LMTP), spool updated", &measured.mailbox_delivery);
    print_figures("unlock", &measured.unlock);
    print_figures("TLS 1.3 handshake with the smarthost (P-256, CA anchor)", &measured.smarthost_handshake);
    print_figures("backup-MX TLS handshake", &measured.backup_mx_handshake);
    print_figures("DynDNS / check-IP TLS handshake", &measured.dyndns_handshake);
    print_figures("10 KB message fetched by POP3", &measured.backup_mx_message);
    println!("first DynDNS check (with the update): {} instructions", measured.first_dyndns_check[0].instructions);
    print_figures("DynDNS check without an update (every later one)", &measured.dyndns_check);
    println!("\nthe same operations from the same state (one flash image copied before each boot):");
    print_figures("same state: unlock", &measured.same_state.unlock);
    print_figures("same state: the same 10 KB message through the MX", &measured.same_state.mx_message);
    print_figures("same state: its delivery to the LAN mailbox host", &measured.same_state.mailbox_delivery);

    // Against the platform notes' cost anchor: PBKDF2-HMAC-SHA256 with 40,000 iterations is
    // 80,000 SHA-256 compressions of 64 bytes at ~48 instructions per byte: ~246 M, the bulk
    // of an unlock.
    let pbkdf2_anchor = 40_000u64 * 2 * 64 * 48;
    let median = |runs: &[OperationCount]| Spread::of(&runs.iter().map(|run| run.instructions).collect::<Vec<_>>()).unwrap().median;
    let unlock_median = median(&measured.unlock);
    println!(
        "anchor check: unlock median {unlock_median} vs PBKDF2 anchor {pbkdf2_anchor} ({:.2}×); smarthost handshake median {} vs 22-45 M",
        unlock_median as f64 / pbkdf2_anchor as f64,
        median(&measured.smarthost_handshake)
    );
    assert!(
        (pbkdf2_anchor / 2..pbkdf2_anchor * 3).contains(&unlock_median),
        "an unlock ({unlock_median}) should cost about the PBKDF2 anchor ({pbkdf2_anchor})"
    );
}
