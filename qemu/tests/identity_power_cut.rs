//! A power cut while the device installs a new certificate chain (issue 17: "after restart the
//! device serves either the old or the new chain, never a mismatch of key and certificate"),
//! on the QEMU board, through `homemx tls install` of a CA-signed chain for the device's key:
//! the same store function as the ACME run's installation (`write_chain`: the chain to the other
//! slot, one header write, the old slot's records removed). QEMU is killed inside it
//! (`homemx_qemu::chain_power_cut`):
//!
//! 1. at the second record write (the chain half written, the header not yet): after restart and
//!    unlock, port 25 completes a STARTTLS handshake with the old (self-signed) certificate;
//! 2. at the first removal (the header switched): port 25 completes it with the new leaf, and
//!    the chain verifies against the test CA.
//!
//! `tests/acme.rs` cuts a renewal the same way; every cut point of an installation, torn writes
//! included, is swept on the host (`firmware/services/src/store/identity/install_power_cuts.rs`).

use std::time::Duration;

use homemx_qemu::chain_power_cut::{cut_inside, fingerprint, port_25_once_up, restart_unlocked, CutPoints};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, ROUTER};
use homemx_qemu::owner::{provider_configuration, write_secrets};
use homemx_qemu::provider::{SntpConfig, SntpServer, TestCa};
use homemx_qemu::request_signer::RequestSigner;

const HOST: &str = "mx.example.org";

#[test]
fn a_power_cut_while_a_chain_is_installed_leaves_the_old_or_the_new_certificate_with_its_key() {
    let elf = FirmwareBuild::QEMU.build().expect("firmware builds");
    let cut_points = CutPoints::of(&elf).unwrap();
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
    let old = port_25_once_up(&namespace, HOST, &ca.ca_certificate);
    assert!(!old.verified, "the self-signed certificate does not verify against the CA: {}", old.text);

    let request = directory.join("device.csr");
    assert!(owner.homemx(&["tls", "csr", "--out", request.to_str().unwrap()]).status.success(), "tls csr");
    let signer = RequestSigner::new(&directory.join("device-ca"), &ca.ca_certificate, &ca.directory.join("ca.key"));
    let chain = signer.issue(&request, HOST, None, "chain.pem");
    // (the chain's first certificate: its leaf)
    let new_leaf = fingerprint(&std::fs::read(&chain).unwrap());
    assert_ne!(new_leaf, old.fingerprint);
    let install = ["tls", "install", chain.to_str().unwrap()];

    // 1. Cut at the second record write: the header still names the old chain.
    let cli = cut_inside(&mut machine, &directory, &install, &cut_points.before_the_switch(), Duration::from_secs(60));
    machine = restart_unlocked(&config, &directory);
    let _ = cli.join();
    let presented = port_25_once_up(&namespace, HOST, &ca.ca_certificate);
    assert_eq!(presented.fingerprint, old.fingerprint, "cut before the header: the old certificate: {}", presented.text);

    // 2. Cut at the first removal of the old chain's records: the header names the new chain.
    let cli = cut_inside(&mut machine, &directory, &install, &cut_points.after_the_switch(), Duration::from_secs(60));
    let _machine = restart_unlocked(&config, &directory);
    let _ = cli.join();
    let presented = port_25_once_up(&namespace, HOST, &ca.ca_certificate);
    assert_eq!(presented.fingerprint, new_leaf, "cut after the header: the new leaf: {}", presented.text);
    assert!(presented.verified, "the new chain verifies against the CA: {}", presented.text);
    eprintln!("identity power cut: old certificate kept before the header switch, new chain after it; both handshakes complete");
}
