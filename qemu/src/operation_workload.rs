//! The counted-operations workload: boots a provisioned appliance with the instruction-counting
//! plugin ([`crate::instructions`]) on the isolated network with every provider peer (Postfix-
//! style smarthost, Dovecot as the backup MX, check-IP and dyndns2 over HTTPS, DNS, SNTP) and
//! the LAN mailbox host, makes it do each marked operation a given number of times, one after
//! another, and returns every count by operation.
//!
//! Used by the `instruction_counts` e2e test (which checks the counts are plausible) and by
//! `cargo xtask bench` (which prints them beside the budgets). Owns the run's peers and
//! machine for its duration; everything is torn down by PID when it returns.
//!
//! Two series: one long run (state grows from run to run: spool positions, key-value records,
//! the event log), and the same operations from the same state (one flash image copied before
//! each boot), which shows the instrument's own spread.
//!
//! Every count includes whatever else the core ran meanwhile, so each operation is started only
//! when the one before it has ended: the MX message's delivery ends before the next message
//! begins, an unlock and `fetch-now` (each starts a DynDNS check, then a backup-MX fetch) end
//! at the fetch's closing log line.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::backup_mx::{BackupMx, BackupMxConfig, BackupTls};
use crate::firmware::FirmwareBuild;
use crate::flash_image;
use crate::instructions::{wait_for_counts, Operation, OperationCount, OperationCounts};
use crate::machine::{new_run_directory, Machine, MachineConfig};
use crate::network::{IsolatedNetwork, LAN_CLIENT, ROUTER, WAN_CLIENT};
use crate::owner::{
    provider_configuration, write_secrets, Owner, CHECKIP_SERVER, DYNDNS_HOST, DYNDNS_PASSWORD, DYNDNS_SERVER, DYNDNS_USER, POP3_PASSWORD,
    SMARTHOST_PASSWORD,
};
use crate::peers::{expect_250, send_mail, send_mail_over_starttls, MailboxHost};
use crate::provider::{
    add_wan_address, write_json_atomically, DnsServer, HttpsConfig, HttpsEndpoints, Smarthost,
    SmarthostConfig, SntpConfig, SntpServer, TestCa, TlsMode, CHECKIP_NAME, DYNDNS_NAME, POP_NAME,
    SMARTHOST_NAME,
};
use crate::Result;

const SMARTHOST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
const POP_SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 110);
const SMARTHOST_USER: &str = "homemx@example.org";
const POP_USER: &str = "backup-mx@example.org";
const PUBLIC_ADDRESS: &str = "198.51.100.7";
const APPLIANCE_MX: &str = "192.168.77.2:25";
const APPLIANCE_SUBMISSION: &str = "192.168.77.2:587";
/// How long one operation may take to show up in the counts.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(90);
/// The size of the measured messages (the brief's "10 KB message").
pub const MESSAGE_BYTES: usize = 10 * 1024;

/// Every count of one run, by what was measured.
pub struct MeasuredOperations {
    /// Boot to network ready (one per boot: one).
    pub boot_to_ready: Vec<OperationCount>,
    /// A 10 KB message through the MX from the session's first byte to "250".
    pub mx_message: Vec<OperationCount>,
    /// A message delivered to the LAN mailbox host over LMTP, spool updated.
    pub mailbox_delivery: Vec<OperationCount>,
    /// An unlock (key derivation, spool mount) of a spool that has held mail.
    pub unlock: Vec<OperationCount>,
    /// A TLS client handshake with the smarthost (STARTTLS, P-256, CA anchor).
    pub smarthost_handshake: Vec<OperationCount>,
    /// A TLS client handshake with the backup MX's POP3 server (STARTTLS).
    pub backup_mx_handshake: Vec<OperationCount>,
    /// A TLS client handshake with the DynDNS or a check-IP service (HTTPS).
    pub dyndns_handshake: Vec<OperationCount>,
    /// A 10 KB message fetched from the backup MX by POP3 and committed to the spool.
    pub backup_mx_message: Vec<OperationCount>,
    /// A TLS server handshake: a sender's STARTTLS on port 25 (TLS 1.3, X25519, the device's
    /// self-signed P-256 certificate).
    pub server_handshake: Vec<OperationCount>,
    /// The same 10 KB message through the MX inside TLS, from the handshake's end to "250".
    pub mx_message_tls: Vec<OperationCount>,
    /// The first DynDNS check, which updates the record.
    pub first_dyndns_check: Vec<OperationCount>,
    /// Every later DynDNS check (no update).
    pub dyndns_check: Vec<OperationCount>,
    /// Everything the plugin wrote in the long run, for plausibility checks and uncounted
    /// operations.
    pub all: OperationCounts,
    /// The same operations from the same state: each of `repeats` boots starts from one copy
    /// of the flash (provisioned, spool empty, locked), unlocks, and takes the same 10 KB
    /// message from the WAN. What is left of the spread is the instrument's and the timing's,
    /// not the work's.
    pub same_state: SameStateRuns,
}

