//! `provision-board [--print]`: sets the STM32H573I-DK's option bytes that make the chip erase
//! all its SRAM at every reset (`SRAM1_3_RST`, `SRAM2_RST`; RM0481 `FLASH_OPTSR2`, active low:
//! 0 = erased at reset, ST's factory value is 1). The firmware reads them at boot and refuses
//! to unlock while they are not set (`bsp/stm32h573i-dk/src/option_bytes.rs`).
//!
//! probe-rs has no option-byte command (its `download` and `erase` work on the flash array, and
//! the H5's option bytes are programmed through FLASH registers with their own unlock keys and
//! `OPTSTRT`), so this step runs ST's `STM32_Programmer_CLI` (STM32CubeProgrammer) over the
//! kit's ST-LINK. It is idempotent: it reads the option bytes first and writes only when one
//! of the two is not 0, then reads them back and fails unless both are 0. Without the tool (not
//! on `PATH`, nor in `STM32_PROGRAMMER_CLI`) or with `--print` it prints the commands instead.
//!
//! Setting the bits also erases the SRAM right away (RM0481: enabling the feature triggers an
//! erase), so the running firmware restarts from a wiped RAM.

use std::process::Command;

use homemx_qemu::Result;

/// The two options and the value that makes the chip erase the SRAM at reset.
const OPTIONS: [&str; 2] = ["SRAM1_3_RST", "SRAM2_RST"];

/// The arguments that read all option bytes.
const DISPLAY: [&str; 4] = ["-c", "port=SWD", "-ob", "displ"];
/// The arguments that set both options to 0 (erase at reset).
const PROGRAM: [&str; 5] = ["-c", "port=SWD", "-ob", "SRAM1_3_RST=0", "SRAM2_RST=0"];

fn programmer() -> String {
    std::env::var("STM32_PROGRAMMER_CLI").unwrap_or_else(|_| "STM32_Programmer_CLI".into())
}

fn printed(program: &str, arguments: &[&str]) -> String {
    std::iter::once(program).chain(arguments.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// The value of `option` in `STM32_Programmer_CLI -ob displ`'s output (lines such as
/// `     SRAM2_RST    : 0x1 (SRAM2 not erased when a system reset occurs)`).
pub fn option_value(display: &str, option: &str) -> Option<u32> {
    display.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != option {
            return None;
        }
        let value = rest.split_whitespace().next()?;
        u32::from_str_radix(value.strip_prefix("0x").or_else(|| value.strip_prefix("0X"))?, 16).ok()
    })
}

/// The options of [`OPTIONS`] that are not 0 (or not shown) in the display output.
pub fn options_not_set(display: &str) -> Vec<&'static str> {
    OPTIONS.iter().copied().filter(|option| option_value(display, option) != Some(0)).collect()
}

fn display(program: &str) -> Result<String> {
    let output = Command::new(program).args(DISPLAY).output().map_err(|error| format!("{program}: {error}"))?;
    if !output.status.success() {
        return Err(format!("`{}` failed: {}", printed(program, &DISPLAY), String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn print_commands(program: &str) {
    println!("Set the STM32H573's RAM erase at reset (both options active low, 0 = erased), with the kit's ST-LINK attached:");
    println!("  {}   # read: SRAM1_3_RST and SRAM2_RST must both be 0x0", printed(program, &DISPLAY));
    println!("  {}", printed(program, &PROGRAM));
}

/// `cargo xtask provision-board [--print]`.
pub fn provision_board(arguments: &[String]) -> Result<()> {
    let program = programmer();
    match arguments {
        [] => {}
        [flag] if flag == "--print" => {
            print_commands(&program);
            return Ok(());
        }
        _ => return Err("usage: cargo xtask provision-board [--print]".into()),
    }
    if Command::new(&program).arg("--version").output().is_err() {
        print_commands(&program);
        return Err(format!(
            "{program} not found (STM32CubeProgrammer; or set STM32_PROGRAMMER_CLI): run the commands above by hand. \
             probe-rs cannot write the H5's option bytes."
        )
        .into());
    }
    let before = options_not_set(&display(&program)?);
    if before.is_empty() {
        println!("provision-board: SRAM1_3_RST and SRAM2_RST are 0 already: the chip erases its SRAM at every reset; nothing written");
        return Ok(());
    }
    println!("provision-board: {} not set; programming: {}", before.join(" "), printed(&program, &PROGRAM));
    let status = Command::new(&program).args(PROGRAM).status().map_err(|error| format!("{program}: {error}"))?;
    if !status.success() {
        return Err(format!("`{}` failed ({status})", printed(&program, &PROGRAM)).into());
    }
    let after = options_not_set(&display(&program)?);
    if !after.is_empty() {
        return Err(format!("after programming, {} still not 0", after.join(" ")).into());
    }
    println!("provision-board: done; the chip erases its SRAM at every reset (checked by the firmware at boot)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option-byte part of `STM32_Programmer_CLI -ob displ` on an H5 as shipped.
    const FACTORY: &str = "OPTION BYTES BANK: 1

   User Configuration 2:

     TZEN         : 0xC3 (Trust zone disabled)
     SRAM2_ECC    : 0x1 (SRAM2 ECC check disabled)
     SRAM3_ECC    : 0x1 (SRAM3 ECC check disabled)
     BKPRAM_ECC   : 0x1 (BKPRAM ECC check disabled)
     SRAM2_RST    : 0x1 (SRAM2 not erased when a system reset occurs)
     SRAM1_3_RST  : 0x1 (SRAM1 and SRAM3 not erased when a system reset occurs)
";

    #[test]
    fn the_factory_values_need_both_options_and_programmed_ones_none() {
        assert_eq!(option_value(FACTORY, "SRAM2_RST"), Some(1));
        assert_eq!(option_value(FACTORY, "TZEN"), Some(0xC3));
        assert_eq!(options_not_set(FACTORY), ["SRAM1_3_RST", "SRAM2_RST"]);
        let programmed = FACTORY.replace("SRAM2_RST    : 0x1", "SRAM2_RST    : 0x0").replace("SRAM1_3_RST  : 0x1", "SRAM1_3_RST  : 0x0");
        assert!(options_not_set(&programmed).is_empty());
        let half = FACTORY.replace("SRAM2_RST    : 0x1", "SRAM2_RST    : 0x0");
        assert_eq!(options_not_set(&half), ["SRAM1_3_RST"]);
    }

    #[test]
    fn an_option_missing_from_the_output_counts_as_not_set() {
        assert_eq!(options_not_set("Error: No STM32 target found!"), ["SRAM1_3_RST", "SRAM2_RST"]);
        // A name that merely contains another's is not it.
        assert_eq!(option_value("     SRAM1_3_RST_X : 0x0\n", "SRAM1_3_RST"), None);
    }
}
