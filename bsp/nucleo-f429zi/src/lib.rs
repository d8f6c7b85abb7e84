//! Board support for the NUCLEO-F429ZI (STM32F429ZI, Cortex-M4F at 168 MHz): the homemx
//! appliance on real hardware, through embassy-stm32.
//!
//! What the board has and what this crate makes of it:
//!
//! | part | hardware | module |
//! | --- | --- | --- |
//! | Ethernet | MAC in RMII mode + LAN8742A PHY (CN14) | [`ethernet`] (embassy-stm32 `eth`) |
//! | console | USB OTG FS on CN13, CDC-ACM | [`usb_console`] (embassy-usb, async `embedded-io`) |
//! | time | TIM12 at 42 MHz → 1 kHz ticks | embassy-stm32 `time-driver-any`, [`clocks`] |
//! | cycle count | SysTick on the 168 MHz core clock | [`core_clock`] |
//! | flash | internal flash bank 2, sectors 17–23 (`0x0812_0000`, 896 KiB) | [`flash`] (async NOR, counters) |
//! | entropy | hardware RNG | [`entropy`] (continuous test) |
//! | reset | SCB `SYSRESETREQ`, cause from RCC_CSR | [`reset`] |
//! | RAM wipe | 192 KiB SRAM + 64 KiB CCM zeroed at reset | `cortex-m-rt/zero-init-ram`, `ram_wipe` |
//!
//! [`init`] takes the hardware once and hands the application a [`homemx_board::BoardParts`].
//! Logs go out through defmt over RTT to the debug probe, see [`logging`]. The README says
//! why this board, the pin map, the flash partition, and how to flash it with probe-rs.
#![no_std]

pub mod clocks;
pub mod core_clock;
pub mod entropy;
pub mod ethernet;
pub mod flash;
pub mod interrupts;
pub mod logging;
#[cfg(feature = "ram-wipe")]
mod ram_wipe;
pub mod reset;
pub mod usb_console;

pub use core_clock::{core_clock_counts, CORE_CLOCK_HZ};

/// Whether the reset handler paints the stack region (cortex-m-rt `paint-stack`), so the
/// application can measure its high-water mark.
pub const STACK_PAINTED: bool = cfg!(feature = "stack-paint");

use embassy_executor::Spawner;
use embassy_stm32::pac;
use homemx_board::BoardParts;

/// The concrete parts of this board, as the application sees them.
pub type Parts = BoardParts<
    ethernet::EthernetDriver,
    flash::DataPartition,
    usb_console::UsbConsole,
    entropy::HardwareEntropy,
    reset::SystemReset,
>;

/// Checked at compile time: this board's parts satisfy the board traits.
#[allow(dead_code)]
fn parts_satisfy_the_board_traits(parts: &Parts) {
    homemx_board::assert_board_parts(parts);
}

/// What this board has room for: its 192 KB of SRAM holds one session of each kind (it no
/// longer links since TLS moved to rustls; the STM32H573I-DK replaces it, issue 16).
pub const SIZING: homemx_board::Sizing = homemx_board::Sizing {
    mx_sessions: 1,
    submission_sessions: 1,
    tls_sessions: 1,
    transaction_slots: 1,
    mx_spare_listeners: 1,
    submission_spare_listeners: 1,
    http_sessions: 1,
    spool_messages: 64,
    heap_bytes: homemx_board::heap_for(1),
    // Half the QEMU board's events: 3.7 KB of the 192 KB SRAM back.
    event_log_entries: 32,
};

/// The data partition (`flash.rs`: seven 128 KiB sectors of bank 2): two for the key store
/// (its record moves between two slots), two for the key-value store (one is its buffer),
/// three for the spool (one is its spare: 256 KiB for mail), the fewest each store takes.
pub const FLASH_MAP: homemx_board::FlashMap = homemx_board::FlashMap {
    sector_size: 128 * 1024,
    key_store_sectors: 2,
    key_value_sectors: 2,
    spool_sectors: 3,
};

/// Board name reported by `/health` and the status page.
pub const BOARD_NAME: &str = "nucleo-f429zi";

/// The first revision of the STM32F42x/43x without erratum 2.2.11 (`DBGMCU_IDCODE.REV_ID`
/// 0x2001, "revision 3").
const FIRST_REVISION_WITHOUT_BANK_2_READ_ERRATUM: u16 = 0x2001;

/// Why the board could not start.
#[derive(Debug, defmt::Format)]
pub enum InitError {
    /// The Ethernet PHY did not answer on SMI address 0 (no LAN8742A, or MDIO not connected).
    EthernetPhyMissing,
    /// The USB device task could not be spawned.
    UsbTaskSpawn,
    /// The Cortex-M core peripherals (SysTick) were already taken by someone else.
    CorePeripheralsTaken,
    /// The chip is an early STM32F429 revision hit by erratum 2.2.11 (ES0206): reads from
    /// flash bank 2 can return wrong data while PA12 (USB D+) is in use, and embassy-stm32
    /// refuses such reads. The data partition lives in bank 2 and the console needs PA12.
    FlashBank2ReadErratum {
        /// `DBGMCU_IDCODE.REV_ID` of the chip.
        revision: u16,
    },
}

/// Brings the board up: clocks, time, cycle counter, reset cause, RNG, flash, Ethernet and the USB console.
///
/// Call once, first thing in `main`. `spawner` runs the USB device task.
pub fn init(spawner: Spawner) -> Result<Parts, InitError> {
    // Read before anything else can reset the flags.
    let reset = reset::SystemReset::read_and_clear_cause();
    let peripherals = embassy_stm32::init(clocks::configuration());
    let mut core_peripherals = cortex_m::Peripherals::take().ok_or(InitError::CorePeripheralsTaken)?;
    core_clock::start(&mut core_peripherals.SYST);

    let revision = pac::DBGMCU.idcode().read().rev_id();
    if revision < FIRST_REVISION_WITHOUT_BANK_2_READ_ERRATUM {
        return Err(InitError::FlashBank2ReadErratum { revision });
    }

    let unique_id = embassy_stm32::uid::uid();
    let mac_address = ethernet::mac_address_from_unique_id(&unique_id);

    let entropy = entropy::HardwareEntropy::new(peripherals.RNG);
    let flash = flash::DataPartition::new(embassy_stm32::flash::Flash::new(peripherals.FLASH, interrupts::Interrupts));

    let network = ethernet::start(
        ethernet::EthernetPins {
            mac: peripherals.ETH,
            station_management: peripherals.ETH_SMA,
            reference_clock: peripherals.PA1,
            management_data: peripherals.PA2,
            management_clock: peripherals.PC1,
            carrier_sense_data_valid: peripherals.PA7,
            receive_data_0: peripherals.PC4,
            receive_data_1: peripherals.PC5,
            transmit_enable: peripherals.PG11,
            transmit_data_0: peripherals.PG13,
            transmit_data_1: peripherals.PB13,
        },
        mac_address,
    )
    .map_err(|_| InitError::EthernetPhyMissing)?;

    let serial = usb_console::start(
        spawner,
        usb_console::UsbPins {
            peripheral: peripherals.USB_OTG_FS,
            data_plus: peripherals.PA12,
            data_minus: peripherals.PA11,
            bus_voltage: peripherals.PA9,
        },
        embassy_stm32::uid::uid_hex(),
    )
    .map_err(|_| InitError::UsbTaskSpawn)?;

    Ok(BoardParts { name: BOARD_NAME, network, mac_address, flash, serial, entropy, reset })
}