/// Counts of the runs that start from the same flash image (see
/// [`MeasuredOperations::same_state`]).
#[derive(Default)]
pub struct SameStateRuns {
    /// One unlock per boot.
    pub unlock: Vec<OperationCount>,
    /// The same 10 KB message through the MX, first byte to "250", one per boot.
    pub mx_message: Vec<OperationCount>,
    /// Its delivery to the LAN mailbox host, one per boot.
    pub mailbox_delivery: Vec<OperationCount>,
}

/// A message of about `size` bytes to `recipient`.
pub fn message_of(size: usize, recipient: &str, number: usize) -> Vec<u8> {
    let mut message = format!(
        "From: bench <bench@remote.test>\r\nTo: {recipient}\r\nSubject: instruction counts {number}\r\nMessage-ID: <counts-{number}@remote.test>\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijk\r\n";
    while message.len() + line.len() <= size {
        message.extend_from_slice(line);
    }
    message
}

fn write_configuration(directory: &Path, ca: &TestCa) -> Result<()> {
    write_secrets(directory);
    let mut text = provider_configuration(
        &ca.ca_certificate,
        &["alice@example.org", "bob@example.org"],
        "",
    );
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = 110\ntls = \"starttls\"\nuser_name = \"{POP_USER}\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{ca}\"\n\
",
        ca = ca.ca_certificate.display()
    ));
    text.push_str(&crate::owner::dyndns_section(&ca.ca_certificate, 3600));
    std::fs::write(directory.join("homemx.toml"), text)?;
    Ok(())
}

