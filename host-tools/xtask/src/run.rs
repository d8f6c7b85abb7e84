//! `cargo xtask run`: boots the appliance in QEMU and keeps it up until Ctrl-C, then tears
//! down everything it started (QEMU, peers, the namespace) by PID and by name.
//!
//! Default (root): the demo of [`homemx_qemu::demo`]: the isolated test network with a LAN
//! mailbox host, the provider's smarthost, DNS, SNTP and a WAN sender; the appliance is
//! provisioned with a demo configuration, one message goes in from the WAN and one out from the
//! LAN, and once both arrived it prints where to look (the status page on 127.0.0.1:8080, the
//! mailbox folder, the smarthost's folder, the `homemx` alias). `--check` (CI) exits 0 there,
//! once the status page answered through the forward with a headline that says mail flows, and
//! non-zero on any failure. Where the isolated network cannot be made (not root, no `ip`, no
//! dnsmasq, …: tried by making one, see [`isolated_network_can_be_made`]) it says so with the
//! reason and falls back to `--bare`; `--check` fails with the reason instead.
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

const USAGE: &str = "usage: cargo xtask run [--check | --bare | --isolated-network]";

/// What `cargo xtask run` does.
#[derive(Debug, PartialEq, Eq)]
enum RunPlan {
    /// The demo; `check`: exit once mail flows (CI), instead of staying up.
    Demo { check: bool },
    /// An unprovisioned appliance, on the isolated network (`isolated`) or QEMU user networking;
    /// `fallback`: why the demo cannot run here, to be said first.
    Unprovisioned { isolated: bool, fallback: Option<String> },
}

/// Decides from the arguments and, for the demo only, whether the isolated network can be made
/// (`isolated_network`: `Err(reason)` when not).
fn plan(arguments: &[String], isolated_network: impl FnOnce() -> std::result::Result<(), String>) -> Result<RunPlan> {
    let flag = match arguments {
        [] => None,
        [flag] => Some(flag.as_str()),
        _ => return Err(USAGE.into()),
    };
    match flag {
        None => Ok(match isolated_network() {
            Ok(()) => RunPlan::Demo { check: false },
            Err(reason) => RunPlan::Unprovisioned { isolated: false, fallback: Some(reason) },
        }),
        Some("--check") => match isolated_network() {
            Ok(()) => Ok(RunPlan::Demo { check: true }),
            Err(reason) => Err(format!("--check: the demo needs the isolated test network, which cannot be made here: {reason}").into()),
        },
        Some("--bare") => Ok(RunPlan::Unprovisioned { isolated: false, fallback: None }),
        Some("--isolated-network") => Ok(RunPlan::Unprovisioned { isolated: true, fallback: None }),
        Some(_) => Err(USAGE.into()),
    }
}

/// Whether the isolated test network can be made here: makes one (namespace, bridge, TAP,
/// dnsmasq) in a scratch folder and removes it again; the reason when it cannot.
fn isolated_network_can_be_made() -> std::result::Result<(), String> {
    let scratch = std::env::temp_dir().join(format!("homemx-network-check-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|error| format!("cannot create {}: {error}", scratch.display()))?;
    let made = IsolatedNetwork::create(&scratch).map(drop).map_err(|error| error.to_string());
    let _ = std::fs::remove_dir_all(&scratch);
    made
}

/// What `cargo xtask run` says before it falls back to `--bare`.
fn fallback_notice(reason: &str) -> String {
    format!(
        "xtask: the isolated test network cannot be made here: {reason}\n\
         xtask: so no demo with mail flowing; falling back to `cargo xtask run --bare`: an unprovisioned appliance on QEMU\n\
         xtask: user networking (restrict=on) that answers 421 to mail until it is provisioned (see README, \"Provisioning\").\n\
         xtask: run `cargo xtask run` as root (network namespaces and TAP devices need it) to see mail flow."
    )
}

/// `cargo xtask run [--check | --bare | --isolated-network]`.
pub fn run(arguments: &[String]) -> Result<()> {
    match plan(arguments, isolated_network_can_be_made)? {
        RunPlan::Demo { check } => run_demo(check),
        RunPlan::Unprovisioned { isolated, fallback } => {
            if let Some(reason) = fallback {
                eprintln!("{}", fallback_notice(&reason));
            }
            run_unprovisioned(isolated)
        }
    }
}

/// The demo: set up, send, wait until mail flowed; then stay up until Ctrl-C, or exit.
fn run_demo(check: bool) -> Result<()> {
    install_stop_handler();
    let options =
        DemoOptions { directory: repository_root().join("qemu/run/demo-mail"), status_page_port: DEMO_HTTP_PORT, echo_log: !check };
    eprintln!("xtask: the demo starts afresh in {} (removed first)", options.directory.display());
    let mut demo = match Demo::start(&options) {
        Ok(demo) => demo,
        Err(error) if STOP_REQUESTED.load(Ordering::SeqCst) => {
            return Err(format!("interrupted while setting up ({error}); everything it started is stopped").into())
        }
        Err(error) => return Err(error),
    };
    let headline = demo.headline_says_mail_flows()?;
    eprintln!("xtask: the status page through 127.0.0.1:{} says: {headline}", demo.status_page_port());
    demo.print_where_to_look();
    if check {
        eprintln!("xtask: both messages arrived and the headline says mail flows; --check: stopping everything");
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
        tamper_loop: true,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|flag| flag.to_string()).collect()
    }

    const NOT_ROOT: &str = "not root (effective user id 1000): the isolated test network needs root (network namespaces and TAP devices)";

    #[test]
    fn the_demo_runs_where_the_isolated_network_can_be_made() {
        assert_eq!(plan(&[], || Ok(())).unwrap(), RunPlan::Demo { check: false });
        assert_eq!(plan(&arguments(&["--check"]), || Ok(())).unwrap(), RunPlan::Demo { check: true });
    }

    #[test]
    fn where_it_cannot_be_made_run_falls_back_to_bare_with_the_reason() {
        let fallback = plan(&[], || Err(NOT_ROOT.to_string())).unwrap();
        assert_eq!(fallback, RunPlan::Unprovisioned { isolated: false, fallback: Some(NOT_ROOT.to_string()) });
        let notice = fallback_notice(NOT_ROOT);
        assert!(notice.starts_with(&format!("xtask: the isolated test network cannot be made here: {NOT_ROOT}\n")), "{notice}");
        assert!(notice.contains("falling back to `cargo xtask run --bare`"), "{notice}");
    }

    #[test]
    fn check_fails_with_the_reason_instead_of_falling_back() {
        let error = plan(&arguments(&["--check"]), || Err(NOT_ROOT.to_string())).unwrap_err().to_string();
        assert!(error.starts_with("--check: the demo needs the isolated test network") && error.ends_with(NOT_ROOT), "{error}");
    }

    #[test]
    fn bare_and_isolated_network_do_not_try_to_make_the_demo_network() {
        let untried = || -> std::result::Result<(), String> { panic!("the isolated network is not tried for an unprovisioned run") };
        assert_eq!(plan(&arguments(&["--bare"]), untried).unwrap(), RunPlan::Unprovisioned { isolated: false, fallback: None });
        assert_eq!(plan(&arguments(&["--isolated-network"]), untried).unwrap(), RunPlan::Unprovisioned { isolated: true, fallback: None });
        for wrong in [&["--exit-when-mail-flows"][..], &["--check", "--bare"], &["--chek"]] {
            assert_eq!(plan(&arguments(wrong), untried).unwrap_err().to_string(), USAGE, "{wrong:?}");
        }
    }
}
