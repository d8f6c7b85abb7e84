//! `cargo xtask throughput [--messages N]`: messages per second through the appliance's MX and
//! through Postfix under the same load, on the isolated test network (needs root, like the
//! end-to-end tests), one after the other in one run on the same machine.
//!
//! The load ([`homemx_qemu::smtp_load`]): 4 concurrent senders, one WAN address each (the
//! appliance serves at most two sessions per client address), N messages of 10 KB to
//! alice@example.org, one SMTP session per message; only `250` after the data counts, and both
//! MXs answer it only once the message is durable (the appliance after its spool commit to
//! flash, Postfix after cleanup's fsync of the queue file).
//!
//! 1. The appliance in QEMU, provisioned with the real CLI, its LAN mailbox host (LMTP) up so
//!    the spool drains while mail arrives; the run waits until every accepted message reached
//!    the mailbox host and reads `/health` (stack high-water, heap in use).
//! 2. The appliance stopped, Postfix ([`homemx_qemu::postfix_mx`]) on a WAN address of the same
//!    namespace takes the same load into a Maildir, its processes' memory (PSS) sampled
//!    throughout; the run waits until every accepted message is in the Maildir.
//!
//! The appliance runs under QEMU's TCG on the host's clock (no `-icount`): its figure is what
//! this emulation on this host sustains, not the real board's.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use homemx_qemu::firmware::{image_size, FirmwareBuild};
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, WAN_CLIENT};
use homemx_qemu::owner::{provider_configuration, write_secrets, Owner};
use homemx_qemu::peers::{health, MailboxHost};
use homemx_qemu::postfix_mx::{PostfixMx, PostfixMxConfig};
use homemx_qemu::process_memory::{peak_while, TreeMemory};
use homemx_qemu::provider::{add_wan_address, TestCa};
use homemx_qemu::smtp_load::{run_load, LoadConfig, LoadReport};
use homemx_qemu::{flash_image, Result};

/// Concurrent senders.
pub const SENDERS: usize = 4;
/// Bytes per message.
pub const MESSAGE_BYTES: usize = 10 * 1024;
/// The messages `cargo xtask throughput` sends by default.
pub const DEFAULT_MESSAGES: usize = 2_000;
/// One source address per sender (the first is the network's WAN client).
const SOURCES: [Ipv4Addr; SENDERS] = [WAN_CLIENT, Ipv4Addr::new(203, 0, 113, 11), Ipv4Addr::new(203, 0, 113, 12), Ipv4Addr::new(203, 0, 113, 13)];
/// Where Postfix listens inside the namespace.
const POSTFIX_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
const RECIPIENT: &str = "alice@example.org";
/// Acceptances whose rate is printed apart: fewer than the appliance's spool table holds
/// (`SPOOL_MESSAGES` in firmware/services/src/storage.rs, 128), so it is the MX's rate before a
/// full table holds it back to the delivery's pace.
const BURST: usize = 100;
/// How often Postfix's memory is sampled.
const MEMORY_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// The appliance's memory: static RAM from the image, the rest from `/health` after the load.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplianceMemory {
    /// `.data` + `.bss` + `.uninit` of the image (the TLS heap's 64 KB and every task's
    /// future included).
    pub static_ram_bytes: u64,
    /// The main stack's high-water mark since boot.
    pub stack_high_water_bytes: u64,
    /// Heap bytes allocated when `/health` was read (the heap serves TLS only; `/health` has
    /// no heap high-water).
    pub heap_used_bytes: u64,
    /// The longest single task poll since boot, µs (host time).
    pub longest_poll_microseconds: u64,
    /// SysTick counts (25 MHz) the firmware was busy during the load and the drain.
    pub busy_core_clock_counts: u64,
}

/// What `measure_throughput` measured.
#[derive(Clone, Debug)]
pub struct ThroughputFigures {
    /// Messages sent to each MX.
    pub messages: usize,
    /// Accepted messages per second through the appliance.
    pub appliance_messages_per_second: f64,
    /// Accepted messages per second through Postfix.
    pub postfix_messages_per_second: f64,
    /// Appliance / Postfix.
    pub ratio: f64,
    /// The load against the appliance (accepted, failed, refusals, latencies).
    pub appliance: ApplianceRun,
    /// The load against Postfix.
    pub postfix: PostfixRun,
}

