//! Board support for the deterministic host simulator: every part of a board, simulated on
//! the host, driven by one seed.
//!
//! The services select this board by a feature like any other (`Parts`, [`SIZING`],
//! [`FLASH_MAP`], [`BOARD_NAME`], [`STACK_PAINTED`], [`CORE_CLOCK_HZ`], [`core_clock_counts`],
//! [`InitError`], [`init`]), but the simulator, not the board, makes the parts, because it
//! must hold the other end of each and draw every random choice from its seed:
//!
//! | part | simulation | module |
//! | --- | --- | --- |
//! | Ethernet | a segment shared with the simulated peers' stacks; drops, duplicates, reorders, corrupts, link resets from the seed | [`ethernet`] |
//! | console | an in-memory duplex byte pipe | [`serial`] |
//! | time | a clock that moves only when the simulator moves it (1 kHz ticks) | [`time_driver`] |
//! | flash | the project's NOR model (`homemx_spool::testing`): power cuts after any operation, torn writes | [`flash`] |
//! | entropy | ChaCha20 from the seed, one stream per boot ([`homemx_board::EntropyKind::Simulated`]) | [`entropy`] |
//! | chip key | a per-device secret from the seed, SHA-256 with the label (the H5's SAES/DHUK) | [`chip_key`] |
//! | reset | a panic with a [`reset::DeviceReset`] payload, caught by the executor loop | [`reset`] |
//! | power | one rail per boot that every part checks | [`power`] |
//! | log | defmt frames counted, not decoded | [`logging`] |
//!
//! A run: `let mut world = World::new(SimConfig::new(seed))`; attach the peers' stacks to
//! `world.segment()` (with [`dhcp_server`] for the device's DHCP); `let (parts, handles) =
//! world.boot(ResetCause::PowerOn)`; [`install`] the parts; spawn the services on a
//! [`executor::SimExecutor`] (they call [`init`] as on a board); drive everything with
//! [`executor::run`], injecting events from its hook; after a power cut or a reset, boot
//! again on a fresh executor. Everything is per thread: one simulation per thread.
//!
//! The crate defines the process's embassy-time driver, embassy-executor pender, defmt logger and
//! enables critical-section's `std` implementation: no other driver, pender or
//! critical-section implementation may be linked beside it (embassy-executor's
//! `platform-*` features, embassy-time's `std`/`mock-driver`). Nor does it define
//! embassy-executor's `trace` hooks: a build that enables `trace` must provide them.
#![deny(missing_docs)]

pub mod chip_key;
pub mod dhcp_server;
pub mod entropy;
pub mod ethernet;
pub mod executor;
pub mod flash;
pub mod logging;
pub mod power;
pub mod reset;
pub mod seeds;
pub mod serial;
pub mod time_driver;
mod world;

use std::cell::RefCell;

use homemx_board::BoardParts;

pub use time_driver::{core_clock_counts, CORE_CLOCK_HZ};
pub use world::{DeviceHandles, SimConfig, World};

/// The concrete parts of this board, as the application sees them.
pub type Parts = BoardParts<ethernet::SimEthernet, flash::SimFlash, serial::SimSerial, entropy::SimEntropy, reset::SimReset, flash::SimFlash, homemx_board::NoTamperLoop, chip_key::SimChipKey>;

/// What this board has room for: the QEMU board's figures.
pub const SIZING: homemx_board::Sizing = homemx_board::Sizing {
    mx_sessions: 4,
    submission_sessions: 2,
    tls_sessions: 3,
    transaction_slots: 4,
    mx_spare_listeners: 4,
    submission_spare_listeners: 1,
    http_sessions: 3,
    spool_messages: 128,
    heap_bytes: homemx_board::heap_for(3),
    event_log_entries: 64,
};

/// A small chip (1008 KiB in 4 KiB sectors), so runs and flash snapshots are quick: 4 for
/// the key store (the key flash's window), 8 for the key-value store, 240 for the spool (the
/// data flash's).
pub const FLASH_MAP: homemx_board::FlashMap = homemx_board::FlashMap {
    key_sector_size: flash::SECTOR_SIZE as u32,
    key_store_sectors: 4,
    sector_size: flash::SECTOR_SIZE as u32,
    key_value_sectors: 8,
    spool_sectors: 240,
};

const _: () = assert!(FLASH_MAP.is_consistent());
const _: () = assert!(SIZING.is_consistent());

/// Board name reported by `/health` and the status page.
pub const BOARD_NAME: &str = "sim";

/// No stack to paint: tasks run on the host thread's stack.
pub const STACK_PAINTED: bool = false;

/// Why the board could not start.
#[derive(Debug, defmt::Format)]
pub enum InitError {
    /// The simulator installed no parts on this thread before the device called [`init`].
    PartsNotInstalled,
}

thread_local! {
    static INSTALLED: RefCell<Option<Parts>> = const { RefCell::new(None) };
}

/// Hands `parts` (from [`World::boot`]) to the next [`init`] on this thread.
pub fn install(parts: Parts) {
    INSTALLED.with(|installed| *installed.borrow_mut() = Some(parts));
}

/// Takes the parts the simulator installed, as a board's `init` brings up its hardware.
pub fn init(_spawner: embassy_executor::Spawner) -> Result<Parts, InitError> {
    INSTALLED.with(|installed| installed.borrow_mut().take()).ok_or(InitError::PartsNotInstalled)
}

#[cfg(test)]
mod tests {
    use homemx_board::{EntropyKind, EntropySource, ResetCause, ResetControl};

    use super::*;

    #[test]
    fn the_parts_satisfy_the_board_traits() {
        let mut world = World::new(SimConfig::new(1));
        let (parts, _handles) = world.boot(ResetCause::PowerOn);
        homemx_board::assert_board_parts(&parts);
        assert_eq!(parts.name, BOARD_NAME);
        assert_eq!(world.flash().snapshot().len(), (FLASH_MAP.key_store_bytes() + FLASH_MAP.data_bytes()) as usize);
    }

    #[test]
    fn init_takes_the_installed_parts_once() {
        let spawner = executor::SimExecutor::new().spawner();
        assert!(matches!(init(spawner), Err(InitError::PartsNotInstalled)));
        let mut world = World::new(SimConfig::new(1));
        let (parts, handles) = world.boot(ResetCause::Watchdog);
        install(parts);
        let parts = init(spawner).expect("installed");
        assert_eq!(parts.reset.cause(), ResetCause::Watchdog);
        assert_eq!(handles.boot, 1);
        assert!(matches!(init(spawner), Err(InitError::PartsNotInstalled)));
    }

    #[test]
    fn entropy_is_simulated_one_stream_per_boot_and_reproducible() {
        let bytes = |seed, boots| {
            let mut world = World::new(SimConfig::new(seed));
            let mut parts = world.boot(ResetCause::PowerOn).0;
            for _ in 1..boots {
                parts = world.boot(ResetCause::Software).0;
            }
            assert_eq!(parts.entropy.kind(), EntropyKind::Simulated);
            let mut buffer = [0u8; 32];
            parts.entropy.fill_bytes(&mut buffer);
            buffer
        };
        assert_eq!(bytes(1, 1), bytes(1, 1));
        assert_ne!(bytes(1, 1), bytes(1, 2), "each boot has its own stream");
        assert_ne!(bytes(1, 1), bytes(2, 1));
    }
}
