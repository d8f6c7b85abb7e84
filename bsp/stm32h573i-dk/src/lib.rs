//! Board support for the STM32H573I-DK Discovery kit (STM32H573IIK3Q, Cortex-M33 at 250 MHz,
//! 640 KB SRAM, 2 MB flash): the homemx appliance on real hardware, through embassy-stm32.
//!
//! What the kit has and what this crate makes of it:
//!
//! | part | hardware | module |
//! | --- | --- | --- |
//! | Ethernet | MAC in RMII mode + LAN8742A PHY | [`ethernet`] (embassy-stm32 `eth`) |
//! | console | USB device FS on the USB Type-C connector, CDC-ACM | [`usb_console`] (embassy-usb, async `embedded-io`) |
//! | time | TIM2 at 62.5 MHz → 1 kHz ticks | embassy-stm32 `time-driver-tim2`, [`clocks`] |
//! | cycle count | SysTick on the 250 MHz core clock | [`core_clock`] |
//! | key flash | internal flash bank 2, sectors 2–127 (`0x0810_4000`, 8 KiB sectors; the key store in the first two) | [`flash`], [`partition_map`] |
//! | data flash | 64 MB Octo-SPI NOR, MX25LM51245G, 4 KiB sectors: key-value store and spool | [`octo_spi_nor`] (1-line SPI, async NOR, counters) |
//! | entropy | true RNG (NIST SP 800-90B source, health tests on) | [`entropy`] (continuous test too) |
//! | reset | SCB `SYSRESETREQ`, cause from RCC_RSR | [`reset`] |
//! | tamper loop | TAMP external input 1 on PC13 (normally-closed loop to GND, level mode, pull-up precharge) | [`tamper`] |
//! | RAM wipe | all 640 KB of SRAM zeroed at reset | `cortex-m-rt/zero-init-ram`, `ram_wipe` |
//! | RAM wipe by the chip | option bytes `SRAM1_3_RST`/`SRAM2_RST`, checked at boot | [`option_bytes`], [`reset`] |
//! | chip key | SAES, AES-256 under the derived hardware unique key (DHUK): the key store's records are bound to this chip | [`chip_key`] |
//!
//! [`init`] takes the hardware once and hands the application a [`homemx_board::BoardParts`].
//! Logs go out through defmt over RTT to the ST-LINK, see [`logging`]. The README says why this
//! board, the pin map, the flash partition, and how to flash it with probe-rs.
//!
//! On the host only [`partition_map`], [`option_bytes`] and the sizes are built, for their tests.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
pub mod chip_key;
#[cfg(target_os = "none")]
pub mod clocks;
#[cfg(target_os = "none")]
pub mod core_clock;
#[cfg(target_os = "none")]
pub mod entropy;
#[cfg(target_os = "none")]
pub mod ethernet;
#[cfg(target_os = "none")]
pub mod flash;
#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
pub mod logging;
#[cfg(target_os = "none")]
pub mod octo_spi_nor;
pub mod option_bytes;
pub mod partition_map;
#[cfg(all(target_os = "none", feature = "ram-wipe"))]
mod ram_wipe;
#[cfg(target_os = "none")]
pub mod reset;
#[cfg(target_os = "none")]
pub mod tamper;
#[cfg(target_os = "none")]
pub mod usb_console;

#[cfg(target_os = "none")]
pub use core_clock::{core_clock_counts, CORE_CLOCK_HZ};
pub use partition_map::FLASH_MAP;

/// Whether the reset handler paints the stack region (cortex-m-rt `paint-stack`), so the
/// application can measure its high-water mark.
pub const STACK_PAINTED: bool = cfg!(feature = "stack-paint");

/// Inbound TLS sessions open at once (ports 25, 587 and 465) that the heap is sized for.
pub const TLS_SESSIONS: usize = 3;

/// What this board has room for: its 640 KB of SRAM holds the product's counts, as the QEMU
/// board runs them, with a heap for three inbound TLS sessions at once beside the provider
/// connections (`homemx_board::heap_for`).
pub const SIZING: homemx_board::Sizing = homemx_board::Sizing {
    mx_sessions: 4,
    submission_sessions: 2,
    tls_sessions: TLS_SESSIONS,
    transaction_slots: 4,
    mx_spare_listeners: 4,
    submission_spare_listeners: 1,
    http_sessions: 3,
    spool_messages: 128,
    heap_bytes: homemx_board::heap_for(TLS_SESSIONS),
    event_log_entries: 64,
};

