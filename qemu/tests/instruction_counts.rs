//! Instructions per operation, counted by the QEMU TCG plugin (no `-icount`: the appliance
//! runs in real time against real peers on the isolated network): a provisioned appliance
//! with every provider peer (smarthost, Dovecot as the backup MX, check-IP and dyndns2 over
//! HTTPS, DNS, SNTP) and the LAN mailbox host does each marked operation at least once, and
//! every operation's count lies in a plausible range. Then the same operations ten times
//! each (a 10 KB message through the MX and its delivery, an unlock, a smarthost handshake):
//! the figures and their spread are printed, not asserted (a spread is a measurement), and
//! two counts are compared with the cost anchors of the platform notes.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use homemx_qemu::backup_mx::{BackupMx, BackupMxConfig, BackupTls};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::flash_image;
use homemx_qemu::instructions::{wait_for_counts, Operation, OperationCount, OperationCounts, Spread};
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner, DYNDNS_PASSWORD, POP3_PASSWORD, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{send_mail, MailboxHost};
use homemx_qemu::provider::{
    add_wan_address, write_json_atomically, DnsServer, HttpsConfig, HttpsEndpoints, Smarthost, SmarthostConfig, SntpConfig, SntpServer,
    TestCa, TlsMode, CHECKIP_NAME, DYNDNS_NAME, POP_NAME, SMARTHOST_NAME,
};
use serde_json::json;

const SMARTHOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const POP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
const DYNDNS_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 60);
const CHECKIP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 61);
const SMARTHOST_USER: &str = "homemx@example.org";
const POP_USER: &str = "backup-mx@example.org";
const DYNDNS_USER: &str = "homemx-owner";
const DYNDNS_HOST: &str = "home.example.net";
const PUBLIC_ADDRESS: &str = "198.51.100.7";
/// Times each operation is repeated for the stability figures.
const REPEATS: usize = 10;
/// How long one operation may take to show up in the counts.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

/// Plausible counts: more than a mark's own few instructions, less than a generous ceiling
/// (an order of magnitude above what each was seen to cost).
fn plausible_range(operation: Operation) -> (u64, u64) {
    match operation {
        // RAM wipe, .data/.bss, board and network bring-up, DHCP.
        Operation::BootToReady => (1_000_000, 500_000_000),
        // P-256 key exchange, ECDSA P-256 chain and signature checks (platform notes: 22-45 M).
        Operation::TlsHandshakeSmarthost | Operation::TlsHandshakeBackupMx | Operation::TlsHandshakeDynDns => (2_000_000, 1_000_000_000),
        Operation::MxMessage | Operation::MailboxDelivery | Operation::BackupMxMessage => (20_000, 500_000_000),
        // HTTPS to two check-IP services (a handshake each), DNS, maybe an update.
        Operation::DynDnsCheck => (4_000_000, 3_000_000_000),
        // PBKDF2 with 40,000 iterations (~250 M) and the spool mount.
        Operation::Unlock => (50_000_000, 3_000_000_000),
        Operation::TlsHandshakeServer => (0, 0),
    }
}

fn write_configuration(directory: &Path, ca: &TestCa) {
    write_secrets(directory);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org", "bob@example.org"], "");
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = 110\ntls = \"starttls\"\nuser_name = \"{POP_USER}\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{ca}\"\n\
         \n[dyndns]\nserver = \"{DYNDNS_NAME}\"\nhost_name = \"{DYNDNS_HOST}\"\nuser_name = \"{DYNDNS_USER}\"\ncheck_interval_seconds = 3600\npassword_file = \"secrets/dyndns.password\"\nca_certificate = \"{ca}\"\ncheck_ip = [\"https://{CHECKIP_NAME}/ip\", \"https://{DYNDNS_NAME}/ip\"]\n",
        ca = ca.ca_certificate.display()
    ));
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
}