/// Boots the appliance with the counting plugin and its peers, makes it do every marked
/// operation `repeats` times (at least once), and returns the counts. Needs root (the isolated
/// network is a namespace).
pub fn measure_operations(repeats: usize) -> Result<MeasuredOperations> {
    let repeats = repeats.max(1);
    let elf = FirmwareBuild::QEMU.build()?;
    let directory = new_run_directory("instruction-counts")?;
    let ca = TestCa::create(&directory.join("ca"))?;
    write_configuration(&directory, &ca)?;
    let network = IsolatedNetwork::create(&directory)?;
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    for address in [SMARTHOST, POP_SERVER, DYNDNS_SERVER, CHECKIP_SERVER] {
        add_wan_address(&namespace, address)?;
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
    write_json_atomically(&zone, &zone_text)?;
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns"))?;
    let _sntp = SntpServer::start(
        ns,
        &SntpConfig::new(format!("{ROUTER}:123")),
        &directory.join("sntp"),
    )?;
    let mailbox = MailboxHost::start(
        &namespace,
        "192.168.77.1:24",
        "lmtp",
        &directory.join("mailbox"),
    )?;
    let smarthost_config = SmarthostConfig::new(format!("{SMARTHOST}:587"), TlsMode::StartTls)
        .with_certificate(ca.leaf(SMARTHOST_NAME)?)
        .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
    let smarthost = Smarthost::start(ns, &smarthost_config, &directory.join("smarthost"))?;
    let pop_config = BackupMxConfig::new(
        format!("{POP_SERVER}:110"),
        BackupTls::StartTls,
        POP_USER,
        POP3_PASSWORD,
    )
    .with_certificate(ca.leaf(POP_NAME)?);
    let dovecot = BackupMx::start(ns, &pop_config, &directory.join("dovecot"))?;
    let https_config = HttpsConfig::new(
        &[
            &format!("{DYNDNS_SERVER}:443"),
            &format!("{CHECKIP_SERVER}:443"),
        ],
        ca.leaf(DYNDNS_NAME)?,
    )
    .with_certificate_for(ca.leaf(CHECKIP_NAME)?)
    .with_dyndns_account(DYNDNS_USER, DYNDNS_PASSWORD)
    .with_zone(&zone);
    let https = HttpsEndpoints::start(ns, &https_config, &directory.join("https"))?;
    https.set_control(&json!({"ip_body": PUBLIC_ADDRESS}))?;

    let flash = directory.join("flash.img");
    flash_image::create(&flash)?;
    let config = MachineConfig {
        operation_counts: true,
        ..MachineConfig::on_network(elf, flash.clone(), &network)
    };
    let mut machine = Machine::start(&config, &directory)?;
    machine.wait_ready(0, Duration::from_secs(60))?;
    let counts_file = machine.operation_counts_file();
    let count_of = |operation: Operation, at_least: usize| -> Result<()> {
        wait_for_counts(&counts_file, operation, at_least, OPERATION_TIMEOUT).map(|_| ())
    };
    let completed = |operation: Operation| -> Result<usize> {
        Ok(OperationCounts::read(&counts_file)?.counts(operation).len())
    };
    count_of(Operation::BootToReady, 1)?;

    let owner = Owner::at(&directory);
    owner.provision();
    machine
        .log
        .wait_for(0, "time: clock set", Duration::from_secs(60))?;
    let fetch_ended = |from_line: usize| fetch_ended_on(&machine, from_line);
    let homemx = |arguments: &[&str]| -> Result<()> {
        let output = owner.homemx(arguments);
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "homemx {arguments:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into())
        }
    };
    // The unlock at provisioning starts the first DynDNS check (with its update) and a fetch.
    fetch_ended(0)?;
    count_of(Operation::DynDnsCheck, 1)?;

    // The MX: a 10 KB message from the WAN, then its delivery, `repeats` times.
    let message_file = directory.join("10k.eml");
    for number in 0..repeats {
        let delivered = completed(Operation::MailboxDelivery)?;
        std::fs::write(
            &message_file,
            message_of(MESSAGE_BYTES, "alice@example.org", number),
        )?;
        expect_250(&send_mail(
            &namespace,
            WAN_CLIENT,
            APPLIANCE_MX,
            "bench@remote.test",
            &["alice@example.org"],
            &message_file,
            false,
        )?)?;
        count_of(Operation::MailboxDelivery, delivered + 1)?;
    }

    // The MX inside TLS: the same 10 KB message after STARTTLS (the device's self-signed
    // certificate, made once the clock was set), then its delivery, `repeats` times.
    machine.log.wait_for(0, "tls: self-signed certificate for", OPERATION_TIMEOUT)?;
    for number in 0..repeats {
        let delivered = completed(Operation::MailboxDelivery)?;
        std::fs::write(&message_file, message_of(MESSAGE_BYTES, "alice@example.org", 500 + number))?;
        let reply = send_mail_over_starttls(&namespace, WAN_CLIENT, APPLIANCE_MX, "bench@remote.test", &["alice@example.org"], &message_file)?;
        if reply["starttls"][0] != 220 {
            return Err(format!("STARTTLS was not taken: {reply}").into());
        }
        expect_250(&reply)?;
        count_of(Operation::MailboxDelivery, delivered + 1)?;
    }

    // The backup MX: one 10 KB message waiting per `fetch-now`, which also runs a DynDNS check.
    for number in 0..repeats {
        let delivered = completed(Operation::MailboxDelivery)?;
        dovecot.deliver(&message_of(MESSAGE_BYTES, "bob@example.org", 1000 + number))?;
        let line = machine.log.line_count();
        homemx(&["fetch-now"])?;
        fetch_ended(line)?;
        count_of(Operation::MailboxDelivery, delivered + 1)?;
    }

    // Outbound through the smarthost: a handshake per message.
    let outbound_file = directory.join("outbound.eml");
    for number in 0..repeats {
        std::fs::write(
            &outbound_file,
            message_of(1024, "carol@remote.example", 2000 + number),
        )?;
        let line = machine.log.line_count();
        expect_250(&send_mail(
            &namespace,
            LAN_CLIENT,
            APPLIANCE_SUBMISSION,
            "alice@example.org",
            &["carol@remote.example"],
            &outbound_file,
            false,
        )?)?;
        smarthost.wait_for_messages(1 + number, OPERATION_TIMEOUT)?;
        machine
            .log
            .wait_for(line, "and removed", OPERATION_TIMEOUT)?;
    }

    // Lock and unlock: the unlock, then its DynDNS check and fetch. (Provisioning unlocked once
    // before, on an empty spool: not one of the measured ones.)
    let unlocks_before = completed(Operation::Unlock)?;
    for _ in 0..repeats {
        homemx(&["lock"])?;
        let line = machine.log.line_count();
        homemx(&["unlock", "--passphrase-file", "passphrase"])?;
        fetch_ended(line)?;
    }
    count_of(Operation::Unlock, unlocks_before + repeats)?;
    mailbox.wait_for_messages(2 * repeats, OPERATION_TIMEOUT)?;

    let all = OperationCounts::read(&counts_file)?;

    // The same state: locked (nothing writes the flash), power off, one copy of the flash.
    homemx(&["lock"])?;
    machine.kill();
    let snapshot = directory.join("flash-locked.img");
    std::fs::copy(&flash, &snapshot)?;
    let mut same_state = SameStateRuns::default();
    std::fs::write(&message_file, message_of(MESSAGE_BYTES, "alice@example.org", 5000))?;
    for boot in 0..repeats {
        std::fs::copy(&snapshot, &flash)?;
        let machine = Machine::start(&config, &directory)?;
        machine.wait_ready(0, Duration::from_secs(60))?;
        machine.log.wait_for(0, "time: clock set", Duration::from_secs(60))?;
        let line = machine.log.line_count();
        homemx(&["unlock", "--passphrase-file", "passphrase"])?;
        fetch_ended_on(&machine, line)?;
        expect_250(&send_mail(&namespace, WAN_CLIENT, APPLIANCE_MX, "bench@remote.test", &["alice@example.org"], &message_file, false)?)?;
        let counts_file = machine.operation_counts_file();
        wait_for_counts(&counts_file, Operation::MailboxDelivery, 1, OPERATION_TIMEOUT)?;
        let counts = OperationCounts::read(&counts_file)?;
        same_state.unlock.extend(counts.completed_of(Operation::Unlock));
        same_state.mx_message.extend(counts.completed_of(Operation::MxMessage));
        same_state.mailbox_delivery.extend(counts.completed_of(Operation::MailboxDelivery));
        // Each boot's log and counts are kept beside the run's (QEMU's start rewrites both).
        std::fs::copy(directory.join("firmware.log"), directory.join(format!("firmware-same-state-{boot}.log")))?;
        std::fs::copy(&counts_file, directory.join(format!("operation-counts-same-state-{boot}.txt")))?;
    }

    let of = |operation: Operation| all.completed_of(operation);
    let dyndns_checks = of(Operation::DynDnsCheck);
    Ok(MeasuredOperations {
        boot_to_ready: of(Operation::BootToReady),
        mx_message: of(Operation::MxMessage),
        mailbox_delivery: of(Operation::MailboxDelivery),
        unlock: of(Operation::Unlock)[unlocks_before..].to_vec(),
        smarthost_handshake: of(Operation::TlsHandshakeSmarthost),
        backup_mx_handshake: of(Operation::TlsHandshakeBackupMx),
        dyndns_handshake: of(Operation::TlsHandshakeDynDns),
        backup_mx_message: of(Operation::BackupMxMessage),
        server_handshake: of(Operation::TlsHandshakeServer),
        mx_message_tls: of(Operation::MxMessageTls),
        first_dyndns_check: dyndns_checks[..1].to_vec(),
        dyndns_check: dyndns_checks[1..].to_vec(),
        all,
        same_state,
    })
}

/// Waits for the end of the backup-MX fetch that an unlock or `fetch-now` started after
/// `from_line` of the log (it runs after the DynDNS check).
fn fetch_ended_on(machine: &Machine, from_line: usize) -> Result<()> {
    machine.log.wait_for(from_line, "messages fetched", OPERATION_TIMEOUT).map(|_| ())
}
