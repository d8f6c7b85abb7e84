//! A power cut while the device installs a new certificate chain (issue 17: "after restart the
//! device serves either the old or the new chain, never a mismatch of key and certificate"),
//! on the QEMU board: its flash is a file, so whatever was programmed before QEMU is killed
//! (SIGKILL) is there at the next start, as after a power cut.
//!
//! The installation is `homemx tls install` of a CA-signed chain for the device's key: the
//! same store function as the ACME run's installation (`write_chain`: the chain to the other
//! slot, one header write, the old slot's records removed). QEMU's gdbstub stops the guest at
//! the entry of `write_chain`'s poll function, then at a key-value store call inside it, and
//! QEMU is killed there:
//!
//! 1. at the second record write (the chain half written, the header not yet): after restart and
//!    unlock, port 25 completes a STARTTLS handshake with the old (self-signed) certificate;
//! 2. at the first removal (the header switched): port 25 completes it with the new leaf, and
//!    the chain verifies against the test CA.
//!
//! Every cut point of an installation, torn writes included, is swept on the host
//! (`firmware/services/src/store/identity/install_power_cuts.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use homemx_qemu::firmware::{function_address_containing, FirmwareBuild};
use homemx_qemu::gdb::Session;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::provider::{SntpConfig, SntpServer, TestCa};
use homemx_qemu::request_signer::RequestSigner;

const HOST: &str = "mx.example.org";
/// The poll function of the identity store's `write_chain` (async: its symbol has no plain name).
const WRITE_CHAIN: &str = "15homemx_services5store8identity11write_chain28_$u7b$$u7b$closure$u7d$$u7d$17h";
/// The poll functions of the key-value store's `store` and `remove`.
const STORE: &str = "12homemx_spool9key_value30KeyValueStore$LT$F$C$R$C$C$GT$5store28_$u7b$$u7b$closure$u7d$$u7d$17h";
const REMOVE: &str = "12homemx_spool9key_value30KeyValueStore$LT$F$C$R$C$C$GT$6remove28_$u7b$$u7b$closure$u7d$$u7d$17h";

/// What port 25 presented after STARTTLS (not verified: the self-signed certificate is one of
/// the answers): whether the handshake completed (with a key that does not match the
/// certificate it cannot: the client checks the handshake's signature with the certificate's
/// key), the leaf's SHA-256 fingerprint, and whether the chain verified against `ca`.
struct Presented {
    completed: bool,
    fingerprint: String,
    verified: bool,
    text: String,
}

fn fingerprint(pem: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), pem).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "a certificate: {}", String::from_utf8_lossy(pem));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn port_25(namespace: &str, ca: &Path) -> Presented {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client", "-starttls", "smtp", "-servername", HOST])
        .args(["-connect", &format!("{APPLIANCE}:25"), "-verify_hostname", HOST, "-CAfile"])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let completed = text.contains("New, TLSv1.") && !text.contains("Cipher is (NONE)");
    let begin = text.find("-----BEGIN CERTIFICATE-----");
    let end = text.find("-----END CERTIFICATE-----").map(|end| end + "-----END CERTIFICATE-----".len());
    let fingerprint = match (begin, end) {
        (Some(begin), Some(end)) => fingerprint(&text.as_bytes()[begin..end]),
        _ => String::new(),
    };
    Presented { completed, fingerprint, verified: text.contains("Verify return code: 0 (ok)"), text }
}

