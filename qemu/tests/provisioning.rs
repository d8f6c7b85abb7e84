//! Provisioning end to end: the real `homemx` CLI binary talks to the firmware in QEMU over
//! the UART's socket. A fresh device is provisioned from a TOML file (enrolment, passphrase,
//! configuration, credentials, a CA certificate in chunks), comes up locked after a power
//! cut, refuses a wrong passphrase (and counts it across reboots), unlocks with the right one
//! and still has its configuration; another admin key is refused; a recorded command frame
//! replayed is refused; `status` never shows a secret; after `factory-reset` the old
//! passphrase opens nothing and the old configuration is gone.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER};
use homemx_qemu::owner::{
    console_exchange, provider_configuration, write_configuration, write_secrets, Owner, DYNDNS_PASSWORD, PASSPHRASE, POP3_PASSWORD,
    SMARTHOST_PASSWORD,
};
use homemx_qemu::peers::send_mail;
use homemx_qemu::provider::{add_wan_address, DnsServer, TestCa, CHECKIP_NAME, DYNDNS_NAME, POP_NAME, SMARTHOST_NAME};
use homemx_qemu::{flash_image, ram};
use homemx_wire::message::{Command, ErrorCode, Response, TlsService};
use homemx_wire::secret::Secret;

/// The product firmware plus one log line at each unlock: the data key's SHA-256, so the RAM
/// checks can find the key without the firmware ever showing it.
const KEY_FINGERPRINT_BUILD: FirmwareBuild = FirmwareBuild::QEMU_KEY_FINGERPRINT;

/// Dumps all SRAM and fails, naming each find (secret, address, symbol), if any piece of the
/// passphrase or of a provisioned password, or the data key, is in it.
fn assert_no_secret_in_ram(machine: &Machine, directory: &Path, elf: &Path, label: &str) {
    let fingerprint = ram::key_fingerprint(&machine.log.lines()).expect("a key-fingerprint build logs the data key's fingerprint at unlock");
    let dump = ram::dump_sram(machine, &directory.join(format!("ram-{label}.bin"))).unwrap();
    let secrets: [(&str, &[u8]); 4] = [
        ("the passphrase", PASSPHRASE.as_bytes()),
        ("the smarthost password", SMARTHOST_PASSWORD.as_bytes()),
        ("the backup MX (POP3) password", POP3_PASSWORD.as_bytes()),
        ("the DynDNS password", DYNDNS_PASSWORD.as_bytes()),
    ];
    let finds = ram::find_secrets(&dump, &secrets, Some(&fingerprint), elf);
    for find in &finds {
        eprintln!("{label}: found {find}");
    }
    assert!(finds.is_empty(), "{label}: secrets left in RAM: {}", finds.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
}


/// Forwards one CLI connection to the device and records what the CLI sent.
fn recording_proxy(listen: &Path, device: PathBuf) -> Arc<Mutex<Vec<u8>>> {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(listen).unwrap();
    let record = recorded.clone();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut upstream = UnixStream::connect(&device).unwrap();
        let mut downstream = upstream.try_clone().unwrap();
        let mut client_writer = client.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(count) = downstream.read(&mut buffer) {
                if count == 0 || client_writer.write_all(&buffer[..count]).is_err() {
                    break;
                }
            }
        });
        let mut buffer = [0u8; 4096];
        while let Ok(count) = client.read(&mut buffer) {
            if count == 0 {
                break;
            }
            record.lock().unwrap().extend_from_slice(&buffer[..count]);
            if upstream.write_all(&buffer[..count]).is_err() {
                break;
            }
        }
        // QEMU's UART socket takes one client at a time: let go of it.
        let _ = upstream.shutdown(std::net::Shutdown::Both);
    });
    recorded
}

/// The key store's default PBKDF2 iteration count (as the firmware uses it).
fn homemx_keystore_iterations() -> u32 {
    40_000
}

/// A factory-fresh device answers only `Hello` and `Enrol`: status is refused as not enrolled.
fn assert_not_enrolled(owner: &Owner) {
    let output = owner.homemx(&["--json", "status"]);
    assert_eq!(output.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&output.stdout).contains("NotEnrolled"));
}

