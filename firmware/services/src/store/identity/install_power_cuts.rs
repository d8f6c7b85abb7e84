//! Host test of issue 17's "a power cut during installation: after restart the device serves
//! either the old or the new chain, never a mismatch of key and certificate", on the real
//! store: the key-value store (`Settings`) on the simulated board's flash (`homemx_bsp_sim`:
//! the NOR model the stores' own tests use), the real `refresh` (key and self-signed
//! certificate), `install_acme_chain` (what the ACME run ends with) and `server_identity` (what
//! the TLS listener loads).
//!
//! Six installations in a row of CA-issued chains of different lengths (openssl: a root, an
//! intermediate, and the leaf signed from a certificate request, each chain accepted by
//! `check_chain` as homemx-acme's checks accept Pebble's), each for the identity's key
//! (`reuse_key`) or for a new key stored with the chain (`reuse_key = false`), in an order that
//! makes every change between the two; the first replaces the self-signed certificate, and the
//! store holds 15 KiB of other records, so its garbage collection runs inside some. For each
//! installation, from a copy of the flash as it was before, the power is cut at every program
//! and erase the installation makes, the operation left untouched, torn or completed; then the
//! device boots again (the store opened anew from the flash) and must present exactly the old
//! key and chain or exactly the new ones, the leaf naming the key; and the next installation on
//! that flash must succeed. (With the
//! header written before the chain the first cuts leave no identity; with the new chain written
//! over the old slot a cut leaves a mix whose leaf does not name the key: both fail here.) The
//! same on the QEMU board, at two cut points: `qemu/tests/identity_power_cut.rs` and, in an ACME
//! renewal, `qemu/tests/acme.rs`.
//!
//! Owns: nothing (a test). Calls: `mail_settings`, `random`, `storage`, `wall_clock`.

use std::path::{Path, PathBuf};
use std::process::Command;

use embassy_embedded_hal::flash::partition::Partition;
use embassy_futures::block_on;
use homemx_board::ResetCause;
use homemx_bsp_sim::flash::CutMode;
use homemx_bsp_sim::{SimConfig, World};
use homemx_wire::config::ConfigItem;
use rand_core::SeedableRng;

use super::*;
use crate::random::DerivedRandom;
use crate::storage::{BoardFlash, KEY_VALUE_STORE};

/// The data key the test's store is sealed with (unlock derives the real one).
const DATA_KEY: [u8; 32] = [0x17; 32];
/// The configured domain: the host name is `mx.` and the domain.
const DOMAIN: &str = "example.org";
const HOST: &str = "mx.example.org";
/// Installations in a row (the store's 32 KiB fill up: its garbage collection runs in some).
const INSTALLATIONS: usize = 6;
const SIMULATION: SimConfig = SimConfig::new(17);
/// Records of 256 bytes beside the identity (12 KiB of the store's 32 KiB).
const FILLER_RECORDS: usize = 60;

/// Boots the device on `world`'s flash and opens the key-value store as unlock does.
fn boot(world: &mut World) -> Settings {
    let (mut parts, _handles) = world.boot(ResetCause::PowerOn);
    let flash: &'static embassy_sync::mutex::Mutex<CriticalSectionRawMutex, BoardFlash> =
        Box::leak(Box::new(embassy_sync::mutex::Mutex::new(parts.flash)));
    let partition = Partition::new(flash, KEY_VALUE_STORE.start, KEY_VALUE_STORE.end - KEY_VALUE_STORE.start);
    let mut random = DerivedRandom::from_board(&mut parts.entropy);
    Settings::cached(partition, KEY_VALUE_STORE, &DATA_KEY, random.derive()).unwrap_or_else(|_| panic!("the store opens"))
}

