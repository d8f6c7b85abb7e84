//! `cargo xtask run`: boots the appliance in QEMU with a demo network and shows its log
//! until Ctrl-C, then tears QEMU (and the namespace, if any) down.
//!
//! Default network: QEMU user networking with `restrict=on`; the appliance's HTTP port is
//! forwarded to 127.0.0.1 only. `--isolated-network`: a TAP in a fresh network namespace
//! with DHCP, LAN and WAN peer addresses (needs root), reachable with `ip netns exec`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{Machine, MachineConfig, NetworkMode};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, APPLIANCE_MAC, TAP_DEVICE};
use homemx_qemu::{flash_image, repository_root, Result};

/// Host port on 127.0.0.1 forwarded to the appliance's HTTP port in the default demo.
const DEMO_HTTP_PORT: u16 = 8080;

static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

fn install_stop_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
    }
}

/// `cargo xtask run [--isolated-network]`.
pub fn run(arguments: &[String]) -> Result<()> {
    let isolated = match arguments {
        [] => false,
        [flag] if flag == "--isolated-network" => true,
        _ => return Err("usage: cargo xtask run [--isolated-network]".into()),
    };
    let elf = FirmwareBuild::QEMU.build()?;
    let directory = repository_root().join("qemu/run/demo");
    std::fs::create_dir_all(&directory)?;
    let flash = directory.join("flash.img");
    if flash_image::create_if_missing(&flash)? {
        eprintln!("xtask: new device: erased flash with a fresh entropy seed at {}", flash.display());
    } else {
        eprintln!("xtask: the device keeps its flash from the last run ({}); delete it to start fresh", flash.display());
    }
    install_stop_handler();
    let network = if isolated { Some(IsolatedNetwork::create(&directory)?) } else { None };
    let mode = match &network {
        Some(network) => NetworkMode::Tap { namespace: network.namespace().into(), device: TAP_DEVICE.into() },
        None => NetworkMode::UserRestricted { forwards: vec![(DEMO_HTTP_PORT, 80)] },
    };
    let config = MachineConfig {
        elf,
        flash_file: flash,
        network: mode,
        mac_address: APPLIANCE_MAC.into(),
        instruction_counting: false,
        operation_counts: false,
        echo_log: true,
    };
    let mut machine = Machine::start(&config, &directory)?;
    machine.wait_ready(0, Duration::from_secs(60))?;
    eprintln!();
    match &network {
        Some(network) => {
            let namespace = network.namespace();
            eprintln!("homemx is up at {APPLIANCE} in network namespace {namespace}:");
            eprintln!("  LAN peer:  ip netns exec {namespace} curl --interface 192.168.77.10 http://{APPLIANCE}/health");
            eprintln!("  WAN peer:  ip netns exec {namespace} curl --interface 203.0.113.10 http://{APPLIANCE}/health   (403)");
            eprintln!("  UDP echo:  ip netns exec {namespace} sh -c 'echo hi | nc -u -w1 -s 192.168.77.10 {APPLIANCE} 7'");
        }
        None => {
            eprintln!("homemx is up (QEMU user networking, restrict=on; only 127.0.0.1:{DEMO_HTTP_PORT} reaches it):");
            eprintln!("  curl -H 'Host: homemx.lan' http://127.0.0.1:{DEMO_HTTP_PORT}/health");
            eprintln!("  (the appliance answers only its own name or address in Host:, a DNS-rebinding defence;");
            eprintln!("   for a browser add '127.0.0.1 homemx.lan' to /etc/hosts and open http://homemx.lan:{DEMO_HTTP_PORT}/health)");
        }
    }
    eprintln!("  serial console: socat - UNIX-CONNECT:{}  (try: version)", machine.run_directory().join("serial.sock").display());
    eprintln!("  log: {}   Ctrl-C stops QEMU.", machine.run_directory().join("firmware.log").display());
    while !STOP_REQUESTED.load(Ordering::SeqCst) && machine.is_running() {
        std::thread::sleep(Duration::from_millis(200));
    }
    machine.kill();
    drop(network);
    eprintln!("xtask: QEMU stopped");
    Ok(())
}