#[test]
fn provision_lock_reboot_unlock_refuse_strangers_and_replays_factory_reset() {
    let elf = KEY_FINGERPRINT_BUILD.build().expect("firmware builds");
    let directory = new_run_directory("provisioning").unwrap();
    write_configuration(&directory);
    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    // Deterministic instruction counting: the firmware's unlock log line then measures the
    // key derivation in instructions (40 per core-clock count).
    let config = MachineConfig { instruction_counting: true, ..MachineConfig::offline(elf.clone(), flash, "52:54:00:6d:78:07") };
    let serial = directory.join("serial.sock");
    let owner = Owner { directory: directory.clone(), device: format!("unix:{}", serial.display()), key: directory.join("admin.key") };
    let stranger_key = directory.join("stranger.key");

    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", owner.key.to_str().unwrap()]).status.success());
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", stranger_key.to_str().unwrap()]).status.success());

    let mut machine = Machine::start(&config, &directory).expect("QEMU starts");
    machine.log.wait_for(0, "storage: key store factory-fresh", Duration::from_secs(60)).expect("fresh key store");
    assert_not_enrolled(&owner);

    let provision = owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]);
    assert!(provision.status.success(), "provisioning works");
    let status = owner.status();
    assert_eq!(status["state"], "Unlocked", "{status}");
    assert_eq!(status["configured"], true);
    assert_eq!(status["credentials"]["smarthost_password"], true);
    assert_eq!(status["credentials"]["backup_mx_password"], true);
    let configuration = owner.homemx(&["--json", "config", "get"]);
    assert!(configuration.status.success());
    let configuration = String::from_utf8(configuration.stdout).unwrap();
    assert!(configuration.contains("alice@example.org") && configuration.contains("smtp.provider.test"), "{configuration}");
    for secret in [PASSPHRASE, SMARTHOST_PASSWORD, POP3_PASSWORD] {
        assert!(!configuration.contains(secret), "config get must not show a secret");
    }

    // Another admin key is refused (exit code 5: authentication refused), and changes nothing.
    let stranger = owner.run(&stranger_key, &["lock"]);
    assert_eq!(stranger.status.code(), Some(5), "a second admin key is refused");
    assert_eq!(owner.status()["state"], "Unlocked");

    // A recorded `lock` replayed later is refused.
    let proxy_socket = directory.join("proxy.sock");
    let recorded = recording_proxy(&proxy_socket, serial.clone());
    let proxied = Owner { directory: directory.clone(), device: format!("unix:{}", proxy_socket.display()), key: owner.key.clone() };
    assert!(proxied.homemx(&["lock"]).status.success(), "lock through the recording proxy");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(owner.status()["state"], "Locked");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
    let replayed = recorded.lock().unwrap().clone();
    assert!(!replayed.is_empty());
    // The CLI sent a hello frame, then the signed `lock`: replay the last frame.
    let lock_frame = replayed.split(|&byte| byte == 0).rfind(|frame| !frame.is_empty()).unwrap();
    let mut request = vec![0u8];
    request.extend_from_slice(lock_frame);
    request.push(0);
    match console_exchange(&serial, &request).expect("a well-formed answer") {
        Response::Error(ErrorCode::StaleChallenge) => {}
        other => panic!("a replayed command must be refused as stale, got {other:?}"),
    }
    assert_eq!(owner.status()["state"], "Unlocked", "the replay changed nothing");

    // Power cut: the device comes up locked; a wrong passphrase is refused and counted.
    machine.kill();
    let mut machine = Machine::start(&config, &directory).expect("QEMU restarts");
    machine.log.wait_for(0, "storage: key store locked", Duration::from_secs(60)).expect("comes up locked");
    assert_eq!(owner.status()["state"], "Locked");
    let wrong = owner.homemx(&["unlock", "--passphrase-file", "wrong-passphrase"]);
    assert_eq!(wrong.status.code(), Some(6), "wrong passphrase refused");
    assert_eq!(owner.status()["failed_unlocks"], 1);
    machine.kill();
    let mut machine = Machine::start(&config, &directory).expect("QEMU restarts");
    machine.log.wait_for(0, "1 failed unlocks on record", Duration::from_secs(60)).expect("the failure count survives reset");
    let unlock = owner.homemx(&["unlock", "--passphrase-file", "passphrase"]);
    assert!(unlock.status.success(), "the right passphrase unlocks");
    let unlock_line = machine.log.wait_for(0, "unlock took", Duration::from_secs(10)).unwrap();
    let derivation_line = machine.log.wait_for(0, "unlock: key derivation", Duration::from_secs(10)).unwrap();
    let number = |line: &str, marker: &str| -> u64 {
        line.split(marker).nth(1).unwrap().trim().split(' ').next().unwrap().parse().unwrap()
    };
    let total = number(&unlock_line, "busy core-clock counts ") * 40;
    let derivation = number(&derivation_line, "took ") * 40;
    eprintln!(
        "unlock: key derivation (PBKDF2-HMAC-SHA256, {} iterations) + unwrap {:.1} M instructions = {:.2} s at 168 MHz; \
         with opening the settings and mounting the spool {:.1} M = {:.2} s",
        homemx_keystore_iterations(),
        derivation as f64 / 1e6,
        derivation as f64 / 168e6,
        total as f64 / 1e6,
        total as f64 / 168e6
    );
    let status = owner.status();
    assert_eq!(status["state"], "Unlocked");
    assert_eq!(status["configured"], true, "the configuration survived, encrypted");
    assert_eq!(status["failed_unlocks"], 0);

    // Lock wipes: neither the passphrase, nor the stored credentials, nor the data key are
    // left anywhere in RAM.
    assert!(owner.homemx(&["lock"]).status.success());
    assert_no_secret_in_ram(&machine, &directory, &elf, "after-lock");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());

    // The log tells what happened, without secrets.
    let logs = owner.homemx(&["--json", "logs"]);
    assert!(logs.status.success());
    let logs = String::from_utf8(logs.stdout).unwrap();
    assert!(logs.contains("unlocked") && logs.contains("locked by the owner"), "{logs}");
    for secret in [PASSPHRASE, SMARTHOST_PASSWORD, POP3_PASSWORD] {
        assert!(!logs.contains(secret), "logs must never show a secret");
    }

    // Key rotation: the new key works, the old one is refused.
    let new_key = directory.join("new-admin.key");
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", new_key.to_str().unwrap()]).status.success());
    assert!(owner.homemx(&["rotate-key", "--new-key", new_key.to_str().unwrap()]).status.success(), "rotate-key works");
    assert_eq!(owner.homemx(&["lock"]).status.code(), Some(5), "the old admin key is refused after rotation");
    let owner = Owner { key: new_key, ..owner };
    assert_eq!(owner.status()["state"], "Unlocked");

    // Factory reset: the old passphrase opens nothing and the configuration is gone.
    let reset = owner.homemx(&["factory-reset", "--yes"]);
    assert!(reset.status.success(), "factory reset works");
    machine.kill();
    let flash_bytes = std::fs::read(directory.join("flash.img")).unwrap();
    let key_store = &flash_bytes[8192..8192 + 16384];
    assert!(key_store.iter().all(|&byte| byte == 0xff), "the wrapped key is erased from flash");
    let machine = Machine::start(&config, &directory).expect("QEMU restarts");
    machine.log.wait_for(0, "storage: key store factory-fresh", Duration::from_secs(60)).expect("factory-fresh again");
    assert_not_enrolled(&owner);
    let old = owner.homemx(&["unlock", "--passphrase-file", "passphrase"]);
    assert!(!old.status.success(), "the old passphrase opens nothing after a factory reset");
    drop(machine);
}

