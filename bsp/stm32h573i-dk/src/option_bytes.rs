//! The option bytes that make the STM32H573 erase its SRAM at every reset, and what their
//! register says: plain constants and a `const fn`, so that the host tests the decoding
//! (`cargo test -p homemx-bsp-stm32h573i-dk`) and the chip reads the register in `reset`.
//!
//! RM0481, FLASH option status register 2 (`FLASH_OPTSR2_CUR` at FLASH + 0x70 holds the values
//! in force, `FLASH_OPTSR2_PRG` at + 0x74 the ones to program):
//!
//! | bit | option | 0 | 1 (ST's factory value) |
//! | --- | --- | --- | --- |
//! | 2 | `SRAM1_3_RST` | SRAM1 and SRAM3 erased at every system reset | not erased |
//! | 3 | `SRAM2_RST` | SRAM2 erased at every system reset | not erased |
//!
//! Both are active low. Together they cover the 640 KB the firmware uses (SRAM1 256 KB, SRAM2
//! 64 KB, SRAM3 320 KB); the backup SRAM is not used. They are set once per chip with
//! `cargo xtask provision-board` (STM32CubeProgrammer: probe-rs has no option-byte command).
//!
//! Owns: nothing (constants). Calls: nothing.

use homemx_board::HardwareRamWipe;

/// `FLASH_OPTSR2` bit 2: SRAM1 and SRAM3 are *not* erased at reset when set.
pub const SRAM1_3_RST: u32 = 1 << 2;
/// `FLASH_OPTSR2` bit 3: SRAM2 is *not* erased at reset when set.
pub const SRAM2_RST: u32 = 1 << 3;

/// What `FLASH_OPTSR2_CUR`'s value says about the hardware RAM wipe.
pub const fn hardware_ram_wipe(option_status_2: u32) -> HardwareRamWipe {
    match (option_status_2 & SRAM1_3_RST != 0, option_status_2 & SRAM2_RST != 0) {
        (false, false) => HardwareRamWipe::Set,
        (true, false) => HardwareRamWipe::NotSet { missing: "SRAM1_3_RST" },
        (false, true) => HardwareRamWipe::NotSet { missing: "SRAM2_RST" },
        (true, true) => HardwareRamWipe::NotSet { missing: "SRAM1_3_RST SRAM2_RST" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_bits_clear_is_the_only_value_that_wipes_all_ram() {
        assert_eq!(hardware_ram_wipe(0), HardwareRamWipe::Set);
        // Other options in the register (TZEN 0xC3 in bits 24-31, the ECC disables) do not matter.
        assert_eq!(hardware_ram_wipe(0xC300_00F3), HardwareRamWipe::Set);
        assert_eq!(hardware_ram_wipe(SRAM1_3_RST), HardwareRamWipe::NotSet { missing: "SRAM1_3_RST" });
        assert_eq!(hardware_ram_wipe(SRAM2_RST), HardwareRamWipe::NotSet { missing: "SRAM2_RST" });
        // ST's factory value: both set, nothing erased.
        assert_eq!(hardware_ram_wipe(0xC300_00FC), HardwareRamWipe::NotSet { missing: "SRAM1_3_RST SRAM2_RST" });
        for value in [SRAM1_3_RST, SRAM2_RST, SRAM1_3_RST | SRAM2_RST] {
            assert!(!hardware_ram_wipe(value).permits_unlock(), "{value:#x}");
        }
        assert!(hardware_ram_wipe(0).permits_unlock());
    }
}