/// Port 25 once its handshake completes (the listener loads the identity after unlock).
fn port_25_once_up(namespace: &str, ca: &Path) -> Presented {
    let mut presented = port_25(namespace, ca);
    for _ in 0..20 {
        if presented.completed {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        presented = port_25(namespace, ca);
    }
    assert!(presented.completed, "port 25 completes a TLS handshake: {}", presented.text);
    presented
}

/// Runs `homemx tls install chain` while the gdbstub stops the guest at each of `stops` in turn
/// (function addresses), then kills QEMU there; returns the CLI's thread (its result does not
/// matter: the device went away).
fn install_and_cut(machine: &mut Machine, directory: &Path, chain: &Path, stops: &[u32]) -> JoinHandle<Output> {
    let mut gdb = Session::attach(&machine.gdb_socket()).expect("gdbstub");
    let (owner, chain) = (Owner::at(directory), chain.to_str().unwrap().to_string());
    let install = std::thread::spawn(move || owner.homemx(&["tls", "install", &chain]));
    for (index, &address) in stops.iter().enumerate() {
        if index > 0 {
            // Off the last stop: a breakpoint set again at the same address would stop at once.
            gdb.step().expect("a step");
        }
        gdb.run_to(address & !1, Duration::from_secs(60)).unwrap_or_else(|error| panic!("the installation reaches {address:#x}: {error}"));
    }
    machine.kill();
    install
}

/// Starts QEMU again on the same flash and unlocks.
fn restart(config: &MachineConfig, directory: &Path, owner: &Owner) -> Machine {
    let machine = Machine::start(config, directory).expect("QEMU restarts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up after the cut");
    assert!(owner.homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success(), "unlock after the cut");
    machine.log.wait_for(0, "unlocked; spool:", Duration::from_secs(30)).expect("unlocked");
    machine
}

#[test]
fn a_power_cut_while_a_chain_is_installed_leaves_the_old_or_the_new_certificate_with_its_key() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let (write_chain, store, remove) = (
        function_address_containing(&elf, WRITE_CHAIN).unwrap(),
        function_address_containing(&elf, STORE).unwrap(),
        function_address_containing(&elf, REMOVE).unwrap(),
    );
    let directory = new_run_directory("identity-power-cut").unwrap();
    let ca = TestCa::create_for(&directory.join("ca"), &[]).expect("test CA");
    write_secrets(&directory);
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &["alice@example.org"], "")).unwrap();
    let network = IsolatedNetwork::create(&directory).expect("isolated network");
    let namespace = network.namespace().to_string();
    let config = MachineConfig::on_network(elf.clone(), directory.join("flash.img"), &network);
    let (mut machine, owner) = homemx_qemu::owner::boot_provisioned(elf, &network, &directory);
    let _sntp = SntpServer::start(Some(&namespace), &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp")).expect("SNTP server");
    machine.log.wait_for(0, "tls: self-signed certificate for mx.example.org made", Duration::from_secs(60)).expect("self-signed certificate");
    let old = port_25_once_up(&namespace, &ca.ca_certificate);
    assert!(!old.verified, "the self-signed certificate does not verify against the CA: {}", old.text);

    let request = directory.join("device.csr");
    assert!(owner.homemx(&["tls", "csr", "--out", request.to_str().unwrap()]).status.success(), "tls csr");
    let signer = RequestSigner::new(&directory.join("device-ca"), &ca.ca_certificate, &ca.directory.join("ca.key"));
    let chain: PathBuf = signer.issue(&request, HOST, None, "chain.pem");
    // (the chain's first certificate: its leaf)
    let new_leaf = fingerprint(&std::fs::read(&chain).unwrap());
    assert_ne!(new_leaf, old.fingerprint);

    // 1. Cut at the second record write: the header still names the old chain.
    let install = install_and_cut(&mut machine, &directory, &chain, &[write_chain, store, store]);
    machine = restart(&config, &directory, &owner);
    let _ = install.join();
    let presented = port_25_once_up(&namespace, &ca.ca_certificate);
    assert_eq!(presented.fingerprint, old.fingerprint, "cut before the header: the old certificate: {}", presented.text);

    // 2. Cut at the first removal of the old chain's records: the header names the new chain.
    let install = install_and_cut(&mut machine, &directory, &chain, &[write_chain, remove]);
    let _machine = restart(&config, &directory, &owner);
    let _ = install.join();
    let presented = port_25_once_up(&namespace, &ca.ca_certificate);
    assert_eq!(presented.fingerprint, new_leaf, "cut after the header: the new leaf: {}", presented.text);
    assert!(presented.verified, "the new chain verifies against the CA: {}", presented.text);
    eprintln!("identity power cut: old certificate kept before the header switch, new chain after it; both handshakes complete");
}
