//! Mail figures in QEMU on the isolated test network (needs root, like the end-to-end tests):
//! messages per second through the MX, instructions per 10 KB message from first byte to
//! "250" (receive, spool commit; delivery excluded: the mailbox host is down), the largest
//! message accepted, and instructions per verified TLS 1.3 handshake with the smarthost.
//! One boot without instruction counting: messages per second, QEMU time, and the firmware's
//! busy core-clock counts (SysTick at 25 MHz: busy time, not instructions). Under `-icount`
//! the run does not get through (with `sleep=off` the guest's timers race ahead of the
//! peers; with `sleep=on` it still timed out here), so instruction counts of these paths are
//! not measured yet.

use std::net::SocketAddrV4;
use std::path::Path;
use std::time::{Duration, Instant};

use homemx_qemu::firmware::FirmwareBuild;
use homemx_qemu::machine::{new_run_directory, Machine, MachineConfig};
use homemx_qemu::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use homemx_qemu::owner::{Owner, PASSPHRASE, SMARTHOST_PASSWORD};
use homemx_qemu::peers::{http_get, send_mail};
use homemx_qemu::provider::{add_wan_address, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, TestCa, TlsMode, SMARTHOST_NAME};
use homemx_qemu::{flash_image, Result};

const INSTRUCTIONS_PER_COUNT: u64 = 40;
const MESSAGES: usize = 20;
const SMARTHOST: std::net::Ipv4Addr = std::net::Ipv4Addr::new(203, 0, 113, 25);

fn busy_counts(network: &IsolatedNetwork) -> Result<u64> {
    let target = SocketAddrV4::new(APPLIANCE, 80);
    let answer = network.run_inside(move || http_get(LAN_CLIENT, target, "192.168.77.2", "/health"))?.map_err(|error| error.to_string())?;
    let health: serde_json::Value = serde_json::from_str(&answer.body)?;
    health["busy_core_clock_counts"].as_u64().ok_or_else(|| "no busy counts in /health".into())
}

fn message_of(size: usize) -> Vec<u8> {
    let mut message = b"From: bench <bench@remote.test>\r\nTo: alice@example.org\r\nSubject: figures\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijk\r\n";
    while message.len() + line.len() <= size {
        message.extend_from_slice(line);
    }
    message
}

