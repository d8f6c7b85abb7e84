//! The homemx appliance firmware: brings the board up and hands it to the services
//! (`homemx-services`), on the one executor.
//!
//! The board is chosen at build time by a feature (`board-qemu` or `board-stm32h573i-dk`), which
//! this crate passes on to the services; nothing here names a board.
//!
//! Owns: the start task. Calls: its child modules only (every module is one; not listed, as no
//! module lists its children).
#![no_std]
#![no_main]

mod executor;
mod panic;

use embassy_executor::Spawner;
use homemx_services::{bsp, heap, FIRMWARE_VERSION};

#[cortex_m_rt::entry]
fn main() -> ! {
    executor::run(|spawner| spawner.spawn(start(spawner).unwrap()))
}

/// Brings the board up and starts every service (the first task the executor runs), then
/// keeps the wall clock for ever (`homemx_services::run`).
#[embassy_executor::task]
async fn start(spawner: Spawner) {
    heap::init();
    defmt::info!("homemx {} starting on {}", FIRMWARE_VERSION, bsp::BOARD_NAME);
    // The parts go straight into the services' future (a local would keep a second copy
    // in this task's future).
    homemx_services::run(spawner, board_parts(spawner)).await;
}

/// The board's parts, or a reset when the board cannot start.
fn board_parts(spawner: Spawner) -> bsp::Parts {
    match bsp::init(spawner) {
        Ok(parts) => parts,
        Err(error) => {
            defmt::error!("board init failed: {}", error);
            panic!("board init failed");
        }
    }
}
