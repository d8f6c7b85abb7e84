//! Board support for QEMU's `mps2-an386` (Cortex-M4): the homemx test board.
//!
//! What QEMU's machine has and what this crate makes of it:
//!
//! | part | QEMU device | module |
//! | --- | --- | --- |
//! | Ethernet | SMSC LAN9118 at `0x4020_0000`, IRQ 13 | [`ethernet`] (an `embassy-net-driver`) |
//! | console | CMSDK APB UART0 at `0x4000_4000`, IRQ 0 (RX) / 1 (TX) | [`uart`] (async `embedded-io`) |
//! | time | SysTick, 25 MHz core clock | [`time_driver`] (embassy-time driver, 1 kHz tick) |
//! | flash | 16 MiB PSRAM at `0x2100_0000`, backed by a host file: key flash and data flash windows | [`flash`] (NOR semantics, counters) |
//! | entropy | none (no TRNG) | [`entropy`] (ratcheted seed in flash) |
//! | reset | SCB `SYSRESETREQ` | [`reset`] |
//! | stack guard | MPU region 0 over the 256 MiB below the RAM | [`stack_guard`] |
//! | tamper loop | PCA9552 at I²C `0x60` on the SBCon at `0x4002_A000` (plugged in by the harness) | [`tamper`] |
//! | chip key | none: the MPS2 has no hardware unique key, so the key store's records are not bound (`homemx_board::NoChipKey`) | |
//!
//! [`init`] takes the hardware once and hands the application a [`homemx_board::BoardParts`].
//! Logs go out through defmt over semihosting (QEMU's stdout), see [`logging`].
#![no_std]

pub mod entropy;
pub mod ethernet;
pub mod flash;
pub mod interrupts;
pub mod logging;
pub mod registers;
pub mod reset;
pub mod stack_guard;
pub mod tamper;
pub mod time_driver;
pub mod uart;

pub use time_driver::{core_clock_counts, CORE_CLOCK_HZ};

/// Whether the reset handler paints the stack region (cortex-m-rt `paint-stack`), so the
/// application can measure its high-water mark.
pub const STACK_PAINTED: bool = cfg!(feature = "stack-paint");

use homemx_board::BoardParts;

/// The concrete parts of this board, as the application sees them.
pub type Parts = BoardParts<
    ethernet::Lan9118,
    flash::Partition,
    uart::CmsdkUart,
    entropy::SeededEntropy,
    reset::SystemReset,
    flash::Partition,
    tamper::Pca9552Loop<tamper::Sbcon>,
    homemx_board::NoChipKey,
>;

/// What this board has room for (static RAM is not the limit in QEMU; the figures are the
/// product's, see `BENCHMARKS.md`).
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
/// The application's 8 MiB less the board area, in 4 KiB sectors: the key flash's 4 for the
/// key store; on the data flash 64 for the key-value store, the rest for the spool. One device,
/// two windows: the same bytes as when all three shared one partition.
pub const FLASH_MAP: homemx_board::FlashMap = homemx_board::FlashMap {
    key_sector_size: flash::SECTOR_SIZE as u32,
    key_store_sectors: (flash::KEY_FLASH_SIZE / flash::SECTOR_SIZE) as u32,
    sector_size: flash::SECTOR_SIZE as u32,
    key_value_sectors: 64,
    spool_sectors: (flash::DATA_FLASH_SIZE / flash::SECTOR_SIZE) as u32 - 64,
};

/// Board name reported by `/health` and the status page.
pub const BOARD_NAME: &str = "qemu-mps2-an386";

/// Why the board could not start.
#[derive(Debug, defmt::Format)]
pub enum InitError {
    /// The LAN9118 did not answer with its ID or byte-order test pattern.
    EthernetMissing,
    /// The flash holds no entropy seed: the image was not provisioned (`cargo xtask flash-image`).
    EntropySeedMissing,
    /// The flash refused an operation while the entropy seed was ratcheted.
    Flash,
}

/// Brings the board up: time, interrupts, Ethernet, UART, flash, entropy and the tamper loop.
///
/// Call once, first thing in `main`. The entropy seed is ratcheted forward and re-written to
/// flash before any random byte is handed out. This board spawns no tasks of its own; the
/// `spawner` is part of the common board interface (the real board runs its USB device).
pub fn init(_spawner: embassy_executor::Spawner) -> Result<Parts, InitError> {
    let mut core = cortex_m::Peripherals::take().expect("board init called twice");
    stack_guard::enable(&mut core.MPU);
    time_driver::start(&mut core.SYST);
    let network = ethernet::Lan9118::new().ok_or(InitError::EthernetMissing)?;
    let mac_address = network.mac_address();
    let serial = uart::CmsdkUart::new();
    let mut device_flash = flash::PsramNorFlash::take();
    let entropy = entropy::SeededEntropy::from_flash(&mut device_flash, network.free_running_counter())?;
    let (key_flash, flash) = flash::Partition::key_and_data(device_flash);
    interrupts::enable_all();
    Ok(BoardParts {
        name: BOARD_NAME,
        network,
        mac_address,
        flash,
        key_flash,
        serial,
        entropy,
        reset: reset::SystemReset,
        tamper: tamper::Pca9552Loop::new(tamper::Sbcon::shield_1()),
        // The MPS2 has no hardware unique key: the key store's records are not bound.
        chip_key: homemx_board::NoChipKey,
    })
}
