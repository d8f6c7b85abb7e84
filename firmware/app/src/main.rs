//! The homemx appliance firmware: brings the board up and wires the services to the network.
//!
//! The board is chosen at build time (`board-qemu` or `board-nucleo-f429zi`); everything
//! below `bsp::init` sees only the board traits of `homemx-board`.
//!
//! Owns: the start task, which spawns every service with its share of the board. Calls: its child modules
//! only (every module is one; not listed, as no module lists its children).
#![no_std]
#![no_main]

extern crate alloc;

mod alerts;
mod channels;
mod backup_mx;
mod console;
mod cpu_load;
mod delivery;
mod dyndns;
mod event_log;
mod executor;
mod health;
mod heap;
mod instrument;
mod lan;
mod link;
mod mail_settings;
mod mailbox_probe;
mod mail_status;
mod mx;
mod network;
mod panic;
mod random;
mod resolver;
#[cfg(feature = "spool-exercise")]
mod spool_exercise;
mod stack;
mod status_page;
mod tls_context;
#[cfg_attr(feature = "spool-exercise", allow(dead_code))]
mod storage;
#[cfg_attr(feature = "spool-exercise", allow(dead_code))]
mod store;
mod udp_echo;
mod wall_clock;

#[cfg(feature = "board-qemu")]
use homemx_bsp_qemu_mps2 as bsp;
#[cfg(feature = "board-nucleo-f429zi")]
use homemx_bsp_nucleo_f429zi as bsp;

#[cfg(all(feature = "board-qemu", feature = "board-nucleo-f429zi"))]
compile_error!("choose exactly one board feature");

use embassy_executor::Spawner;

// Every listener the app spawns has its socket in the stack (checked here, above the
// modules, so that `network` need not know `mx` and `health`).
const _: () = assert!(
    network::SOCKET_COUNT
        == homemx_board::FIXED_SOCKETS + mx::MX_SESSIONS + mx::SUBMISSION_SESSIONS + mx::SPARE_LISTENERS + health::HTTP_TASK_COUNT,
    "every listener the app spawns has its socket"
);

/// Firmware version reported by `/health` and the status page.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cortex_m_rt::entry]
fn main() -> ! {
    executor::run(|spawner| spawner.spawn(start(spawner).unwrap()))
}

/// Brings the board up and spawns every service (the first task the executor runs).
#[embassy_executor::task]
async fn start(spawner: Spawner) {
    heap::init();
    defmt::info!("homemx {} starting on {}", FIRMWARE_VERSION, bsp::BOARD_NAME);
    let parts = match bsp::init(spawner) {
        Ok(parts) => parts,
        Err(error) => {
            defmt::error!("board init failed: {}", error);
            panic!("board init failed");
        }
    };
    let mut entropy = parts.entropy;
    let mut random = random::DerivedRandom::from_board(&mut entropy);
    let stack = network::start(spawner, parts.network, random.next_u64());
    // First, before anything else takes a socket (see mx::spawn_listeners).
    mx::spawn_listeners(spawner, stack);
    #[cfg(not(feature = "spool-exercise"))]
    open_vault(parts.flash, random.derive()).await;
    let identity = console::device_identity(parts.mac_address);
    // The console alone holds the store's lifecycle (unlock, lock, configuration, reset).
    let lifecycle = store::Lifecycle::take().expect("the lifecycle is handed out once, here");
    spawner.spawn(console::console_task(parts.serial, identity, random.derive(), lifecycle).unwrap());
    for task_number in 0..health::HTTP_TASK_COUNT {
        spawner.spawn(health::http_task(stack, task_number as u8).unwrap());
    }
    spawner.spawn(udp_echo::udp_echo_task(stack).unwrap());
    resolver::init(random.derive()).await;
    spawner.spawn(wall_clock::sntp_task(stack, random.derive()).unwrap());
    spawner.spawn(delivery::delivery_task(stack, random.derive()).unwrap());
    spawner.spawn(stack::wipe_task().unwrap());
    spawner.spawn(status_page::alert_mail_task(random.derive()).unwrap());
    #[cfg(feature = "spool-exercise")]
    spawner.spawn(
        spool_exercise::spool_exercise_task(parts.flash, random.derive(), random.derive()).unwrap(),
    );
    network::log_when_ready(stack).await;
}

/// Partitions the flash and mounts the key store: the device starts locked.
#[cfg(not(feature = "spool-exercise"))]
async fn open_vault(flash: storage::BoardFlash, random: random::DerivedRandom) {
    match storage::partition(flash) {
        Some(partitions) => store::mount(partitions, random).await,
        None => defmt::error!("storage: this board's flash sectors do not fit the storage map; the device stays locked"),
    }
}
