//! Which board the services run on: the one file that names a board. The board's crate exports
//! its parts, its `SIZING` (listeners, transaction slots, HTTP sessions, spool messages, heap, event-log entries)
//! and its `FLASH_MAP`; every other module reads them through `crate::bsp`.
//!
//! Owns: nothing. Calls: nothing.

#[cfg(feature = "board-qemu")]
pub use homemx_bsp_qemu_mps2 as bsp;
#[cfg(feature = "board-stm32h573i-dk")]
pub use homemx_bsp_stm32h573i_dk as bsp;

#[cfg(feature = "board-sim")]
pub use homemx_bsp_sim as bsp;

#[cfg(any(
    all(feature = "board-qemu", feature = "board-stm32h573i-dk"),
    all(feature = "board-qemu", feature = "board-sim"),
    all(feature = "board-stm32h573i-dk", feature = "board-sim")
))]
compile_error!("choose exactly one board feature");
