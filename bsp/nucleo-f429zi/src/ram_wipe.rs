//! The RAM wipe at reset: zeroes the 64 KiB CCM RAM before anything else runs (the 192 KiB
//! of SRAM are zeroed right after by cortex-m-rt's `zero-init-ram`).
//!
//! cortex-m-rt's `Reset` handler calls `__pre_init` with `bl` before it touches RAM, then,
//! with the `zero-init-ram` feature, stores zeros over `_ram_start.._ram_end` (the whole
//! `RAM` region of `memory.x`: SRAM1, SRAM2 and SRAM3, stack included) and only then copies
//! `.data`. The CCM RAM at `0x1000_0000` is not part of that region, so this `__pre_init`
//! wipes it. It is written in assembly and uses only the caller-saved registers `r0`–`r3`:
//! no stack, no Rust code, nothing in RAM is read or written except the zeros themselves.
//!
//! `memory.x` names `__pre_init` in an `EXTERN` so the linker keeps this object even though
//! no Rust code refers to it.

core::arch::global_asm!(
    ".section .text.__pre_init, \"ax\"",
    ".global __pre_init",
    ".type __pre_init, %function",
    ".thumb_func",
    "__pre_init:",
    // Make sure the CCM RAM is clocked: RCC_AHB1ENR (0x4002_3830) bit 20, CCMDATARAMEN.
    // It is set at reset, but a wipe must not depend on that.
    "    ldr r0, =0x40023830",
    "    ldr r1, [r0]",
    "    orr r1, r1, #0x00100000",
    "    str r1, [r0]",
    "    dsb",
    // Zero _ccm_ram_start.._ccm_ram_end, four words per iteration (64 KiB is a multiple of 16).
    "    ldr r0, =_ccm_ram_start",
    "    ldr r1, =_ccm_ram_end",
    "    movs r2, #0",
    "    movs r3, #0",
    "0:",
    "    cmp r0, r1",
    "    bhs 1f",
    "    stm r0!, {{r2, r3}}",
    "    stm r0!, {{r2, r3}}",
    "    b 0b",
    "1:",
    "    dsb",
    "    bx lr",
    ".size __pre_init, . - __pre_init",
);
