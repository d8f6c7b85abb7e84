//! The demo that `cargo xtask run` shows and the `demo` e2e test checks: the appliance on the
//! isolated test network ([`crate::network::IsolatedNetwork`]) with its demo peers (the LAN
//! mailbox host, the provider's smarthost with its own test CA, DNS and SNTP on the router, a
//! WAN sender), provisioned with a generated demo configuration and admin key, one message in
//! from the WAN (port 25) and one out from the LAN (port 587, relayed through the smarthost),
//! and the status page forwarded to 127.0.0.1 on the host.
//!
//! Owns every peer, the machine, the namespace and the forward for as long as the [`Demo`]
//! lives; dropping it stops them all by PID (forward first, network last). Calls the harness's
//! own pieces: [`crate::provider`] (CA, smarthost, DNS, SNTP), [`crate::peers`] (mailbox host,
//! SMTP client, HTTP client), [`crate::owner`] (configuration, secrets, the `homemx` CLI),
//! [`crate::status_page`] (the headline) and [`crate::machine`]; the same environment as [`crate::operation_workload`], without the
//! backup MX, DynDNS and the instruction counting.
//!
//! The status-page forward: a listener on 127.0.0.1 only (created on the host before anything
//! else, so a port in use fails at once), whose connections are answered by a thread that has
//! entered the namespace and connects from the LAN client's address to the appliance's port 80
//! (the page answers LAN sources only).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::firmware::FirmwareBuild;
use crate::flash_image;
use crate::machine::{Machine, MachineConfig};
use crate::network::{IsolatedNetwork, APPLIANCE, LAN_CLIENT, ROUTER, WAN_CLIENT};
use crate::owner::{cli_binary, provider_configuration, write_secrets, Owner, SMARTHOST_PASSWORD};
use crate::peers::{connect_from, expect_250, http_get, send_mail, split_received, HttpAnswer, MailboxHost};
use crate::provider::{
    add_wan_address, write_json_atomically, DnsServer, Smarthost, SmarthostConfig, SntpConfig, SntpServer, TestCa, TlsMode, SMARTHOST_NAME,
};
use crate::Result;

/// The smarthost's public address (what the demo's DNS says for [`SMARTHOST_NAME`]).
const SMARTHOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 25);
/// The account the appliance logs in with at the smarthost (as in [`provider_configuration`]).
const SMARTHOST_USER: &str = "homemx@example.org";
/// The demo domain's recipients.
const RECIPIENTS: [&str; 2] = ["alice@example.org", "bob@example.org"];
/// The WAN sender's envelope sender and the LAN message's remote recipient.
pub const INBOUND_SENDER: &str = "friend@remote.example";
/// The local recipient of the inbound message.
pub const INBOUND_RECIPIENT: &str = "alice@example.org";
/// The LAN sender of the outbound message.
pub const OUTBOUND_SENDER: &str = "alice@example.org";
/// The remote recipient of the outbound message (relayed through the smarthost).
pub const OUTBOUND_RECIPIENT: &str = "carol@remote.example";
/// The name the status page answers to (besides its address).
pub const STATUS_PAGE_HOST: &str = "homemx.lan";
/// How long each step may take (boot, clock, each message's arrival).
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a forwarded connection may stay silent before it is closed.
const FORWARD_IDLE: Duration = Duration::from_secs(60);

/// The message the WAN sender sends to the appliance's MX (port 25).
pub const INBOUND_MESSAGE: &[u8] = b"From: A friend <friend@remote.example>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: Hello from the internet (homemx demo, inbound)\r\n\
Message-ID: <demo-inbound@remote.example>\r\n\
\r\n\
Hello Alice,\r\n\
\r\n\
this message came in from the WAN side on port 25, was committed to the appliance's\r\n\
encrypted spool before it said 250, and was then delivered to your mailbox host over LMTP.\r\n\
.a line with a leading dot, to show the message arrives byte for byte\r\n";

/// The message a LAN client submits on port 587 for a remote recipient.
pub const OUTBOUND_MESSAGE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: Carol <carol@remote.example>\r\n\
Subject: Hello from the LAN (homemx demo, outbound)\r\n\
Message-ID: <demo-outbound@example.org>\r\n\
\r\n\
Hello Carol,\r\n\
\r\n\
this message was submitted on the LAN on port 587 and relayed through the provider's\r\n\
smarthost, over TLS 1.3 verified against the provider's CA, after AUTH.\r\n";

/// Where and how to run the demo.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The run directory: configuration, secrets, keys, flash, sockets, logs, peers' folders.
    /// Whatever was there is removed first.
    pub directory: PathBuf,
    /// The port on 127.0.0.1 forwarded to the status page (0: any free port).
    pub status_page_port: u16,
    /// Echo the decoded firmware log on stderr.
    pub echo_log: bool,
}