const _: () = assert!(SIZING.is_consistent());

/// Board name reported by `/health` and the status page.
pub const BOARD_NAME: &str = "stm32h573i-dk";

#[cfg(target_os = "none")]
mod hardware {
    use embassy_executor::Spawner;
    use homemx_board::BoardParts;

    use crate::{chip_key, clocks, core_clock, entropy, ethernet, flash, octo_spi_nor, reset, tamper, usb_console, BOARD_NAME};

    /// The concrete parts of this board, as the application sees them.
    pub type Parts = BoardParts<
        ethernet::EthernetDriver,
        octo_spi_nor::OctoSpiNor,
        usb_console::UsbConsole,
        entropy::HardwareEntropy,
        reset::SystemReset,
        flash::DataPartition,
        tamper::TamperInput,
        chip_key::SaesChipKey,
    >;

    /// Checked at compile time: this board's parts satisfy the board traits.
    #[allow(dead_code)]
    fn parts_satisfy_the_board_traits(parts: &Parts) {
        homemx_board::assert_board_parts(parts);
    }

    /// Why the board could not start.
    #[derive(Debug, defmt::Format)]
    pub enum InitError {
        /// The Ethernet PHY did not answer on SMI address 0 (no LAN8742A, or MDIO not connected).
        EthernetPhyMissing,
        /// The USB device task could not be spawned.
        UsbTaskSpawn,
        /// The Cortex-M core peripherals (SysTick) were already taken by someone else.
        CorePeripheralsTaken,
        /// The Octo-SPI NOR did not start (the OCTOSPI refused a command, or `RDID` did not
        /// answer the MX25LM51245G: e.g. left in octal mode by another firmware without a
        /// power cycle).
        OctoSpiNor(octo_spi_nor::OctoSpiNorError),
    }

    /// Brings the board up: clocks, time, cycle counter, reset cause, RNG, the SAES (chip key),
    /// the internal flash (key flash), the Octo-SPI NOR (data flash), Ethernet, the USB console
    /// and the tamper input.
    ///
    /// Call once, first thing in `main`. `spawner` runs the USB device task.
    pub fn init(spawner: Spawner) -> Result<Parts, InitError> {
        // Read before anything else can reset the flags.
        let reset = reset::SystemReset::read_and_clear_cause();
        let mut configuration = clocks::configuration();
        // Keep UCPD1's dead-battery pull-downs on the Type-C CC lines: the port stays a sink
        // that a Type-C host powers (usb_console.rs).
        configuration.enable_ucpd1_dead_battery = true;
        let peripherals = embassy_stm32::init(configuration);
        let mut core_peripherals = cortex_m::Peripherals::take().ok_or(InitError::CorePeripheralsTaken)?;
        core_clock::start(&mut core_peripherals.SYST);

        let unique_id = embassy_stm32::uid::uid();
        let mac_address = ethernet::mac_address_from_unique_id(&unique_id);

        let entropy = entropy::HardwareEntropy::new(peripherals.RNG);
        // After the RNG: the SAES draws its masks from it.
        let chip_key = chip_key::SaesChipKey::new(peripherals.SAES);
        let key_flash = flash::DataPartition::new(embassy_stm32::flash::Flash::new_blocking(peripherals.FLASH));
        let flash = octo_spi_nor::OctoSpiNor::new(octo_spi_nor::OctoSpiPins {
            peripheral: peripherals.OCTOSPI1,
            clock: peripherals.PF10,
            chip_select: peripherals.PG6,
            data_0: peripherals.PB1,
            data_1: peripherals.PD12,
        })
        .map_err(InitError::OctoSpiNor)?;

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
                transmit_data_1: peripherals.PG12,
            },
            mac_address,
        )
        .map_err(|_| InitError::EthernetPhyMissing)?;

        let serial = usb_console::start(
            spawner,
            usb_console::UsbPins { peripheral: peripherals.USB, data_plus: peripherals.PA12, data_minus: peripherals.PA11 },
            embassy_stm32::uid::uid_hex(),
        )
        .map_err(|_| InitError::UsbTaskSpawn)?;

        let tamper = tamper::TamperInput::new(peripherals.PC13);

        Ok(BoardParts { name: BOARD_NAME, network, mac_address, flash, key_flash, serial, entropy, reset, tamper, chip_key })
    }
}

#[cfg(target_os = "none")]
pub use hardware::{init, InitError, Parts};
