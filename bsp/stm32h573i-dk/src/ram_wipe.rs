//! The RAM wipe at reset: makes sure every SRAM block is clocked before cortex-m-rt's
//! `zero-init-ram` zeroes all 640 KB of it.
//!
//! cortex-m-rt's `Reset` handler calls `__pre_init` with `bl` before it touches RAM, then,
//! with the `zero-init-ram` feature, stores zeros over `_ram_start.._ram_end` (the statics' part
//! of SRAM1–3: flip-link moved it to the top of `0x2000_0000..0x200A_0000`), with `paint-stack`
//! overwrites `_stack_end.._stack_start` (the stack below them, from `0x2000_0000`), and only
//! then copies `.data`. The three SRAMs are clocked after reset (RM0481: `SRAM1EN`,
//! `SRAM2EN`, `SRAM3EN` reset to 1), but a wipe must not depend on that: a store to an SRAM
//! whose clock is off would leave it unwiped (or fault). So this `__pre_init` sets the three
//! bits first. It is written in assembly and uses only the caller-saved registers `r0`–`r1`:
//! no stack, no Rust code, nothing in RAM is read or written.
//!
//! The registers are the non-secure aliases (`RCC` at `0x4402_0C00`): TrustZone is off on the
//! kit as shipped (option byte `TZEN`), which is how this firmware runs.
//!
//! `memory.x` names `__pre_init` in an `EXTERN` so the linker keeps this object even though
//! no Rust code refers to it.

core::arch::global_asm!(
    ".section .text.__pre_init, \"ax\"",
    ".global __pre_init",
    ".type __pre_init, %function",
    ".thumb_func",
    "__pre_init:",
    // RCC_AHB1ENR (0x4402_0C88) bit 31: SRAM1EN.
    "    ldr r0, =0x44020C88",
    "    ldr r1, [r0]",
    "    orr r1, r1, #0x80000000",
    "    str r1, [r0]",
    // RCC_AHB2ENR (0x4402_0C8C) bits 30 and 31: SRAM2EN, SRAM3EN.
    "    ldr r0, =0x44020C8C",
    "    ldr r1, [r0]",
    "    orr r1, r1, #0xC0000000",
    "    str r1, [r0]",
    "    dsb",
    "    isb",
    "    bx lr",
    ".size __pre_init, . - __pre_init",
);