/// The running demo, after both messages arrived. Dropping it stops everything it started.
// Field order is drop order: the forward, then QEMU, then the peers, the namespace last.
pub struct Demo {
    status_page: StatusPageForward,
    machine: Machine,
    smarthost: Smarthost,
    mailbox: MailboxHost,
    _sntp: SntpServer,
    _dns: DnsServer,
    network: IsolatedNetwork,
    directory: PathBuf,
    owner: Owner,
    passphrase: String,
    /// The inbound message as the mailbox host stored it, with its envelope.
    pub inbound: (Vec<u8>, Value),
    /// The outbound message as the smarthost stored it, with its sidecar (envelope, TLS, AUTH).
    pub outbound: (Vec<u8>, Value),
    /// From the start (before the image build) until both messages had arrived.
    pub mail_flowed_after: Duration,
}

impl Demo {
    /// Sets everything up, provisions the appliance, sends both messages and waits until both
    /// arrived byte-intact (but for the appliance's `Received:` header). Needs root.
    pub fn start(options: &DemoOptions) -> Result<Demo> {
        let started = Instant::now();
        // First, so that a port in use fails before anything else starts.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, options.status_page_port))
            .map_err(|error| format!("cannot listen on 127.0.0.1:{} for the status page: {error}", options.status_page_port))?;
        let directory = options.directory.clone();
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory)?;
        let elf = FirmwareBuild::QEMU.build()?;
        eprintln!("demo: the provider's test CA, the demo configuration and its secrets in {}", directory.display());
        let ca = TestCa::create_for(&directory.join("ca"), &[SMARTHOST_NAME])?;
        write_secrets(&directory);
        let passphrase = demo_passphrase()?;
        std::fs::write(directory.join("passphrase"), format!("{passphrase}\n"))?;
        std::fs::write(directory.join("homemx.toml"), provider_configuration(&ca.ca_certificate, &RECIPIENTS, ""))?;

        let network = IsolatedNetwork::create(&directory)?;
        let namespace = network.namespace().to_string();
        let ns = Some(namespace.as_str());
        eprintln!(
            "demo: network namespace {namespace}: router and mailbox host {ROUTER}, appliance {APPLIANCE}, \
             LAN client {LAN_CLIENT}, WAN sender {WAN_CLIENT}, smarthost {SMARTHOST_ADDRESS}"
        );
        add_wan_address(&namespace, SMARTHOST_ADDRESS)?;
        let zone = directory.join("zone.json");
        write_json_atomically(&zone, &json!({"ttl": 60, "names": {SMARTHOST_NAME: {"A": [SMARTHOST_ADDRESS.to_string()]}}}))?;
        let dns = DnsServer::start(ns, &[&format!("{ROUTER}:53")], &zone, &directory.join("dns"))?;
        let sntp = SntpServer::start(ns, &SntpConfig::new(format!("{ROUTER}:123")), &directory.join("sntp"))?;
        let mailbox_folder = directory.join("mailbox");
        std::fs::create_dir_all(&mailbox_folder)?;
        let mailbox = MailboxHost::start(&namespace, &format!("{ROUTER}:24"), "lmtp", &mailbox_folder)?;
        let smarthost_config = SmarthostConfig::new(format!("{SMARTHOST_ADDRESS}:587"), TlsMode::StartTls)
            .with_certificate(ca.leaf(SMARTHOST_NAME)?)
            .with_auth(SMARTHOST_USER, SMARTHOST_PASSWORD);
        let smarthost = Smarthost::start(ns, &smarthost_config, &directory.join("smarthost"))?;

        let flash = directory.join("flash.img");
        flash_image::create(&flash)?;
        let config = MachineConfig { echo_log: options.echo_log, ..MachineConfig::on_network(elf, flash, &network) };
        let machine = Machine::start(&config, &directory)?;
        machine.wait_ready(0, STEP_TIMEOUT)?;
        let status_page = StatusPageForward::start(listener, &network)?;

        eprintln!("demo: provisioning the appliance (admin key, configuration, passphrase)");
        let owner = Owner::at(&directory);
        owner.try_provision()?;
        // Outbound mail waits for the clock (certificate validity); the demo waits for it too.
        machine.log.wait_for(0, "time: clock set", STEP_TIMEOUT)?;

