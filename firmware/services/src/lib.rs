//! The homemx appliance's services: the MX, the courier (delivery, smarthost, backup-MX fetch,
//! DynDNS, reports), the store and its lifecycle, the console, the status page and the network,
//! wired to the protocol crates. `no_std` and free of any chip: the board is chosen by a feature
//! (`board.rs`, the only file that names one), and everything else sees the board's sizing,
//! flash map and the traits of `homemx-board`.
//!
//! The firmware binary (`firmware/app`) brings the board up and calls [`run`]; it owns the
//! executor, the panic handler and nothing else.
//!
//! Owns: [`run`], which spawns every service with its share of the board. Calls: its child modules
//! only (every module is one; not listed, as no module lists its children).
// `no_std` but for the host unit tests (the simulator's board).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod alerts;
mod board;
mod channels;
mod backup_mx;
mod console;
mod cpu_load;
mod delivery;
mod acme;
mod acme_ari;
mod acme_exchange;
mod acme_tls_alpn;
mod dyndns;
mod event_log;
mod health;
pub mod heap;
mod inbound_tls;
mod instrument;
mod lan;
mod link;
mod local_mail;
mod mail_settings;
mod mailbox_probe;
mod mail_status;
mod mx;
mod network;
mod random;
mod resolver;
#[cfg(feature = "spool-exercise")]
mod spool_exercise;
mod stack;
mod status_page;
mod tamper;
mod tls_context;
#[cfg_attr(feature = "spool-exercise", allow(dead_code))]
mod storage;
#[cfg_attr(feature = "spool-exercise", allow(dead_code))]
mod store;
mod udp_echo;
mod wall_clock;

pub use board::bsp;

use embassy_executor::Spawner;

// Every listener the services spawn has its socket in the stack (checked here, above the
// modules, so that `network` need not know `mx` and `health`).
const _: () = assert!(
    network::SOCKET_COUNT
        == homemx_board::FIXED_SOCKETS + mx::MX_SESSIONS + 2 * mx::SUBMISSION_SESSIONS + mx::SPARE_LISTENERS + health::HTTP_TASK_COUNT,
    "every listener the services spawn has its socket"
);

/// Firmware version reported by `/health` and the status page.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Spawns every service with its share of the board's `parts`, waits until the network is
/// ready, then keeps the wall clock (`wall_clock::keep_time`) for ever: the first task's RAM
/// serves the clock once the board is up. Call once, from the first task, after the heap is
/// initialised.
pub async fn run(spawner: Spawner, parts: bsp::Parts) -> ! {
    let mut entropy = parts.entropy;
    let mut random = random::DerivedRandom::from_board(&mut entropy);
    let stack = network::start(spawner, parts.network, random.next_u64());
    inbound_tls::init(random.derive());
    // First, before anything else takes a socket (see mx::spawn_listeners).
    mx::spawn_listeners(spawner, stack);
    // Before the console runs: a chip that does not erase its RAM at reset never unlocks.
    store::check_hardware_ram_wipe(homemx_board::ResetControl::hardware_ram_wipe(&parts.reset));
    // Partitions the flash and mounts the key store (bound to the board's chip key): the device
    // starts locked. The parts go straight into the mount's future (through an async fn
    // taking them, they were held twice more).
    // Its poll has a frame of its own (`stack::own_frame`): inlined, its locals sat in this
    // task's frame under every later step of the start.
    #[cfg(not(feature = "spool-exercise"))]
    {
        let partitions = storage::partition(parts.key_flash, parts.flash);
        if partitions.is_none() {
            defmt::error!("storage: this board's flash sectors do not fit the storage map; the device stays locked");
        }
        if let Some(partitions) = partitions {
            stack::own_frame(store::mount(partitions, parts.chip_key, random.derive())).await;
        }
    }
    let identity = console::device_identity(parts.mac_address);
    // The console alone holds the store's lifecycle (unlock, lock, configuration, reset).
    let lifecycle = store::Lifecycle::take().expect("the lifecycle is handed out once, here");
    spawner.spawn(console::console_task(parts.serial, identity, random.derive(), lifecycle).unwrap());
    spawner.spawn(tamper::tamper_task(parts.tamper).unwrap());
    for task_number in 0..health::HTTP_TASK_COUNT {
        spawner.spawn(health::http_task(stack, task_number as u8).unwrap());
    }
    spawner.spawn(udp_echo::udp_echo_task(stack).unwrap());
    stack::own_frame(resolver::init(random.derive())).await;
    spawner.spawn(delivery::delivery_task(stack, random.derive()).unwrap());
    spawner.spawn(stack::wipe_task().unwrap());
    #[cfg(feature = "spool-exercise")]
    spawner.spawn(
        spool_exercise::spool_exercise_task(parts.flash, random.derive(), random.derive()).unwrap(),
    );
    // Only one task may wait for the address at a time: embassy-net keeps a single waker for
    // it, and two waiters wake each other on every poll until the lease comes (the simulator's
    // busy check found the CPU spinning for the whole of a lost DHCP exchange). So the clock's
    // loop starts once the address is there.
    stack::own_frame(network::log_when_ready(stack)).await;
    wall_clock::keep_time(stack, random.derive()).await
}