/// The appliance's part.
#[derive(Clone, Debug)]
pub struct ApplianceRun {
    /// What the load generator saw.
    pub load: LoadReport,
    /// Messages the LAN mailbox host stored.
    pub delivered: usize,
    /// From the load's start until the last accepted message was at the mailbox host.
    pub drained_after: Duration,
    /// Its memory.
    pub memory: ApplianceMemory,
}

/// Postfix's part.
#[derive(Clone, Debug)]
pub struct PostfixRun {
    /// What the load generator saw.
    pub load: LoadReport,
    /// Messages in the Maildir.
    pub delivered: usize,
    /// From the load's start until the last accepted message was in the Maildir.
    pub drained_after: Duration,
    /// The sample with the largest PSS summed over the master and its children, taken every
    /// 100 ms during the load and the delivery.
    pub peak_memory: TreeMemory,
}

fn load_config(target: SocketAddrV4, messages: usize) -> LoadConfig {
    LoadConfig::new(target, &SOURCES, SENDERS, messages, MESSAGE_BYTES, RECIPIENT)
}

/// How long the mail may take to reach its destination after the load (bounded).
fn drain_timeout(messages: usize) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(500) * messages as u32
}

fn number(value: &serde_json::Value, name: &str) -> Result<u64> {
    value[name].as_u64().ok_or_else(|| format!("/health has no {name}: {value}").into())
}

/// Boots the appliance on `network`, provisions it and runs the load against its port 25.
fn measure_appliance(elf: PathBuf, network: &IsolatedNetwork, directory: &Path, messages: usize) -> Result<ApplianceRun> {
    let static_ram_bytes = image_size(&elf)?.static_ram;
    // The mail path only: example.org with its LAN mailbox host, and the smarthost the
    // configuration requires (no outbound mail is sent). No backup MX and no DynDNS: their
    // checks run on the delivery task, and on this network without their peers each would
    // hold delivery up for a DNS timeout.
    write_secrets(directory);
    let ca = TestCa::create(&directory.join("ca"))?;
    std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &[RECIPIENT], ""))?;
    let namespace = network.namespace().to_string();
    let mailbox = MailboxHost::start(&namespace, "192.168.77.1:24", "lmtp", &directory.join("mailbox"))?;
    let flash = directory.join("flash.img");
    flash_image::create(&flash)?;
    let machine = Machine::start(&MachineConfig::on_network(elf, flash, network), directory)?;
    machine.wait_ready(0, Duration::from_secs(120))?;
    let owner = Owner::at(directory);
    for arguments in [&["keygen", "--no-passphrase", "--out", "admin.key"][..], &["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]] {
        let output = owner.homemx(arguments);
        if !output.status.success() {
            return Err(format!("homemx {}: {}", arguments[0], String::from_utf8_lossy(&output.stderr)).into());
        }
    }
    let (before, _) = health(network)?;
    let config = load_config(SocketAddrV4::new(APPLIANCE, 25), messages);
    let started = Instant::now();
    let load = network.run_inside(move || run_load(&config))??;
    let delivered = mailbox.wait_for_message_count(load.accepted, drain_timeout(messages))?;
    let drained_after = started.elapsed();
    let (after, _) = health(network)?;
    let memory = ApplianceMemory {
        static_ram_bytes,
        stack_high_water_bytes: number(&after, "stack_high_water_bytes")?,
        heap_used_bytes: number(&after, "heap_used_bytes")?,
        longest_poll_microseconds: number(&after, "longest_poll_microseconds")?,
        busy_core_clock_counts: number(&after, "busy_core_clock_counts")? - number(&before, "busy_core_clock_counts")?,
    };
    Ok(ApplianceRun { load, delivered, drained_after, memory })
}

/// Starts Postfix on a WAN address of `network` and runs the load against it.
fn measure_postfix(network: &IsolatedNetwork, directory: &Path, messages: usize) -> Result<PostfixRun> {
    let namespace = network.namespace();
    add_wan_address(namespace, POSTFIX_ADDRESS)?;
    let postfix = PostfixMx::start(Some(namespace), &PostfixMxConfig::new(POSTFIX_ADDRESS), &directory.join("postfix"))?;
    let pid = postfix.pid().ok_or("Postfix is not running")?;
    let config = load_config(postfix.config().listen, messages);
    let started = Instant::now();
    let (outcome, peak_memory) = peak_while(pid, MEMORY_SAMPLE_INTERVAL, || -> Result<(LoadReport, usize, Duration)> {
        let load = network.run_inside(move || run_load(&config))??;
        let delivered = postfix.wait_for_delivered(load.accepted, drain_timeout(messages))?;
        Ok((load, delivered, started.elapsed()))
    })?;
    let (load, delivered, drained_after) = outcome?;
    Ok(PostfixRun { load, delivered, drained_after, peak_memory })
}

