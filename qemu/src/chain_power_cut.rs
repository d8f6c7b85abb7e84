//! A power cut inside the installation of a certificate chain (issue 17: "after restart the
//! device serves either the old or the new chain, never a mismatch of key and certificate"):
//! the gdbstub stops the guest at the entry of the identity store's `write_chain` (the one
//! installation path, for `homemx tls install` and the ACME run alike), then at a key-value
//! store call inside it, and QEMU is killed there (its flash is a file: what was programmed
//! stays, as after a power cut); then QEMU starts again and is unlocked, and port 25's STARTTLS
//! shows which certificate the device presents.
//!
//! Used by `tests/identity_power_cut.rs` and `tests/acme.rs`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::firmware::function_address_containing;
use crate::gdb::Session;
use crate::machine::{Machine, MachineConfig};
use crate::network::APPLIANCE;
use crate::owner::Owner;
use crate::Result;

/// The poll function of the identity store's `write_chain` (async: its symbol has no plain name).
const WRITE_CHAIN: &str = "15homemx_services5store8identity11write_chain28_$u7b$$u7b$closure$u7d$$u7d$17h";
/// The poll functions of the key-value store's `store` and `remove`.
const STORE: &str = "12homemx_spool9key_value30KeyValueStore$LT$F$C$R$C$C$GT$5store28_$u7b$$u7b$closure$u7d$$u7d$17h";
const REMOVE: &str = "12homemx_spool9key_value30KeyValueStore$LT$F$C$R$C$C$GT$6remove28_$u7b$$u7b$closure$u7d$$u7d$17h";

/// Where an installation can be cut, as gdbstub stops (function addresses in the image).
pub struct CutPoints {
    write_chain: u32,
    store: u32,
    remove: u32,
}

impl CutPoints {
    /// The functions' addresses in `elf`.
    pub fn of(elf: &Path) -> Result<CutPoints> {
        Ok(CutPoints {
            write_chain: function_address_containing(elf, WRITE_CHAIN)?,
            store: function_address_containing(elf, STORE)?,
            remove: function_address_containing(elf, REMOVE)?,
        })
    }

    /// At the second record write: the new chain's first record is written, the header (which
    /// comes after the whole chain) still names the old chain.
    pub fn before_the_switch(&self) -> Vec<u32> {
        vec![self.write_chain, self.store, self.store]
    }

    /// At the first removal of the old chain's records: the header names the new chain.
    pub fn after_the_switch(&self) -> Vec<u32> {
        vec![self.write_chain, self.remove]
    }
}

/// Runs the CLI with `arguments` (an installation: `tls install FILE`, `tls renew`) while the
/// gdbstub stops the guest at each of `stops` in turn, then kills QEMU there; returns the CLI's
/// thread (its result does not matter: the device went away). `timeout` bounds each stop.
pub fn cut_inside(machine: &mut Machine, directory: &Path, arguments: &[&str], stops: &[u32], timeout: Duration) -> JoinHandle<Output> {
    let mut gdb = Session::attach(&machine.gdb_socket()).expect("gdbstub");
    let owner = Owner::at(directory);
    let arguments: Vec<String> = arguments.iter().map(|argument| argument.to_string()).collect();
    let cli = std::thread::spawn(move || owner.homemx(&arguments.iter().map(String::as_str).collect::<Vec<_>>()));
    for (index, &address) in stops.iter().enumerate() {
        if index > 0 {
            // Off the last stop: a breakpoint set again at the same address would stop at once.
            gdb.step().expect("a step");
        }
        gdb.run_to(address & !1, timeout).unwrap_or_else(|error| panic!("the installation reaches {address:#x}: {error}"));
    }
    machine.kill();
    cli
}

/// Starts QEMU again on the same flash and unlocks.
pub fn restart_unlocked(config: &MachineConfig, directory: &Path) -> Machine {
    let machine = Machine::start(config, directory).expect("QEMU restarts");
    machine.wait_ready(0, Duration::from_secs(60)).expect("network up after the cut");
    assert!(Owner::at(directory).homemx(&["unlock", "--passphrase-file", "passphrase"]).status.success(), "unlock after the cut");
    machine.log.wait_for(0, "unlocked; spool:", Duration::from_secs(30)).expect("unlocked");
    machine
}

/// SHA-256 fingerprint (openssl's line) of the first certificate in `pem`.
pub fn fingerprint(pem: &[u8]) -> String {
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

/// What port 25 presented after STARTTLS, not verified (a self-signed certificate can be one
/// of the answers).
pub struct Presented {
    /// The handshake completed: with a key that does not match the certificate it cannot (the
    /// client checks the handshake's signature with the certificate's key).
    pub completed: bool,
    /// The leaf's fingerprint ([`fingerprint`]).
    pub fingerprint: String,
    /// The chain verified against the CA given for `host`.
    pub verified: bool,
    /// What openssl said.
    pub text: String,
}

fn port_25(namespace: &str, host: &str, ca: &Path) -> Presented {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "timeout", "30", "openssl", "s_client", "-starttls", "smtp", "-servername", host])
        .args(["-connect", &format!("{APPLIANCE}:25"), "-verify_hostname", host, "-CAfile"])
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

/// Port 25 (from inside `namespace`) once its STARTTLS handshake completes (the listener loads
/// the identity after unlock), the chain checked against `ca` for `host`.
pub fn port_25_once_up(namespace: &str, host: &str, ca: &Path) -> Presented {
    let mut presented = port_25(namespace, host, ca);
    for _ in 0..20 {
        if presented.completed {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        presented = port_25(namespace, host, ca);
    }
    assert!(presented.completed, "port 25 completes a TLS handshake: {}", presented.text);
    presented
}