/// openssl in `directory`, which must succeed.
fn openssl(directory: &Path, arguments: &[&str]) {
    let output = Command::new("openssl").current_dir(directory).args(arguments).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA like Pebble's (a P-256 root and an intermediate) in a directory of its own.
struct TestCa {
    directory: PathBuf,
}

impl TestCa {
    fn create() -> TestCa {
        let directory = std::env::temp_dir().join(format!("homemx-services-install-power-cuts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let authority = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n";
        std::fs::write(directory.join("root.cnf"), format!("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n{authority}")).unwrap();
        std::fs::write(directory.join("ca.ext"), format!("[v3]\n{authority}authorityKeyIdentifier=keyid\n")).unwrap();
        let root = ["-keyout", "root.key", "-subj", "/CN=Test Root", "-days", "30", "-config", "root.cnf", "-extensions", "v3", "-out", "root.pem"];
        openssl(&directory, &[&["req", "-x509"], &curve[..], &root[..]].concat());
        openssl(&directory, &[&["req", "-new"], &curve[..], &["-keyout", "intermediate.key", "-subj", "/CN=Test Intermediate", "-out", "intermediate.csr"]].concat());
        openssl(
            &directory,
            &["x509", "-req", "-in", "intermediate.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "2", "-days", "30"]
                .iter()
                .chain(&["-extfile", "ca.ext", "-extensions", "v3", "-out", "intermediate.pem"])
                .copied()
                .collect::<Vec<_>>(),
        );
        TestCa { directory }
    }

    /// A chain (PEM) for the device's certificate request `request` (DER): the leaf with
    /// `serial`, the intermediate, and the root too if `with_root`.
    fn issue(&self, request: &[u8], serial: u32, with_root: bool) -> Vec<u8> {
        let directory = &self.directory;
        std::fs::write(directory.join("device.csr.der"), request).unwrap();
        openssl(directory, &["req", "-inform", "DER", "-in", "device.csr.der", "-out", "device.csr"]);
        let leaf = format!("[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:{HOST}\n");
        std::fs::write(directory.join("leaf.ext"), leaf).unwrap();
        let serial = serial.to_string();
        openssl(
            directory,
            &["x509", "-req", "-in", "device.csr", "-CA", "intermediate.pem", "-CAkey", "intermediate.key", "-set_serial", &serial, "-days", "10"]
                .iter()
                .chain(&["-extfile", "leaf.ext", "-extensions", "v3", "-out", "leaf.pem"])
                .copied()
                .collect::<Vec<_>>(),
        );
        let mut chain = std::fs::read(directory.join("leaf.pem")).unwrap();
        chain.extend(std::fs::read(directory.join("intermediate.pem")).unwrap());
        if with_root {
            chain.extend(std::fs::read(directory.join("root.pem")).unwrap());
        }
        chain
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// One installation's chain and its key (`own_key`: stored with the chain, `reuse_key = false`).
struct Issued {
    key: [u8; 65],
    own_key: Option<DeviceKey>,
    chain: Vec<u8>,
}

/// What a boot after a cut found: the public key of the key and the chain the listener would
/// present.
fn presented(world: &mut World) -> ([u8; 65], Vec<u8>) {
    let mut settings = boot(world);
    let (key, chain) = block_on(server_identity(&mut settings)).expect("after the cut the device has an identity (key and chain)");
    (key.public_point(), chain)
}

/// Whether the leaf of `chain` names the public key `key` (a SEC1 point).
fn leaf_names(chain: &[u8], key: &[u8; 65]) -> bool {
    let spki = homemx_tls::der::subject_public_key_info(leaf(chain).unwrap_or_default());
    spki.is_some_and(|spki| spki.whole.ends_with(key))
}

#[test]
fn a_power_cut_at_any_flash_operation_of_an_installation_leaves_the_old_or_the_new_chain() {
    // The configuration's host name and the wall clock, as after unlock and SNTP.
    block_on(crate::mail_settings::reload(async |_| Ok((1, ConfigItem::Domain(DOMAIN.try_into().unwrap())))));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    crate::wall_clock::set(now.as_millis() as u64, embassy_time::Instant::now().as_millis());
    let host = HostName::new(HOST).unwrap();

    // The first unlock: the key and the self-signed certificate.
    let mut world = World::new(SIMULATION);
    let mut settings = boot(&mut world);
    let mut random = ChaCha20Rng::seed_from_u64(17);
    block_on(refresh(&mut settings, &mut random)).expect("the key and the self-signed certificate are made");
    let (identity_key, self_signed) = block_on(server_identity(&mut settings)).expect("an identity");
    // The rest of what the store keeps (configuration, credentials, counters), live records the
    // garbage collection must move.
    for index in 0..FILLER_RECORDS {
        let value = [index as u8; KEY_VALUE_CAPACITY];
        block_on(settings.store(Settings::key_for("filler", &[index as u8]), &value)).unwrap_or_else(|_| panic!("filler record {index}"));
    }
    drop(settings);

    // The chains, each for its key: the identity's (`reuse_key`) or a new one stored with the
    // chain (`reuse_key = false`), in an order that makes every change between the two.
    let ca = TestCa::create();
    let issued: Vec<Issued> = (0..INSTALLATIONS)
        .map(|installation| {
            let own_key = [false, true, true, false, true, false][installation % 6];
            let key = if own_key { DeviceKey::generate(&mut random) } else { DeviceKey::from_stored(&identity_key.to_stored()[..]).unwrap() };
            let request = identity::certificate_request(&key, &host).unwrap();
            let pem = ca.issue(&request, 100 + installation as u32, installation % 2 == 1);
            let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let certificates = identity::check_chain(&pem, &key, &host, seconds).unwrap_or_else(|error| panic!("the test CA's chain: {error}"));
            let chain = certificates.iter().flat_map(|certificate| certificate.as_ref().to_vec()).collect();
            Issued { key: key.public_point(), own_key: own_key.then_some(key), chain }
        })
        .collect();
    let install = |settings: &mut Settings, new: &Issued| block_on(install_acme_chain(settings, &new.chain, new.own_key.as_ref()));

    let mut old = (identity_key.public_point(), self_signed);
    let (mut cut_points, mut kept_old, mut took_new, mut erasing_installations) = (0, 0, 0, 0);
    for (installation, new) in issued.iter().enumerate() {
        let image = world.flash().snapshot();
        // The installation without a cut: how many programs and erases it makes.
        let mut whole = World::with_flash_image(SIMULATION, &image);
        let mut settings = boot(&mut whole);
        let (operations_before, erased_before) = (whole.flash().mutating_operations(), whole.flash().counters().sectors_erased);
        install(&mut settings, new).expect("the installation without a cut");
        let operations = whole.flash().mutating_operations() - operations_before;
        erasing_installations += usize::from(whole.flash().counters().sectors_erased > erased_before);
        drop(settings);
        assert_eq!(presented(&mut whole), (new.key, new.chain.clone()));

        for cut in 1..=operations {
            for mode in [CutMode::Clean, CutMode::Torn, CutMode::Completed] {
                let context = format!("installation {installation}, power cut at operation {cut} of {operations} ({mode:?})");
                let mut world = World::with_flash_image(SIMULATION, &image);
                let mut settings = boot(&mut world);
                world.cut_flash_power_at(cut, mode);
                // Its result does not matter: the power went.
                let _ = install(&mut settings, new);
                drop(settings);
                let (key, chain) = presented(&mut world);
                assert!(leaf_names(&chain, &key), "{context}: the leaf does not name the key");
                if (key, &chain) == (old.0, &old.1) {
                    kept_old += 1;
                } else if (key, &chain) == (new.key, &new.chain) {
                    took_new += 1;
                } else {
                    panic!("{context}: the key and chain presented ({} B) are neither the old ({} B) nor the new ({} B)", chain.len(), old.1.len(), new.chain.len());
                }
                // The next installation (the renewal after the restart) on that flash succeeds.
                let mut settings = boot(&mut world);
                install(&mut settings, new).unwrap_or_else(|error| panic!("{context}: the next installation: {error:?}"));
                drop(settings);
                assert_eq!(presented(&mut world), (new.key, new.chain.clone()), "{context}: after the next installation");
                cut_points += 1;
            }
        }
        let mut settings = boot(&mut world);
        install(&mut settings, new).expect("the installation");
        old = (new.key, new.chain.clone());
    }
    std::println!(
        "{INSTALLATIONS} installations, {cut_points} power cuts: the old chain {kept_old} times, the new one {took_new} times; {erasing_installations} installations erased a sector"
    );
    assert!(kept_old > 0 && took_new > 0, "the cuts fell both before and after the switch");
    assert!(erasing_installations > 0, "the store's garbage collection ran inside an installation");
}