        eprintln!(
            "demo: sending one message in from the WAN ({WAN_CLIENT} to {APPLIANCE}:25) \
             and one out from the LAN ({LAN_CLIENT} to {APPLIANCE}:587)"
        );
        let inbound_file = directory.join("inbound.eml");
        let outbound_file = directory.join("outbound.eml");
        std::fs::write(&inbound_file, INBOUND_MESSAGE)?;
        std::fs::write(&outbound_file, OUTBOUND_MESSAGE)?;
        let mx = SocketAddrV4::new(APPLIANCE, 25);
        expect_250(&send_mail(&namespace, WAN_CLIENT, mx, INBOUND_SENDER, &[INBOUND_RECIPIENT], &inbound_file, false)?)?;
        let submission = SocketAddrV4::new(APPLIANCE, 587);
        expect_250(&send_mail(&namespace, LAN_CLIENT, submission, OUTBOUND_SENDER, &[OUTBOUND_RECIPIENT], &outbound_file, false)?)?;
        let inbound = mailbox.wait_for_messages(1, STEP_TIMEOUT)?.remove(0);
        check_intact("the mailbox host", &inbound.0, INBOUND_MESSAGE)?;
        let outbound = smarthost.wait_for_messages(1, STEP_TIMEOUT)?.remove(0);
        check_intact("the smarthost", &outbound.0, OUTBOUND_MESSAGE)?;
        let mail_flowed_after = started.elapsed();
        eprintln!("demo: mail flows: both messages arrived {:.1} s after the start", mail_flowed_after.as_secs_f64());
        Ok(Demo {
            status_page,
            machine,
            smarthost,
            mailbox,
            _sntp: sntp,
            _dns: dns,
            network,
            directory,
            owner,
            passphrase,
            inbound,
            outbound,
            mail_flowed_after,
        })
    }

    /// The status page's `/` fetched from the host through the forward on 127.0.0.1; an error
    /// unless it answered 200.
    pub fn fetch_status_page(&self) -> Result<HttpAnswer> {
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.status_page.port);
        let answer = http_get(Ipv4Addr::LOCALHOST, target, STATUS_PAGE_HOST, "/")?;
        if answer.status != 200 {
            return Err(format!("the status page through 127.0.0.1:{} answered {}", self.status_page.port, answer.status).into());
        }
        Ok(answer)
    }

    /// The status page's headline, fetched from the host through the forward; an error unless
    /// it says mail flows (what `cargo xtask run --check` and the `demo` e2e test require).
    pub fn headline_says_mail_flows(&self) -> Result<String> {
        let page = self.fetch_status_page()?;
        let headline = crate::status_page::headline(&page.body).ok_or_else(|| format!("the status page has no headline: {}", page.body))?;
        if !headline.starts_with("Mail flows") {
            return Err(format!("both messages arrived, but the status page's headline says {headline:?}, not that mail flows").into());
        }
        Ok(headline.to_string())
    }

    /// The port on 127.0.0.1 that reaches the status page.
    pub fn status_page_port(&self) -> u16 {
        self.status_page.port
    }

    /// The network namespace the appliance and its peers live in.
    pub fn namespace(&self) -> &str {
        self.network.namespace()
    }

    /// The folder the LAN mailbox host stores messages in.
    pub fn mailbox_folder(&self) -> PathBuf {
        self.directory.join("mailbox")
    }

    /// The folder the smarthost stores what it received in.
    pub fn smarthost_folder(&self) -> &Path {
        self.smarthost.spool()
    }

    /// How many messages the mailbox host and the smarthost hold now.
    pub fn message_counts(&self) -> (usize, usize) {
        (self.mailbox.message_count(), self.smarthost.messages().len())
    }

    /// Whether QEMU still runs.
    pub fn is_running(&mut self) -> bool {
        self.machine.is_running()
    }

    /// The `homemx` alias for this appliance: the CLI, its device (the serial console socket)
    /// and the admin key.
    pub fn homemx_alias(&self) -> String {
        format!("alias homemx='{} --device {} --key {}'", cli_binary().display(), self.owner.device, self.owner.key.display())
    }

    /// Prints where to look and what to try.
    pub fn print_where_to_look(&self) {
        let port = self.status_page.port;
        let line = "=".repeat(100);
        eprintln!("\n{line}");
        eprintln!("homemx demo: mail flows ({:.1} s from the start).", self.mail_flowed_after.as_secs_f64());
        eprintln!("  in:  {INBOUND_SENDER} (WAN, port 25) -> {INBOUND_RECIPIENT}, delivered to the LAN mailbox host over LMTP");
        eprintln!("  out: {OUTBOUND_SENDER} (LAN, port 587) -> {OUTBOUND_RECIPIENT}, relayed through the smarthost over TLS 1.3");
        eprintln!();
        eprintln!("  status page:     curl -H 'Host: {STATUS_PAGE_HOST}' http://127.0.0.1:{port}/   (also /status.json)");
        eprintln!(
            "                   (in a browser: add '127.0.0.1 {STATUS_PAGE_HOST}' to /etc/hosts, open http://{STATUS_PAGE_HOST}:{port}/)"
        );
        eprintln!("  mailbox folder:  {}", self.mailbox_folder().display());
        eprintln!("  smarthost's received folder: {}", self.smarthost_folder().display());
        eprintln!("  the owner's CLI: {}", self.homemx_alias());
        eprintln!("                   then try:  homemx status   and   homemx logs");
        eprintln!("                   (and: homemx lock; homemx unlock --passphrase-file {})", self.directory.join("passphrase").display());
        eprintln!(
            "  send another:    ip netns exec {} python3 {} --source {WAN_CLIENT} --server {APPLIANCE}:25 \
             --sender {INBOUND_SENDER} --recipient bob@example.org --message {}",
            self.namespace(),
            crate::repository_root().join("qemu/peers/smtp_client.py").display(),
            self.directory.join("inbound.eml").display()
        );
        eprintln!(
            "                   (from the LAN: --source {LAN_CLIENT} --server {APPLIANCE}:587; recipients: {})",
            RECIPIENTS.join(", ")
        );
        eprintln!("  firmware log:    {}", self.directory.join("firmware.log").display());
        eprintln!();
        eprintln!(
            "  FOR THIS DEMO ONLY: the configuration ({}), the admin key ({}, no passphrase)",
            self.directory.join("homemx.toml").display(),
            self.owner.key.display()
        );
        eprintln!(
            "  and the storage passphrase {:?} (in {}) were generated for this throw-away",
            self.passphrase,
            self.directory.join("passphrase").display()
        );
        eprintln!("  appliance. NEVER use them, or this test CA, for a real device.");
        eprintln!("{line}");
    }
}

