//! The homemx appliance firmware: brings the board up and wires the services to the network.
//!
//! The board is chosen at build time (`board-qemu` or `board-nucleo-f429zi`); everything
//! below `bsp::init` sees only the board traits of `homemx-board`.
#![no_std]
#![no_main]

mod console;
mod cpu_load;
mod health;
mod lan;
mod network;
mod panic;
mod random;
#[cfg(feature = "spool-exercise")]
mod spool_exercise;
// The flash map; only the spool exercise uses it until the key store is wired in.
#[cfg(feature = "spool-exercise")]
mod storage;
mod udp_echo;

#[cfg(feature = "board-qemu")]
use homemx_bsp_qemu_mps2 as bsp;
#[cfg(feature = "board-nucleo-f429zi")]
use homemx_bsp_nucleo_f429zi as bsp;

#[cfg(all(feature = "board-qemu", feature = "board-nucleo-f429zi"))]
compile_error!("choose exactly one board feature");

use embassy_executor::Spawner;

/// Firmware version reported by `/health` and the status page.
pub const FIRMWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    defmt::info!("homemx {} starting on {}", FIRMWARE_VERSION, bsp::BOARD_NAME);
    let parts = match bsp::init(spawner) {
        Ok(parts) => parts,
        Err(error) => {
            defmt::error!("board init failed: {}", error);
            panic!("board init failed");
        }
    };
    let mut entropy = parts.entropy;
    let network_seed = random::DerivedRandom::from_board(&mut entropy).next_u64();
    let stack = network::start(spawner, parts.network, network_seed);
    spawner.spawn(console::console_task(parts.serial).unwrap());
    for task_number in 0..health::HTTP_TASK_COUNT {
        spawner.spawn(health::http_task(stack, task_number as u8).unwrap());
    }
    spawner.spawn(udp_echo::udp_echo_task(stack).unwrap());
    #[cfg(feature = "spool-exercise")]
    spawner.spawn(
        spool_exercise::spool_exercise_task(
            parts.flash,
            random::DerivedRandom::from_board(&mut entropy),
            random::DerivedRandom::from_board(&mut entropy),
        )
        .unwrap(),
    );
    network::log_when_ready(stack).await;
}
