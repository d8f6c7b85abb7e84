//! One simulated run: the world (flash, segment with faults, console), the device's boot, the
//! peers (DHCP, DNS and SNTP servers, mailbox host, smarthost, backup MX, senders and LAN
//! clients, the owner at the console), the wire tap, the loop that drives them and jumps the
//! clock, and the report.
//!
//! Owns: the run's executors and its report. Calls: `backup_mx_peer`, `busy`, `console`,
//! `dns_peer`, `invariants`, `peers`, `smarthost`, `sntp_peer`, `tls_peer`, `wiretap`.

use std::cell::{Cell, RefCell};
use std::net::Ipv4Addr;
use std::ops::ControlFlow;
use std::rc::Rc;

use embassy_net::{Ipv4Cidr, StackResources, StaticConfigV4};
use embassy_time::{Duration, Timer};
use homemx_board::ResetCause;
use homemx_bsp_sim::dhcp_server::{self, DhcpServer, Lease};
use homemx_bsp_sim::ethernet::FaultPlan;
use homemx_bsp_sim::executor::{run as run_executors, Limits, RunOutcome, SimExecutor, Step};
use homemx_bsp_sim::seeds::{self, Domain};
use homemx_bsp_sim::flash::CutMode;
use homemx_bsp_sim::{install, time_driver, DeviceHandles, SimConfig, World};
use homemx_wire::client::AdminSigningKey;
use homemx_wire::config::{BackupMx, ConfigItem, DeliveryProtocol, Ipv4Prefix, LanMailbox, MinTls, Smarthost, Submission, TlsMode};
use homemx_wire::message::{Credential, TlsService};
use rand::Rng;

use crate::busy::BusyMeter;
use crate::backup_mx_peer::{self, BackupMxFaults, BackupTls, Mailbox, SharedMailbox};
use crate::console::Owner;
use crate::peers::{self, Destination, MailboxFaults, Offered, Records, SharedRecords};
use crate::smarthost::{SmarthostCertificates, SmarthostPlan, SmarthostTls};
use crate::tls_peer::{self, Identity};
use crate::wiretap::Wiretap;
use crate::{dns_peer, invariants, sntp_peer};

const DEVICE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MAILBOX_PORT: u16 = 24;
const DOMAIN: &str = "home.example";
const RECIPIENTS: [&str; 3] = ["anna@home.example", "ben@home.example", "postmaster@home.example"];
/// Outside recipients LAN clients write to (through the smarthost).
const OUTBOUND_RECIPIENTS: [&str; 2] = ["carol@elsewhere.example", "dave@remote.example"];
/// The smarthost account's user name.
const SMARTHOST_USER: &str = "homemx@provider.example";
/// The backup MX's POP3 account.
const BACKUP_USER: &str = "home@provider.example";
/// How often the device fetches from the backup MX (the least the configuration allows).
const BACKUP_POLL_SECONDS: u32 = 60;
/// Simulated time a run may take at most (ms): senders pause up to 20 s between messages,
/// refused deliveries wait for the queue's retry (minutes).
const DEADLINE_MS: u64 = 6 * 3600 * 1000;
/// Steps a run may take at most (a step polls the ready tasks or moves the clock).
const MAX_STEPS: u64 = 20_000_000;
/// The storage passphrase the owner sets at the first unlock.
const PASSPHRASE: &str = "correct horse battery staple sim";
/// The hook's reason for stopping when the device's power went.
const POWER_CUT: &str = "power cut";