/// A fresh passphrase for the demo's storage (128 bits from the host's random source, hex, in
/// four groups).
fn demo_passphrase() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: Vec<String> = bytes.chunks(4).map(|group| group.iter().map(|byte| format!("{byte:02x}")).collect()).collect();
    Ok(format!("demo-{}", hex.join("-")))
}

/// Checks that `body`, as `peer` stored it, is `sent` after one leading `Received:` header.
fn check_intact(peer: &str, body: &[u8], sent: &[u8]) -> Result<()> {
    match split_received(body) {
        Some((_, rest)) if rest == sent => Ok(()),
        Some(_) => Err(format!("{peer} got the message altered: {}", String::from_utf8_lossy(body)).into()),
        None => Err(format!("{peer} got the message without the appliance's Received: header: {}", String::from_utf8_lossy(body)).into()),
    }
}

/// Forwards connections to 127.0.0.1:`port` on the host to the appliance's port 80, from the
/// LAN client's address inside the namespace. Stopped (its accept thread joined) on drop.
struct StatusPageForward {
    port: u16,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<Result<()>>>,
}

impl StatusPageForward {
    /// Serves `listener` (bound on the host's 127.0.0.1) from a thread inside `network`.
    fn start(listener: TcpListener, network: &IsolatedNetwork) -> Result<Self> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept_thread = network.spawn_inside(move || accept_connections(&listener, &stopped));
        Ok(StatusPageForward { port, stop, accept_thread: Some(accept_thread) })
    }
}

impl Drop for StatusPageForward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop (on a thread inside the namespace) until `stop`; each connection is joined
/// to a new one to the appliance, made here, so from inside the namespace.
fn accept_connections(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if let Err(error) = forward_connection(client) {
                    eprintln!("demo: status-page forward: {error}");
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
            Err(error) => {
                eprintln!("demo: status-page forward: accept: {error}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn forward_connection(client: TcpStream) -> Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(FORWARD_IDLE))?;
    let appliance = connect_from(LAN_CLIENT, SocketAddrV4::new(APPLIANCE, 80), Duration::from_secs(10))?;
    appliance.set_read_timeout(Some(FORWARD_IDLE))?;
    let (client_reader, appliance_writer) = (client.try_clone()?, appliance.try_clone()?);
    std::thread::spawn(move || copy_until_closed(client_reader, appliance_writer));
    std::thread::spawn(move || copy_until_closed(appliance, client));
    Ok(())
}

/// Copies `from` to `to` until `from` ends, fails or stays silent for [`FORWARD_IDLE`]; then
/// closes `to`'s sending half (and `from`'s receiving half), so the other direction ends too.
fn copy_until_closed(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(length) => {
                if to.write_all(&buffer[..length]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