/// The smarthost's and the backup MX's addresses (DNS answers them; nothing listens there:
/// every path tried here returns before it connects).
const SMARTHOST_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 25);
const POP_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 110);

/// Provisions like `homemx provision` (enrol, unlock, configuration, credentials, anchors) but
/// leaves out the backup MX's trust anchor, as a provisioning cut off before its last
/// commands does (the CLI itself refuses a configuration without one).
fn provision_without_backup_mx_anchor(owner: &Owner) {
    use homemx_cli::{commands, config_file, console::Console, keyfile, link::DeviceAddress};
    assert!(owner.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success(), "keygen");
    let mut plan = config_file::load(&owner.directory.join("homemx.toml")).expect("the configuration loads");
    let anchors = plan.anchors.len();
    plan.anchors.retain(|(service, _)| *service != TlsService::BackupMx);
    assert_eq!(plan.anchors.len(), anchors - 1, "the backup MX anchor is left out");
    let link = DeviceAddress::parse(&owner.device).unwrap().open(Duration::from_secs(30)).expect("console link");
    let key = keyfile::load(&owner.key, None).expect("admin key");
    let mut console = Console::open(link, key, Duration::from_secs(120)).expect("hello");
    let admin_key = console.public_key();
    console.expect_done(&Command::Enrol { admin_key }).expect("enrol");
    console.expect_done(&Command::Unlock { passphrase: Secret::new(PASSPHRASE.as_bytes()).unwrap() }).expect("unlock");
    commands::send_plan(&mut console, &plan).expect("the plan is sent");
}