/// What a run did and what went wrong.
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Messages offered, answered 250, delivered.
    pub offered: usize,
    /// Answered 250 by the MX.
    pub accepted: usize,
    /// Deliveries the mailbox host and the smarthost took.
    pub delivered: usize,
    /// Of the messages offered, those for outside recipients (through the smarthost).
    pub outbound: usize,
    /// Of the deliveries, those the smarthost took.
    pub smarthost_delivered: usize,
    /// The smarthost's TLS sessions and logins.
    pub smarthost_tls_sessions: u32,
    /// Logins the smarthost accepted.
    pub smarthost_logins: u32,
    /// Impostors' certificates the smarthost presented.
    pub smarthost_impostors: u32,
    /// How the smarthost spoke TLS and which AUTH it offered.
    pub smarthost_mode: String,
    /// Frames the wire tap read (last boot).
    pub tapped_frames: u64,
    /// Messages waiting at the backup MX at the start, and of them delivered to the mailbox host.
    pub backup_messages: usize,
    /// Of the backup MX's messages, those the mailbox host took.
    pub backup_delivered: usize,
    /// The backup MX's login sessions and how it spoke TLS.
    pub backup_sessions: u32,
    /// How the backup MX spoke TLS.
    pub backup_mode: String,
    /// In a spool-pressure run ([`SpoolPressure`]): the messages refused for want of room
    /// (`452` or `552`); `None` in other runs.
    pub refused_for_room: Option<usize>,
    /// Network faults injected (drops, duplicates, reorders, corruptions).
    pub network_faults: u64,
    /// Deliveries the mailbox host or the smarthost refused or dropped on purpose.
    pub peer_faults: u64,
    /// Clock jumps.
    pub clock_jumps: u64,
    /// Power cuts (each ended a boot; the run went on in a new process).
    pub power_cuts: u64,
    /// Flash programs and erases of the last boot.
    pub flash_operations: u64,
    /// Repeated deliveries the device could not know had arrived (allowed, see `invariants`).
    pub unconfirmed_repeats: usize,
    /// The device's alert reports to the postmaster.
    pub alert_reports: usize,
    /// Simulated milliseconds the run took.
    pub simulated_ms: u64,
    /// The device's longest stretch without a pause, in simulated milliseconds (this boot).
    pub longest_busy_ms: u64,
    /// The broken invariants.
    pub violations: Vec<String>,
}

impl Report {
    /// One line of figures.
    pub fn summary(&self, log_frames: u64) -> String {
        format!(
            "seed {}: {} offered ({} outbound), {} answered 250, {} delivered ({} to the smarthost, {}: {} TLS sessions, {} logins, {} impostors; {} allowed repeats, {} alert reports); backup MX ({}): {} of {} messages fetched in {} sessions; faults: {} network, {} mailbox/smarthost/backup MX, {} clock jumps, {} power cuts ({} in all); {} flash operations, {} frames tapped, {} s simulated, longest busy {} ms, {} log frames{}; {}",
            self.seed,
            self.offered,
            self.outbound,
            self.accepted,
            self.delivered,
            self.smarthost_delivered,
            self.smarthost_mode,
            self.smarthost_tls_sessions,
            self.smarthost_logins,
            self.smarthost_impostors,
            self.unconfirmed_repeats,
            self.alert_reports,
            self.backup_mode,
            self.backup_delivered,
            self.backup_messages,
            self.backup_sessions,
            self.network_faults,
            self.peer_faults,
            self.clock_jumps,
            self.power_cuts,
            self.faults(),
            self.flash_operations,
            self.tapped_frames,
            self.simulated_ms / 1000,
            self.longest_busy_ms,
            log_frames,
            self.refused_for_room.map_or(String::new(), |refused| format!("; spool pressure: {refused} refused for room")),
            if self.violations.is_empty() { "ok" } else { "FAILED" }
        )
    }

    /// Every fault injected.
    pub fn faults(&self) -> u64 {
        self.network_faults + self.peer_faults + self.clock_jumps + self.power_cuts
    }
}

fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

