//! `cargo xtask`: the one entry point for building, running and testing homemx.
//!
//! - `build [--board qemu|stm32h573i-dk|all]`: firmware images
//! - `run [--check | --bare | --isolated-network]`: the appliance in QEMU with demo peers, mail flowing (`--check`: exit once it flowed)
//! - `flash-image PATH`: a fresh, erased flash file with an entropy seed
//! - `provision-board [--print]`: the STM32H573I-DK's option bytes that erase its SRAM at every reset (STM32CubeProgrammer)
//! - `figures`: image sizes of both boards and boot time to `/health` in QEMU
//! - `throughput [--messages N]`: messages per second through the appliance's MX and Postfix
//! - `bench [--check]`: image, spool, RAM and MX throughput beside Postfix, against `budgets.toml`, into `BENCHMARKS.md`
//! - `module-cycles`: the import cycles between the modules of every crate; fails on a new one
//! - `module-docs`: every firmware app module's doc says what it owns and whom it calls (`Owns:`, `Calls:`); fails otherwise
//! - `globals`: public mutable statics outside `channels.rs`; fails on one
//! - `simulate [--seeds N] [--first S] [--seconds T]`: the services on the host under the deterministic simulator, N seeds
//! - `test`: everything CI runs (host tests, firmware builds, fuzz smoke runs, `run --check`, QEMU e2e)

mod bench;
mod commands;
mod figures;
mod globals;
mod image_map;
mod mail_figures;
mod module_cycles;
mod module_docs;
mod provision_board;
mod run;
mod simulate;
mod stack_layout;
mod throughput;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build [--board qemu|stm32h573i-dk|all]   build firmware images (default: all)
  run [--check]                            the appliance in QEMU with demo peers, provisioned, mail in
                                           and out (root; otherwise falls back to --bare); --check:
                                           exit 0 once both arrived and the headline says mail flows
  run --bare | --isolated-network          unprovisioned boot (user networking, or a namespace: root)
  flash-image PATH                         write a fresh flash file (erased, with entropy seed)
  provision-board [--print]                STM32H573I-DK: set the option bytes SRAM1_3_RST=0 SRAM2_RST=0
                                           (SRAM erased at every reset) with STM32_Programmer_CLI over
                                           the ST-LINK; idempotent; --print: only show the commands
  figures                                  print image sizes and boot time to /health
  throughput [--messages N]                MX messages/s, appliance and Postfix (default 2000; root)
  bench [--check] [--messages N] [--no-throughput]
                                           figures against budgets.toml, written to BENCHMARKS.md
  module-cycles                            import cycles between modules (fails on a new one)
  module-docs                              app module docs without a true `Owns:` and `Calls:` (fails on one)
  globals                                  public mutable statics outside channels.rs (fails on one)
  simulate [--seeds N] [--first S] [--seconds T]
                                           the services on the host under the simulator, seed by seed
                                           (faults injected, invariants checked; fails on a seed)
  test                                     run everything CI runs";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let result = match arguments.first().map(String::as_str) {
        Some("build") => commands::build(&arguments[1..]),
        Some("run") => run::run(&arguments[1..]),
        Some("flash-image") => commands::flash_image(&arguments[1..]),
        Some("provision-board") => provision_board::provision_board(&arguments[1..]),
        Some("figures") if arguments.get(1).map(String::as_str) == Some("mail") => mail_figures::print_mail_figures(),
        Some("figures") => figures::print_figures(),
        Some("throughput") => throughput::run(&arguments[1..]),
        Some("bench") => bench::bench(&arguments[1..]),
        Some("module-cycles") => module_cycles::check(&arguments[1..]),
        Some("module-docs") => module_docs::check(&arguments[1..]),
        Some("globals") => globals::check(&arguments[1..]),
        Some("simulate") => simulate::simulate(&arguments[1..]),
        Some("test") => commands::test(&arguments[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}