/// Every path that loads a password from the vault and gives up early, taken before `lock`:
/// the smarthost with a CA anchor while the wall clock is unknown (no SNTP server: delivery
/// waits "for the time"), the backup MX without a trust anchor, an `unlock` frame followed by
/// shorter frames. Then nothing of any secret, nor the data key, may be left in SRAM.
#[test]
fn no_secret_in_ram_after_lock_even_after_every_early_return() {
    let elf = KEY_FINGERPRINT_BUILD.build().expect("firmware builds");
    let directory = new_run_directory("ram-secrets").unwrap();
    let ca = TestCa::create(&directory.join("ca")).expect("test CA");
    write_secrets(&directory);
    let mut text = provider_configuration(&ca.ca_certificate, &["alice@example.org"], "time_servers = [\"ntp.example.net\"]\n");
    text.push_str(&format!(
        "\n[backup_mx]\nhost = \"{POP_NAME}\"\nport = 110\ntls = \"starttls\"\nuser_name = \"backup-mx@example.org\"\npoll_interval_seconds = 3600\npassword_file = \"secrets/pop3.password\"\nca_certificate = \"{ca}\"\n\
         \n[dyndns]\nserver = \"{DYNDNS_NAME}\"\nhost_name = \"home.example.net\"\nuser_name = \"homemx-owner\"\ncheck_interval_seconds = 60\npassword_file = \"secrets/dyndns.password\"\nca_certificate = \"{ca}\"\ncheck_ip = [\"https://{CHECKIP_NAME}/ip\", \"https://{DYNDNS_NAME}/ip\"]\n",
        ca = ca.ca_certificate.display()
    ));
    std::fs::write(directory.join("homemx.toml"), text).unwrap();
    std::fs::write(directory.join("message.eml"), b"From: alice@example.org\r\nTo: carol@remote.example\r\nSubject: waits for the clock\r\n\r\nHello\r\n").unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST_ADDRESS).unwrap();
    add_wan_address(&namespace, POP_ADDRESS).unwrap();
    let zone = directory.join("zone.json");
    let names = serde_json::json!({"ttl": 60, "names": {
        SMARTHOST_NAME: {"A": [SMARTHOST_ADDRESS.to_string()]},
        POP_NAME: {"A": [POP_ADDRESS.to_string()]},
        "ntp.example.net": {"A": [ROUTER.to_string()]},
    }});
    std::fs::write(&zone, serde_json::to_vec(&names).unwrap()).unwrap();
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns")).expect("DNS server");
    // No SNTP server: the wall clock stays unknown.

    let flash = directory.join("flash.img");
    flash_image::create(&flash).unwrap();
    let machine = Machine::start(&MachineConfig::on_network(elf.clone(), flash, &network), &directory).expect("QEMU starts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up");
    let owner = Owner::at(&directory);
    provision_without_backup_mx_anchor(&owner);
    let status = owner.status();
    assert_eq!(status["credentials"]["smarthost_password"], true, "{status}");
    assert_eq!(status["credentials"]["backup_mx_password"], true, "{status}");

    // The smarthost: the password is loaded, then delivery waits for the clock.
    let reply = send_mail(&namespace, LAN_CLIENT, format!("{APPLIANCE}:587"), "alice@example.org", &["carol@remote.example"], &directory.join("message.eml"), false)
        .expect("smtp client runs");
    assert_eq!(reply["data"][0].as_u64(), Some(250), "LAN submission accepted: {reply}");
    machine.log.wait_for(0, "deferred: waiting for the time", Duration::from_secs(90)).expect("smarthost delivery returns early: no clock");
    // The backup MX: the password is loaded, then the fetch stops: no trust anchor.
    assert!(owner.homemx(&["fetch-now"]).status.success());
    machine.log.wait_for(0, "backup MX: no trust anchor or password provisioned", Duration::from_secs(90)).expect("the fetch returns early: no anchor");
    assert!(machine.log.lines().iter().all(|line| !line.contains("time: clock set")), "the clock must still be unknown");

    // The passphrase travels in the longest frame; `lock` and its answer are shorter.
    assert!(owner.homemx(&["lock"]).status.success());
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success());
    assert!(owner.homemx(&["lock"]).status.success());
    assert_no_secret_in_ram(&machine, &directory, &elf, "after-early-returns-and-lock");
}