/// A message of about `size` bytes.
fn message_of(size: usize, recipient: &str, number: usize) -> Vec<u8> {
    let mut message =
        format!("From: bench <bench@remote.test>\r\nTo: {recipient}\r\nSubject: instruction counts {number}\r\nMessage-ID: <counts-{number}@remote.test>\r\n\r\n")
            .into_bytes();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijk\r\n";
    while message.len() + line.len() <= size {
        message.extend_from_slice(line);
    }
    message
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
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let directory = new_run_directory("instruction-counts").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_configuration(&directory, &ca);
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    for address in [SMARTHOST, POP_SERVER, DYNDNS_SERVER, CHECKIP_SERVER] {
        add_wan_address(&namespace, address).unwrap();
    }
    let zone = directory.join("zone.json");
    let zone_text = json!({
        "ttl": 60,
        "names": {
            SMARTHOST_NAME: {"A": [SMARTHOST.to_string()]},
            POP_NAME: {"A": [POP_SERVER.to_string()]},
            DYNDNS_NAME: {"A": [DYNDNS_SERVER.to_string()]},
            CHECKIP_NAME: {"A": [CHECKIP_SERVER.to_string()]},
            DYNDNS_HOST: {"A": [PUBLIC_ADDRESS]},
            "example.org": {"MX": [{"preference": 10, "exchange": DYNDNS_HOST}]},
        }
    });
    write_json_atomically(&zone, &zone_text).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox")).expect("mailbox host");
    let smarthost_config = SmarthostConfig::new(format!("{SMARTHOST}:587"), TlsMode::StartTls)
        .with_certificate(ca.leaf(SMARTHOST_NAME).unwrap())
        .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
    let smarthost = Smarthost::start(ns, &smarthost_config, &directory.join("smarthost")).expect("smarthost");
    let pop_config = BackupMxConfig::new(format!("{POP_SERVER}:110"), BackupTls::StartTls, POP_USER, POP3_PASSWORD)
        .with_certificate(ca.leaf(POP_NAME).unwrap());
    let dovecot = BackupMx::start(ns, &pop_config, &directory.join("dovecot")).expect("Dovecot");
    let https_config =
        HttpsConfig::new(&[&format!("{DYNDNS_SERVER}:443"), &format!("{CHECKIP_SERVER}:443")], ca.leaf(DYNDNS_NAME).unwrap())
            .with_certificate_for(ca.leaf(CHECKIP_NAME).unwrap())
            .with_dyndns_account(DYNDNS_USER, DYNDNS_PASSWORD)
            .with_zone(&zone);
    let https = HttpsEndpoints::start(ns, &https_config, &directory.join("https")).expect("HTTPS endpoints");
    https.set_control(&json!({"ip_body": PUBLIC_ADDRESS})).unwrap();

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let config = MachineConfig { operation_counts: true, ..MachineConfig::on_network(elf, flash, &network) };
    let machine = Machine::start(&config, &directory).expect("QEMU starts with the counting plugin");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let counts_file = machine.operation_counts_file();
    let count_of = |operation: Operation, at_least: usize| -> Vec<u64> {
        wait_for_counts(&counts_file, operation, at_least, OPERATION_TIMEOUT).unwrap_or_else(|error| panic!("{error}"))
    };
    let boot = count_of(Operation::BootToReady, 1);

    let owner = Owner::at(&directory);
    owner.provision();
    machine.log.wait_for(0, "time: clock set", Duration::from_secs(60)).expect("the clock is set");

    // Every count includes whatever else the core ran meanwhile, so each operation is started
    // when the one before it has ended. An unlock and `fetch-now` start a DynDNS check and
    // then a backup-MX fetch: both have ended at the fetch's closing log line.
    let fetch_ended = |from_line: usize| {
        machine.log.wait_for(from_line, "messages fetched", OPERATION_TIMEOUT).expect("the fetch ends");
    };
    let lock_and_unlock = || {
        assert!(owner.homemx(&["lock"]).status.success());
        let line = machine.log.line_count();
        assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
        fetch_ended(line);
    };

    // 1. Each operation at least once. The unlock at provisioning starts the first DynDNS
    //    check (with an update) and a fetch.
    fetch_ended(0);
    count_of(Operation::DynDnsCheck, 1);
    dovecot.deliver(&message_of(10 * 1024, "bob@example.org", 1)).unwrap();
    let line = machine.log.line_count();
    assert!(owner.homemx(&["fetch-now"]).status.success());
    fetch_ended(line);
    count_of(Operation::BackupMxMessage, 1);
    mailbox.wait_for_messages(1, OPERATION_TIMEOUT).expect("the fetched message reaches the mailbox host");
    count_of(Operation::MailboxDelivery, 1);
    let message_file = directory.join("10k.eml");
    std::fs::write(&message_file, message_of(10 * 1024, "alice@example.org", 0)).unwrap();
    let reply =
        send_mail(&namespace, WAN_CLIENT, "192.168.77.2:25", "bench@remote.test", &["alice@example.org"], &message_file, false).unwrap();
    assert_eq!(reply["data"][0], 250, "{reply}");
    count_of(Operation::MailboxDelivery, 2);
    let outbound_file = directory.join("outbound.eml");
    std::fs::write(&outbound_file, message_of(1024, "carol@remote.example", 0)).unwrap();
    let line = machine.log.line_count();
    let reply =
        send_mail(&namespace, LAN_CLIENT, "192.168.77.2:587", "alice@example.org", &["carol@remote.example"], &outbound_file, false)
            .unwrap();
    assert_eq!(reply["data"][0], 250, "{reply}");
    smarthost.wait_for_messages(1, OPERATION_TIMEOUT).expect("the outbound message reaches the smarthost");
    machine.log.wait_for(line, "and removed", OPERATION_TIMEOUT).expect("the relayed message leaves the spool");
    lock_and_unlock();
    count_of(Operation::Unlock, 1);

    let counts = OperationCounts::read(&counts_file).unwrap();
    println!("instructions per operation (plugin, no -icount):");
    for operation in Operation::ALL {
        let measured = counts.counts(operation);
        let (cancelled, overlapped) = counts.uncounted(operation);
        println!("  {:<26} {measured:?} (cancelled {cancelled}, overlapped {overlapped})", operation.name());
        if operation == Operation::TlsHandshakeServer {
            assert!(measured.is_empty(), "no inbound TLS exists yet, so nothing marks a server handshake");
            continue;
        }
        assert!(!measured.is_empty(), "{} was not counted", operation.name());
        let (floor, ceiling) = plausible_range(operation);
        for &count in &measured {
            assert!((floor..ceiling).contains(&count), "{}: {count} instructions is outside {floor}..{ceiling}", operation.name());
        }
    }
    assert_eq!(boot.len(), 1, "one boot");

    // 2. Stability: the same operations ten times each.
    let before = OperationCounts::read(&counts_file).unwrap();
    let (mx_before, delivered_before) = (before.counts(Operation::MxMessage).len(), before.counts(Operation::MailboxDelivery).len());
    for number in 0..REPEATS {
        std::fs::write(&message_file, message_of(10 * 1024, "alice@example.org", 100 + number)).unwrap();
        let reply = send_mail(&namespace, WAN_CLIENT, "192.168.77.2:25", "bench@remote.test", &["alice@example.org"], &message_file, false)
            .unwrap();
        assert_eq!(reply["data"][0], 250, "{reply}");
        // The delivery ends before the next message begins: the two are measured apart.
        count_of(Operation::MailboxDelivery, delivered_before + number + 1);
    }
    count_of(Operation::MxMessage, mx_before + REPEATS);
    count_of(Operation::MailboxDelivery, delivered_before + REPEATS);
    let runs = |operation: Operation, from: usize| OperationCounts::read(&counts_file).unwrap().completed_of(operation)[from..].to_vec();
    let mx = runs(Operation::MxMessage, mx_before);
    let delivered = runs(Operation::MailboxDelivery, delivered_before);

    let unlocks_before = OperationCounts::read(&counts_file).unwrap().counts(Operation::Unlock).len();
    for _ in 0..REPEATS {
        lock_and_unlock();
    }
    count_of(Operation::Unlock, unlocks_before + REPEATS);
    let unlocks = runs(Operation::Unlock, unlocks_before);

    let handshakes_before = OperationCounts::read(&counts_file).unwrap().counts(Operation::TlsHandshakeSmarthost).len();
    for number in 0..REPEATS {
        std::fs::write(&outbound_file, message_of(1024, "carol@remote.example", 200 + number)).unwrap();
        let line = machine.log.line_count();
        let reply =
            send_mail(&namespace, LAN_CLIENT, "192.168.77.2:587", "alice@example.org", &["carol@remote.example"], &outbound_file, false)
                .unwrap();
        assert_eq!(reply["data"][0], 250, "{reply}");
        smarthost.wait_for_messages(2 + number, OPERATION_TIMEOUT).expect("relayed through the smarthost");
        machine.log.wait_for(line, "and removed", OPERATION_TIMEOUT).expect("the relayed message leaves the spool");
    }
    count_of(Operation::TlsHandshakeSmarthost, handshakes_before + REPEATS);
    let handshakes = runs(Operation::TlsHandshakeSmarthost, handshakes_before);

    println!();
    println!("boot to ready: {} instructions", boot[0]);
    print_figures("10 KB message through the MX, session start to 250", &mx);
    print_figures("its delivery to the LAN mailbox host (LMTP), spool updated", &delivered);
    print_figures("unlock", &unlocks);
    print_figures("TLS 1.3 handshake with the smarthost (P-256, CA anchor)", &handshakes);
    let all = OperationCounts::read(&counts_file).unwrap();
    println!("first DynDNS check (with the update): {} instructions", all.counts(Operation::DynDnsCheck)[0]);
    print_figures("DynDNS check without an update (every later one)", &all.completed_of(Operation::DynDnsCheck)[1..]);
    print_figures("backup-MX TLS handshake", &all.completed_of(Operation::TlsHandshakeBackupMx));

    // 3. Against the platform notes' cost anchors. PBKDF2-HMAC-SHA256 with 40,000 iterations
    //    is 80,000 SHA-256 compressions of 64 bytes at ~48 instructions per byte: ~246 M, the
    //    bulk of an unlock. A verified TLS 1.3 handshake with P-256: ~22-45 M.
    let pbkdf2_anchor = 40_000u64 * 2 * 64 * 48;
    let median = |runs: &[OperationCount]| Spread::of(&runs.iter().map(|run| run.instructions).collect::<Vec<_>>()).unwrap().median;
    let unlock_median = median(&unlocks);
    println!(
        "anchor check: unlock median {unlock_median} vs PBKDF2 anchor {pbkdf2_anchor} ({:.2}×); smarthost handshake median {} vs 22-45 M",
        unlock_median as f64 / pbkdf2_anchor as f64,
        median(&handshakes)
    );
    assert!(
        (pbkdf2_anchor / 2..pbkdf2_anchor * 3).contains(&unlock_median),
        "an unlock ({unlock_median}) should cost about the PBKDF2 anchor ({pbkdf2_anchor})"
    );
}
