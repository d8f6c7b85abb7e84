//! `cargo xtask run`: boots the appliance in QEMU and keeps it up until Ctrl-C, then tears
//! down everything it started (QEMU, peers, the namespace) by PID and by name.
//!
//! Default (root): the demo of [`homemx_qemu::demo`]: the isolated test network with a LAN
//! mailbox host, the provider's smarthost, DNS, SNTP and a WAN sender; the appliance is
//! provisioned with a demo configuration, one message goes in from the WAN and one out from the
//! LAN, and once both arrived it prints where to look (the status page on 127.0.0.1:8080, the
//! mailbox folder, the smarthost's folder, the `homemx` alias). `--exit-when-mail-flows`
//! (CI) exits 0 there, after checking the forwarded status page, and non-zero on any failure.
//! Without root it says why and falls back to `--bare`.
//!
//! `--bare`: today's unprovisioned boot on QEMU user networking with `restrict=on`; the
//! appliance's HTTP port is forwarded to 127.0.0.1 only. `--isolated-network`: unprovisioned,
//! on a TAP in a fresh network namespace with DHCP, LAN and WAN peer addresses (root), reachable
//! with `ip netns exec`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use homemx_qemu::demo::{Demo, DemoOptions};
use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{Machine, MachineConfig, NetworkMode};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, APPLIANCE_MAC, TAP_DEVICE};
use homemx_qemu::{flash_image, repository_root, Result};

/// Host port on 127.0.0.1 forwarded to the appliance's HTTP port (status page and `/health`).
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

const USAGE: &str = "usage: cargo xtask run [--exit-when-mail-flows | --bare | --isolated-network]";

/// `cargo xtask run [--exit-when-mail-flows | --bare | --isolated-network]`.
pub fn run(arguments: &[String]) -> Result<()> {
    let flag = match arguments {
        [] => None,
        [flag] => Some(flag.as_str()),
        _ => return Err(USAGE.into()),
    };
    match flag {
        None | Some("--exit-when-mail-flows") => {
            let exit_when_mail_flows = flag.is_some();
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                run_demo(exit_when_mail_flows)
            } else if exit_when_mail_flows {
                Err("the demo needs root (it creates a network namespace and a TAP device for its isolated test network)".into())
            } else {
                eprintln!("xtask: not root, so no isolated test network (a network namespace and a TAP device need root):");
                eprintln!("xtask: falling back to `cargo xtask run --bare`, an unprovisioned appliance that answers 421 to mail;");
                eprintln!("xtask: run `sudo cargo xtask run` (or as root) to see mail flow.");
                run_unprovisioned(false)
            }
        }
        Some("--bare") => run_unprovisioned(false),
        Some("--isolated-network") => run_unprovisioned(true),
        Some(_) => Err(USAGE.into()),
    }
}

/// The demo: set up, send, wait until mail flowed; then stay up until Ctrl-C, or exit.
fn run_demo(exit_when_mail_flows: bool) -> Result<()> {
    install_stop_handler();
    let options = DemoOptions {
        directory: repository_root().join("qemu/run/demo-mail"),
        status_page_port: DEMO_HTTP_PORT,
        echo_log: !exit_when_mail_flows,
    };
    eprintln!("xtask: the demo starts afresh in {} (removed first)", options.directory.display());
    let mut demo = match Demo::start(&options) {
        Ok(demo) => demo,
        Err(error) if STOP_REQUESTED.load(Ordering::SeqCst) => {
            return Err(format!("interrupted while setting up ({error}); everything it started is stopped").into())
        }
        Err(error) => return Err(error),
    };
    let page = demo.fetch_status_page()?;
    eprintln!("xtask: the status page answered {} through 127.0.0.1:{} ({} bytes)", page.status, demo.status_page_port(), page.body.len());
    demo.print_where_to_look();
    if exit_when_mail_flows {
        eprintln!("xtask: mail flows; --exit-when-mail-flows: stopping everything");
        return Ok(());
    }
    eprintln!("Ctrl-C stops the appliance and its peers and removes the namespace.");
    while !STOP_REQUESTED.load(Ordering::SeqCst) && demo.is_running() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let running = demo.is_running();
    drop(demo);
    if !running && !STOP_REQUESTED.load(Ordering::SeqCst) {
        return Err("QEMU ended by itself; the demo is stopped".into());
    }
    eprintln!("xtask: QEMU, the peers and the namespace are gone");
    Ok(())
}

/// An unprovisioned appliance on QEMU user networking (`restrict=on`) or, with `isolated`, on
/// the isolated test network without peers; its flash survives in `qemu/run/demo`.
fn run_unprovisioned(isolated: bool) -> Result<()> {
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