/// Runs the load of `messages` messages through the appliance, then through Postfix (see the
/// module header), and returns the figures.
pub fn measure_throughput(messages: usize) -> Result<ThroughputFigures> {
    if messages == 0 {
        return Err("send at least one message".into());
    }
    let elf = FirmwareBuild::QEMU.build()?;
    let directory = new_run_directory("throughput")?;
    let network = IsolatedNetwork::create(&directory)?;
    for source in &SOURCES[1..] {
        network.add_client_address(*source)?;
    }
    let appliance = measure_appliance(elf, &network, &directory, messages)?;
    let postfix = measure_postfix(&network, &directory, messages)?;
    let appliance_messages_per_second = appliance.load.messages_per_second();
    let postfix_messages_per_second = postfix.load.messages_per_second();
    Ok(ThroughputFigures {
        messages,
        appliance_messages_per_second,
        postfix_messages_per_second,
        ratio: appliance_messages_per_second / postfix_messages_per_second,
        appliance,
        postfix,
    })
}

fn kibibytes(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

fn print_reasons(load: &LoadReport) {
    for (reason, times) in &load.reasons {
        println!("      {times} × {reason}");
    }
}

fn print_first_acceptances(load: &LoadReport) {
    if let Some(rate) = load.messages_per_second_of_first(BURST) {
        println!("    the first {} accepted at {rate:.2} messages/s", BURST.min(load.accepted));
    }
}

/// Prints the figures.
pub fn print_throughput(figures: &ThroughputFigures) {
    let appliance = &figures.appliance;
    let postfix = &figures.postfix;
    println!(
        "MX throughput: {} messages of {} B to {RECIPIENT}, {SENDERS} senders (one WAN address each), one SMTP session per message, 250 only when durable",
        figures.messages, MESSAGE_BYTES
    );
    println!("  appliance (QEMU mps2-an386, TCG, host clock; LMTP mailbox host up):");
    println!("    {}", appliance.load.summary());
    print_reasons(&appliance.load);
    print_first_acceptances(&appliance.load);
    println!("    {} at the LAN mailbox host, all {:.1} s after the load began", appliance.delivered, appliance.drained_after.as_secs_f64());
    println!(
        "    RAM: static {} (TLS heap included) + stack high-water {} = {}; heap in use after the load {} B; busy {:.1} s of core clock; longest poll {} µs",
        kibibytes(appliance.memory.static_ram_bytes),
        kibibytes(appliance.memory.stack_high_water_bytes),
        kibibytes(appliance.memory.static_ram_bytes + appliance.memory.stack_high_water_bytes),
        appliance.memory.heap_used_bytes,
        appliance.memory.busy_core_clock_counts as f64 / 25e6,
        appliance.memory.longest_poll_microseconds
    );
    println!("  Postfix (Debian's, virtual(8) into a Maildir, same namespace):");
    println!("    {}", postfix.load.summary());
    print_reasons(&postfix.load);
    print_first_acceptances(&postfix.load);
    println!("    {} in the Maildir, all {:.1} s after the load began", postfix.delivered, postfix.drained_after.as_secs_f64());
    println!(
        "    memory at the peak sample: PSS {} summed over {} processes (RSS {})",
        kibibytes(postfix.peak_memory.proportional_set_size),
        postfix.peak_memory.processes,
        kibibytes(postfix.peak_memory.resident_set_size)
    );
    println!(
        "  appliance {:.2} messages/s, Postfix {:.2} messages/s: ratio {:.3}",
        figures.appliance_messages_per_second, figures.postfix_messages_per_second, figures.ratio
    );
}

/// `cargo xtask throughput [--messages N]`.
pub fn run(arguments: &[String]) -> Result<()> {
    let messages = match arguments {
        [] => DEFAULT_MESSAGES,
        [flag, count] if flag == "--messages" => count.parse().map_err(|_| format!("--messages needs a number, not {count:?}"))?,
        _ => return Err("usage: cargo xtask throughput [--messages N]".into()),
    };
    let figures = measure_throughput(messages)?;
    print_throughput(&figures);
    Ok(())
}