/// One boot: provisioned, smarthost reachable, mailbox host down.
fn run(instruction_counting: bool) -> Result<()> {
    let elf = FirmwareBuild::QEMU.build()?;
    let directory = new_run_directory(if instruction_counting { "mail-figures-icount" } else { "mail-figures" })?;
    let ca = TestCa::create(&directory.join("ca"))?;
    std::fs::create_dir_all(directory.join("secrets"))?;
    std::fs::write(directory.join("secrets/smarthost.password"), format!("{SMARTHOST_PASSWORD}\n"))?;
    std::fs::write(directory.join("passphrase"), format!("{PASSPHRASE}\n"))?;
    std::fs::write(
        directory.join("homemx.toml"),
        format!(
            "domains = [\"example.org\"]\nrecipients = [\"alice@example.org\"]\nlan_prefixes = [\"192.168.77.0/24\"]\nlan_relay_without_auth = true\n\n[lan_mailbox]\naddress = \"192.168.77.1\"\nport = 24\nprotocol = \"lmtp\"\n\n[smarthost]\nhost = \"{SMARTHOST_NAME}\"\nport = 587\ntls = \"starttls\"\nuser_name = \"bench@example.org\"\npassword_file = \"secrets/smarthost.password\"\nca_certificate = \"{}\"\n",
            ca.ca_certificate.display()
        ),
    )?;
    std::fs::write(directory.join("10k.eml"), message_of(10 * 1024))?;
    std::fs::write(directory.join("4m.eml"), message_of(4 * 1024 * 1024 - 4096))?;
    let network = IsolatedNetwork::create(&directory)?;
    let namespace = network.namespace().to_string();
    let ns = Some(namespace.as_str());
    add_wan_address(&namespace, SMARTHOST)?;
    let zone = directory.join("zone.json");
    std::fs::write(&zone, format!("{{\"ttl\": 60, \"names\": {{\"{SMARTHOST_NAME}\": {{\"A\": [\"{SMARTHOST}\"]}}}}}}"))?;
    let _dns = DnsServer::start(ns, &["192.168.77.1:53"], &zone, &directory.join("dns"))?;
    let _sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp"))?;
    let leaf = ca.leaf(SMARTHOST_NAME)?.clone();
    let smarthost_config = SmarthostConfig::new(format!("{SMARTHOST}:587"), TlsMode::StartTls).with_certificate(&leaf).with_auth("bench@example.org", SMARTHOST_PASSWORD);
    let smarthost = Smarthost::start(ns, &smarthost_config, &directory.join("smarthost"))?;
    let flash = directory.join("flash.img");
    flash_image::create(&flash)?;
    let config = MachineConfig { instruction_counting, ..MachineConfig::on_network(elf, flash, &network) };
    let machine = Machine::start(&config, &directory)?;
    machine.wait_ready(0, Duration::from_secs(120))?;
    let owner = Owner { directory: directory.clone(), device: format!("unix:{}", directory.join("serial.sock").display()), key: directory.join("admin.key") };
    if !owner.homemx(&["keygen", "--no-passphrase", "--out", "admin.key"]).status.success()
        || !owner.homemx(&["provision", "--config", "homemx.toml", "--passphrase-file", "passphrase"]).status.success()
    {
        return Err("provisioning failed".into());
    }
    let send = |file: &str, source, recipient: &str| -> Result<u64> {
        let reply = send_mail(&namespace, source, APPLIANCE, "bench@remote.test", &[recipient], &directory.join(file), false)?;
        Ok(reply["data"][0].as_u64().unwrap_or(0))
    };
    let mode = if instruction_counting { "-icount shift=0,sleep=off" } else { "no icount" };
    let before = busy_counts(&network)?;
    let started = Instant::now();
    let mut accepted = 0;
    for _ in 0..MESSAGES {
        accepted += usize::from(send("10k.eml", WAN_CLIENT, "alice@example.org")? == 250);
    }
    let elapsed = started.elapsed();
    let after = busy_counts(&network)?;
    println!("MX, {MESSAGES} messages of 10 KB from a WAN client, one SMTP session each ({mode}):");
    println!("  accepted {accepted}; {:.2} messages/s wall clock", MESSAGES as f64 / elapsed.as_secs_f64());
    if instruction_counting {
        let per_message = (after - before) * INSTRUCTIONS_PER_COUNT / MESSAGES as u64;
        println!(
            "  {} instructions per message from first byte to 250 (incl. spool commit, deferred delivery try; {:.1} ms at 168 MHz)",
            per_message,
            per_message as f64 / 168e6 * 1000.0
        );
    }
    let line_before = machine.log.lines().len();
    let code = send("10k.eml", LAN_CLIENT, "carol@remote.example")?;
    let line = machine.log.wait_for(line_before, "TLS 1.3 handshake with", Duration::from_secs(60))?;
    smarthost.wait_for_messages(1, Duration::from_secs(60))?;
    let counts: u64 = line.rsplit("busy core-clock counts ").next().and_then(|count| count.trim().parse().ok()).unwrap_or(0);
    println!("TLS 1.3 to the smarthost (STARTTLS, P-256, CA anchor + host name, {mode}; submission answered {code}):");
    println!("  {line}");
    if instruction_counting {
        println!("  {} instructions per verified handshake ({:.1} ms at 168 MHz)", counts * INSTRUCTIONS_PER_COUNT, (counts * INSTRUCTIONS_PER_COUNT) as f64 / 168e6 * 1000.0);
    }
    let started = Instant::now();
    let code = send("4m.eml", WAN_CLIENT, "alice@example.org")?;
    println!("  largest message: {} bytes answered {code} after {:.1} s", std::fs::metadata(directory.join("4m.eml"))?.len(), started.elapsed().as_secs_f64());
    let _ = Path::new(&directory);
    Ok(())
}

/// Prints the mail figures (see the module header).
pub fn print_mail_figures() -> Result<()> {
    run(false)
}