/// The device's configuration: the domain, its recipients, the LAN, the mailbox host and the
/// smarthost (by name: the device resolves it with the LAN's DNS server).
fn configuration(smarthost: &SmarthostPlan, backup: &BackupPlan) -> Vec<ConfigItem> {
    let mut items = vec![ConfigItem::Domain(DOMAIN.try_into().unwrap())];
    for recipient in RECIPIENTS.iter().take(2) {
        items.push(ConfigItem::Recipient((*recipient).try_into().unwrap()));
    }
    items.push(ConfigItem::LanPrefix(Ipv4Prefix { address: [10, 0, 0, 0], length: 24 }));
    // The simulated LAN submitters send without AUTH: the owner's opt-in.
    items.push(ConfigItem::Submission(Submission { requires_auth: true, lan_relay_without_auth: true }));
    items.push(ConfigItem::LanMailbox(LanMailbox { address: PEER.octets(), port: MAILBOX_PORT, protocol: DeliveryProtocol::Lmtp }));
    items.push(ConfigItem::Smarthost(Smarthost {
        host: Identity::Smarthost.host_name().try_into().unwrap(),
        port: smarthost.tls.port(),
        tls: match smarthost.tls {
            SmarthostTls::StartTls => TlsMode::StartTls,
            SmarthostTls::Implicit => TlsMode::Implicit,
        },
        user_name: SMARTHOST_USER.try_into().unwrap(),
        min_tls: MinTls::Tls12,
    }));
    items.push(ConfigItem::BackupMx(BackupMx {
        host: Identity::Pop.host_name().try_into().unwrap(),
        port: backup.tls.port(),
        tls: match backup.tls {
            BackupTls::Implicit => TlsMode::Implicit,
            BackupTls::Stls => TlsMode::StartTls,
        },
        user_name: BACKUP_USER.try_into().unwrap(),
        poll_interval_seconds: BACKUP_POLL_SECONDS,
        min_tls: MinTls::Tls12,
    }));
    items
}

/// The backup MX the seed draws from `random`: POP3S on 995 or STLS on 110, the password, how
/// many messages wait there, and its faults (up to 10 % of RETRs and of QUITs dropped before,
/// and 10 % after, the deletions took effect).
#[derive(Clone)]
struct BackupPlan {
    tls: BackupTls,
    password: String,
    messages: usize,
    faults: BackupMxFaults,
}

fn backup_plan(random: &mut rand_chacha::ChaCha20Rng) -> BackupPlan {
    BackupPlan {
        tls: if random.gen_ratio(1, 2) { BackupTls::Implicit } else { BackupTls::Stls },
        password: (0..20).map(|_| char::from(random.gen_range(b'!'..=b'~'))).collect(),
        messages: random.gen_range(1..=6),
        faults: BackupMxFaults {
            drop_in_retrieve_per_mille: random.gen_range(0..100),
            drop_before_quit_per_mille: random.gen_range(0..100),
            drop_after_quit_per_mille: random.gen_range(0..100),
        },
    }
}

/// The smarthost the seed draws from `random`: STARTTLS on 587 or implicit TLS on 465, the
/// AUTH mechanisms it offers, the password, and its faults (up to 5 % busy greetings, 15 %
/// refused and 5 % dropped messages, 20 % impostors' certificates).
fn smarthost_plan(random: &mut rand_chacha::ChaCha20Rng) -> SmarthostPlan {
    let tls = if random.gen_ratio(1, 2) { SmarthostTls::StartTls } else { SmarthostTls::Implicit };
    let (plain, login) = [(true, true), (true, false), (false, true)][random.gen_range(0..3)];
    let password: String = (0..24).map(|_| char::from(random.gen_range(b'!'..=b'~'))).collect();
    SmarthostPlan {
        tls,
        plain,
        login,
        user: SMARTHOST_USER.into(),
        password,
        busy_per_mille: random.gen_range(0..50),
        refuse_per_mille: random.gen_range(0..150),
        drop_per_mille: random.gen_range(0..50),
        impostor_per_mille: random.gen_range(0..200),
    }
}

/// A run in which the mailbox host is down while the senders send large messages without
/// `SIZE=`, so the spool fills: the MX must answer `452` (at `DATA` or after the data) for what
/// it has no room for, and a message whose data outgrows the free space must give its space
/// back (the spool's "a failed commit abandons its message" rule). The free-bytes check at the
/// end of the run catches a message that keeps its space.
#[derive(Clone, Debug)]
struct SpoolPressure {
    /// Deliveries are refused until then (simulated ms since the boot).
    outage_until_ms: u64,
    /// The indices of the large messages.
    large: std::ops::Range<usize>,
}

impl SpoolPressure {
    /// A large message's length: together, the large messages are more than the simulated
    /// board's spool (240 sectors of 4 KiB) has room for.
    fn large_length(&self, random: &mut impl Rng) -> usize {
        random.gen_range(120_000..260_000)
    }
}

fn spool_pressure_plan(random: &mut impl Rng) -> Option<SpoolPressure> {
    random.gen_ratio(1, 8).then(|| SpoolPressure { outage_until_ms: random.gen_range(20..40) * 60 * 1000, large: 0..random.gen_range(5..9) })
}

/// What a boot after a power cut takes over from the one before (the resume file; the flash
/// image is written beside it).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Resume {
    /// The peers' records, `boot` already the next one.
    pub records: Records,
    /// The backup MX's maildrop and its commit log.
    pub backup: Mailbox,
    /// Faults injected in the boots before.
    pub network_faults: u64,
    /// Clock jumps in the boots before.
    pub clock_jumps: u64,
    /// The device's longest busy stretch in the boots before (ms).
    pub longest_busy_ms: u64,
    /// The device's flash when the power went.
    #[serde(skip)]
    pub flash_image: Vec<u8>,
}

/// How a boot ended: the run's report, or a power cut after which the run goes on.
pub enum Ending {
    /// The run is over.
    Report(Report),
    /// The power went: boot again from this.
    PowerCut(Resume),
}

/// Flash programs and erases after provisioning within which a power cut falls (a run of 12
/// messages takes 180 to 400).
const CUT_WITHIN_OPERATIONS: u64 = 300;

/// Runs seed `seed` with `message_count` messages, from the first boot or from `resume`.
pub fn run(seed: u64, message_count: usize, resume: Option<Resume>) -> Ending {
    let mut plan_random = seeds::stream(seed, Domain::Simulator, 0);
    let faults = FaultPlan {
        drop_per_million: plan_random.gen_range(0..30_000),
        duplicate_per_million: plan_random.gen_range(0..10_000),
        reorder_per_million: plan_random.gen_range(0..20_000),
        corrupt_per_million: plan_random.gen_range(0..2_000),
    };
    // One seed in eight fills the spool (its own stream, so the other seeds stay as they were).
    let spool_pressure = spool_pressure_plan(&mut seeds::stream(seed, Domain::Simulator, 4));
    let mailbox_faults = MailboxFaults {
        refuse_per_mille: plan_random.gen_range(0..150),
        drop_per_mille: plan_random.gen_range(0..50),
        outage_until_ms: spool_pressure.as_ref().map_or(0, |pressure| pressure.outage_until_ms),
    };
    let cut_plan = plan_random.gen_ratio(1, 2).then(|| {
        let mode = [CutMode::Clean, CutMode::Torn, CutMode::Completed][plan_random.gen_range(0..3)];
        (plan_random.gen_range(1..=CUT_WITHIN_OPERATIONS), mode)
    });
    let smarthost_plan = smarthost_plan(&mut seeds::stream(seed, Domain::Simulator, 2));
    let backup_plan = backup_plan(&mut seeds::stream(seed, Domain::Simulator, 3));
    let config = SimConfig { faults, ..SimConfig::new(seed) };
    let first_boot = resume.is_none();
    // Every message the backup MX will hold in the run; half wait there from the start, the
    // rest arrive later (below).
    let backup_messages = backup_mx_peer::generate_messages(&mut seeds::stream(seed, Domain::Peer, 7), seed, backup_plan.messages, &RECIPIENTS);
    let (mut world, records, backup, earlier_faults, earlier_jumps, earlier_busy_ms) = match resume {
        None => {
            let waiting = backup_messages[..backup_plan.messages.div_ceil(2)].to_vec();
            let backup = Mailbox::new(BACKUP_USER, &backup_plan.password, waiting);
            (World::new(config), Records { boot: 1, ..Records::default() }, backup, 0, 0, 0)
        }
        Some(resume) => {
            let boots = resume.records.boot - 1;
            let world = World::after_boots(config, &resume.flash_image, boots);
            (world, resume.records, resume.backup, resume.network_faults, resume.clock_jumps, resume.longest_busy_ms)
        }
    };
    let backup: SharedMailbox = Rc::new(RefCell::new(backup));
    let boot = records.boot;
    let records: SharedRecords = Rc::new(RefCell::new(records));
    let wiretap = Wiretap::attach(world.segment());

    // The peers' side of the segment: one stack with a static address.
    let peer_driver = world.segment().attach([0x02, 0, 0, 0, 0, 0x10]);
    let peer_config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(PEER, 24),
        gateway: None,
        dns_servers: heapless::Vec::new(),
    });
    let (peer_stack, mut peer_runner) =
        embassy_net::new(peer_driver, peer_config, leak(StackResources::<16>::new()), seeds::draw_u64(seed, Domain::Peer, 100 * boot));
    let peers_executor = SimExecutor::new();
    peers_executor.spawn(async move { peer_runner.run().await });
    let lease = Lease {
        client_mac: config.mac_address,
        address: DEVICE,
        prefix_length: 24,
        router: Some(PEER),
        dns_servers: vec![PEER],
        lease_seconds: 24 * 3600,
    };
    peers_executor.spawn(async move { dhcp_server::serve(peer_stack, DhcpServer::new(PEER, lease)).await });
    peers_executor.spawn(peers::mailbox_host(
        peer_stack,
        MAILBOX_PORT,
        mailbox_faults,
        seeds::stream(seed, Domain::Peer, 1 + 100 * boot),
        records.clone(),
    ));
    let zone = vec![(Identity::Smarthost.host_name(), PEER.octets()), (Identity::Pop.host_name(), PEER.octets())];
    peers_executor.spawn(dns_peer::serve(peer_stack, zone));
    peers_executor.spawn(sntp_peer::serve(peer_stack));
    let provider = tls_peer::provider(seeds::stream(seed, Domain::Peer, 5 + 100 * boot));
    peers_executor.spawn(crate::smarthost::smarthost(
        peer_stack,
        smarthost_plan.clone(),
        SmarthostCertificates {
            genuine: tls_peer::server_config(&provider, Identity::Smarthost),
            impostor: tls_peer::server_config(&provider, Identity::Pop),
        },
        seeds::stream(seed, Domain::Peer, 6 + 100 * boot),
        records.clone(),
    ));
    {
        // The backup MX's later messages arrive one by one, in every boot until all are there.
        let backup = backup.clone();
        let all = backup_messages;
        let mut random = seeds::stream(seed, Domain::Peer, 9 + 100 * boot);
        peers_executor.spawn(async move {
            loop {
                let deposited = backup.borrow().messages.len();
                let Some(next) = all.get(deposited) else { return };
                Timer::after(Duration::from_secs(random.gen_range(20..120))).await;
                backup.borrow_mut().deposit(next.clone());
            }
        });
    }
    peers_executor.spawn(backup_mx_peer::backup_mx(
        peer_stack,
        backup_plan.tls,
        tls_peer::server_config(&provider, Identity::Pop),
        backup.clone(),
        boot,
        backup_plan.faults,
        seeds::stream(seed, Domain::Peer, 8 + 100 * boot),
    ));

    // The messages.
    let mut message_random = seeds::stream(seed, Domain::Peer, 2);
    let offered: Vec<Offered> = (0..message_count)
        .map(|index| {
            let destination = if message_random.gen_ratio(1, 3) { Destination::Smarthost } else { Destination::Mailbox };
            let recipient = match destination {
                Destination::Mailbox => RECIPIENTS[message_random.gen_range(0..RECIPIENTS.len())],
                Destination::Smarthost => OUTBOUND_RECIPIENTS[message_random.gen_range(0..OUTBOUND_RECIPIENTS.len())],
            }
            .to_string();
            let length = if message_random.gen_ratio(1, 4) { message_random.gen_range(8_000..40_000) } else { message_random.gen_range(100..4_000) };
            let length = match &spool_pressure {
                Some(pressure) if pressure.large.contains(&index) => pressure.large_length(&mut message_random),
                _ => length,
            };
            let content = peers::generate_message(&mut message_random, seed, index, &recipient, length);
            Offered { recipient, content, destination }
        })
        .collect();

    // The device.
    let (parts, handles) = world.boot(ResetCause::PowerOn);
    let DeviceHandles { power, console, .. } = handles;
    install(parts);
    let device_executor = SimExecutor::new();
    device_executor.spawn(async move {
        let parts = homemx_services::bsp::init(device_executor.spawner()).expect("the simulator installed the parts");
        homemx_services::run(device_executor.spawner(), parts).await;
    });

    // The owner provisions the device, then the senders start.
    let provisioned = Rc::new(Cell::new(false));
    let console_failure: Rc<RefCell<Option<String>>> = Rc::default();
    let senders_done = Rc::new(Cell::new(false));
    let final_free_bytes: Rc<Cell<Option<u32>>> = Rc::default();
    {
        let (provisioned, console_failure, senders_done, records, offered, final_free_bytes) = (
            provisioned.clone(),
            console_failure.clone(),
            senders_done.clone(),
            records.clone(),
            offered.clone(),
            final_free_bytes.clone(),
        );
        let key = AdminSigningKey::from_bytes(&seeds::stream(seed, Domain::Peer, 3).gen());
        let sender_random = seeds::stream(seed, Domain::Peer, 4 + 100 * (boot - 1));
        let (smarthost_plan, backup_plan, backup) = (smarthost_plan.clone(), backup_plan.clone(), backup.clone());
        peers_executor.spawn(async move {
            let mut owner = match Owner::open(console, key).await {
                Ok(owner) => owner,
                Err(error) => {
                    *console_failure.borrow_mut() = Some(error.0);
                    return;
                }
            };
            let provisioning = if first_boot {
                let provider = async {
                    owner.provision(PASSPHRASE, &configuration(&smarthost_plan, &backup_plan)).await?;
                    owner.set_credential(Credential::SmarthostPassword, &smarthost_plan.password).await?;
                    owner.set_trust_anchor(TlsService::Smarthost, tls_peer::CA_DER).await?;
                    owner.set_credential(Credential::BackupMxPassword, &backup_plan.password).await?;
                    owner.set_trust_anchor(TlsService::BackupMx, tls_peer::CA_DER).await
                };
                provider.await
            } else {
                owner.unlock(PASSPHRASE).await
            };
            if let Err(error) = provisioning {
                *console_failure.borrow_mut() = Some(error.0);
                return;
            }
            if first_boot {
                match owner.status().await {
                    Ok(status) => records.borrow_mut().free_after_provisioning = Some(status.spool_free_bytes),
                    Err(error) => {
                        *console_failure.borrow_mut() = Some(error.0);
                        return;
                    }
                }
            }
            provisioned.set(true);
            peers::sender(peer_stack, DEVICE, offered, sender_random, records.clone()).await;
            senders_done.set(true);
            // The owner looks at the queue now and then until it is empty and the backup MX
            // has nothing left (the device deletes there only what its spool holds).
            loop {
                Timer::after(Duration::from_secs(10)).await;
                match owner.status().await {
                    Ok(status)
                        if status.spool_messages == 0
                            && backup.borrow().on_server.is_empty()
                            && backup.borrow().messages.len() == backup_plan.messages =>
                    {
                        final_free_bytes.set(Some(status.spool_free_bytes));
                        return;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        *console_failure.borrow_mut() = Some(error.0);
                        return;
                    }
                }
            }
        });
    }

    // The loop: steps, a clock jump now and then, until every message answered 250 is
    // delivered (or the deadline).
    let mut jump_random = seeds::stream(seed, Domain::Simulator, 1);
    let mut clock_jumps = 0;
    let executors = [device_executor, peers_executor];
    let mut steps = 0u64;
    let mut cut_armed = false;
    let watchdog = crate::watchdog::Watchdog::start(seed);
    let mut busy = BusyMeter::after_boots(earlier_busy_ms);
    let mut device_pended = device_executor.is_pended();
    let outcome = run_executors(&executors, Limits { max_steps: MAX_STEPS, deadline: Some(DEADLINE_MS) }, |step| {
        steps += 1;
        watchdog.step_done();
        if step == Step::Polled && device_pended {
            busy.after_device_poll(device_executor.is_pended(), time_driver::now());
        } else {
            busy.device_idle();
        }
        device_pended = device_executor.is_pended();
        if !power.is_on() {
            return ControlFlow::Break(POWER_CUT.to_string());
        }
        if let Some((operation, mode)) = cut_plan.filter(|_| first_boot && provisioned.get() && !cut_armed) {
            world.cut_flash_power_at(operation, mode);
            cut_armed = true;
        }
        if steps.is_multiple_of(1_000_000) && std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            eprintln!("step {steps}: {step:?} device pended {} peers pended {} faults {:?} stats {:?}", device_executor.is_pended(), peers_executor.is_pended(), world.segment().faults(), world.segment().statistics());
        }
        if let Step::Reset { reset, .. } = step {
            return ControlFlow::Break(format!("the device reset itself: {reset:?}"));
        }
        if console_failure.borrow().is_some() {
            return ControlFlow::Break(String::new());
        }
        if let Step::ClockMoved { .. } = step {
            if provisioned.get() && jump_random.gen_ratio(1, 2_000) {
                let ticks = jump_random.gen_range(1_000..600_000);
                if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
                    eprintln!("{} ms: the clock jumps {ticks} ms", time_driver::now());
                }
                time_driver::jump(ticks);
                clock_jumps += 1;
            }
        }
        // The cheap conditions first: matching every delivery against the messages (whole
        // contents) on each of the run's steps cost most of a seed's time.
        let all_delivered = || {
            let records = records.borrow();
            records.accepted.iter().all(|index| {
                records.delivered.iter().any(|delivery| invariants::offered_index(&offered, &delivery.recipient, &delivery.content) == Some(*index))
            })
        };
        if senders_done.get() && final_free_bytes.get().is_some() && all_delivered() {
            return ControlFlow::Break(String::new());
        }
        ControlFlow::Continue(())
    });
    let smarthost_endpoint = (PEER, smarthost_plan.tls.port());
    let mut secret_forms = Wiretap::secret_forms(SMARTHOST_USER, &smarthost_plan.password);
    secret_forms.extend(Wiretap::secret_forms(BACKUP_USER, &backup_plan.password));
    let backup_offered = backup.borrow().as_offered();
    // What the wire tap read in this boot.
    let tapped = |records: &mut Records| {
        let wiretap = wiretap.borrow();
        let findings = wiretap.findings(smarthost_endpoint, &secret_forms, &offered);
        records.cleartext.extend(findings.into_iter().map(|finding| format!("boot {boot}: {finding}")));
        records.read_on_submission.extend(wiretap.read_on_submission((DEVICE, peers::port_for(Destination::Smarthost)), &offered));
        for index in wiretap.messages_seen_with((PEER, backup_plan.tls.port()), &backup_offered) {
            records.cleartext.push(format!("boot {boot}: the wire tap read backup-MX message {index} in clear on a connection with the backup MX"));
        }
        records.backup_read_on_lan.extend(wiretap.messages_seen_with((PEER, MAILBOX_PORT), &backup_offered));
    };
    if matches!(&outcome, RunOutcome::Stopped(reason) if reason == POWER_CUT) {
        let mut records = records.take();
        tapped(&mut records);
        records.cuts.push(peers::power_cut_now(boot));
        records.boot = boot + 1;
        let flash_image = world.flash().snapshot();
        records.plaintext.extend(invariants::plaintext_on_flash(&offered, &flash_image, &format!("power cut in boot {boot}")));
        records.plaintext.extend(invariants::plaintext_on_flash(&backup_offered, &flash_image, &format!("power cut in boot {boot} (backup MX)")));
        return Ending::PowerCut(Resume {
            records,
            backup: backup.take(),
            network_faults: earlier_faults + world.segment().faults().total(),
            clock_jumps: earlier_jumps + clock_jumps,
            longest_busy_ms: busy.longest_ms(),
            flash_image,
        });
    }
    let mut violations = Vec::new();
    match outcome {
        RunOutcome::Stopped(reason) if !reason.is_empty() => violations.push(reason),
        RunOutcome::Stopped(_) => {}
        RunOutcome::Quiescent => violations.push("the run went quiet before every message was delivered".into()),
        RunOutcome::StepLimit => violations.push(format!("the step limit ({MAX_STEPS}) was reached: a task spins?")),
    }
    if let Some(failure) = console_failure.borrow().as_ref() {
        violations.push(format!("provisioning failed: {failure}"));
    }
    violations.extend(busy.violation());
    tapped(&mut records.borrow_mut());
    let tapped_frames = wiretap.borrow().frames();
    let records = records.borrow();
    let backup = backup.borrow();
    // The backup MX's messages have their own invariant; the senders' verdict sees the rest.
    let (fetched, sent): (Vec<_>, Vec<_>) = records.delivered.iter().cloned().partition(|delivery| backup.message_index(&delivery.content).is_some());
    let verdict = invariants::verdict(&offered, &Records { delivered: sent, ..records.clone() });
    violations.extend(verdict.violations);
    violations.extend(backup_mx_peer::check(&backup, &records, final_free_bytes.get().is_some()));
    for index in fetched.iter().filter_map(|delivery| backup.message_index(&delivery.content)) {
        if !records.backup_read_on_lan.contains(&index) {
            violations.push(format!("the wire tap did not read backup-MX message {index} on its delivery to the mailbox host: the tap is blind"));
        }
    }
    // The device's alert reports must have a cause in this run: nothing strips STARTTLS here,
    // and only an impostor's certificate is to be refused.
    for subject in &verdict.alert_reports {
        let unfounded = subject.contains("STARTTLS stripping suspected")
            || (subject.contains("TLS certificate rejected") && records.smarthost_impostors == 0);
        if unfounded {
            violations.push(format!("the device reported {subject:?} without a cause in this run"));
        }
    }
    violations.extend(records.plaintext.iter().cloned());
    violations.extend(records.cleartext.iter().cloned());
    violations.extend(crate::wiretap::blind_spots(&offered, &records.accepted, &records.read_on_submission));
    violations.extend(invariants::plaintext_on_flash(&offered, &world.flash().snapshot(), "the end"));
    violations.extend(invariants::plaintext_on_flash(&backup_offered, &world.flash().snapshot(), "the end (backup MX)"));
    if provisioned.get() {
        let map = homemx_bsp_sim::FLASH_MAP;
        violations.extend(invariants::key_record_bound(&world.flash().snapshot(), map.key_store_bytes() as usize, map.key_sector_size as usize));
    }
    if let (Some(before), Some(after)) = (records.free_after_provisioning, final_free_bytes.get()) {
        violations.extend(invariants::space_given_back(before, after));
        if std::env::var_os("HOMEMX_SIM_TRACE").is_some() {
            eprintln!("spool free bytes: {before} after provisioning, {after} with the queue empty at the end");
        }
    }
    Ending::Report(Report {
        seed,
        offered: offered.len(),
        accepted: records.accepted.len(),
        delivered: records.delivered.len(),
        outbound: offered.iter().filter(|message| message.destination == Destination::Smarthost).count(),
        smarthost_delivered: records.delivered.iter().filter(|delivery| delivery.destination == Destination::Smarthost).count(),
        smarthost_tls_sessions: records.smarthost_tls_sessions,
        smarthost_logins: records.smarthost_logins,
        smarthost_impostors: records.smarthost_impostors,
        smarthost_mode: format!(
            "{:?} on {}, AUTH{}{}",
            smarthost_plan.tls,
            smarthost_plan.tls.port(),
            if smarthost_plan.plain { " PLAIN" } else { "" },
            if smarthost_plan.login { " LOGIN" } else { "" }
        ),
        tapped_frames,
        backup_messages: backup.messages.len(),
        backup_delivered: fetched.len(),
        backup_sessions: backup.sessions,
        backup_mode: format!("{:?} on {}", backup_plan.tls, backup_plan.tls.port()),
        refused_for_room: spool_pressure.as_ref().map(|_| {
            records.not_accepted.iter().filter(|(_, reason)| reason.starts_with("452") || reason.starts_with("552")).count()
        }),
        network_faults: earlier_faults + world.segment().faults().total(),
        peer_faults: u64::from(
            records.refused_deliveries
                + records.dropped_deliveries
                + records.smarthost_refusals
                + records.smarthost_drops
                + records.smarthost_impostors
                + backup.faults.total(),
        ),
        clock_jumps: earlier_jumps + clock_jumps,
        power_cuts: records.cuts.len() as u64,
        flash_operations: world.flash().mutating_operations(),
        unconfirmed_repeats: verdict.unconfirmed_repeats,
        alert_reports: verdict.alert_reports.len(),
        simulated_ms: time_driver::now(),
        longest_busy_ms: busy.longest_ms(),
        violations,
    })
}
