//! The stack's guard: the MPU forbids every access to the 256 MiB below the RAM (`0x1000_0000..
//! 0x2000_0000`), so a stack that overflows faults at its first push past the RAM's start.
//!
//! flip-link puts the stack at the RAM's start, below the statics (memory.x), but QEMU's
//! mps2-an386 maps the addresses below the RAM as a reserved region whose writes it ignores
//! without a fault: without this guard an overflowing stack would run on silently there (the
//! e2e test `stack_overflow` saw exactly that). The real board needs no MPU for it: its
//! Cortex-M33 checks the stack pointer against `MSPLIM` (cortex-m-rt's `set-msplim`). The region
//! is large so that no frame, however big, can step over it. Privileged code keeps the default
//! memory map everywhere else (`PRIVDEFENA`).
//!
//! Owns: MPU region 0. Calls nothing.

/// The guarded region: 256 MiB ending at the RAM's start.
const GUARD_BASE: u32 = 0x1000_0000;
/// RASR: execute never, no access (AP 000), size 2^(27+1) bytes, enabled.
const GUARD_ATTRIBUTES: u32 = (1 << 28) | (27 << 1) | 1;
/// MPU_CTRL: enabled, with the default memory map for privileged code outside the regions.
const CTRL_ENABLE_PRIVDEFENA: u32 = (1 << 2) | 1;

/// Turns the guard on (once, at board init, before any task runs).
pub fn enable(mpu: &mut cortex_m::peripheral::MPU) {
    // SAFETY: region 0 is this module's; it covers no memory the firmware uses, and the
    // default map stays on for everything else, so no access the firmware makes changes.
    unsafe {
        mpu.rnr.write(0);
        mpu.rbar.write(GUARD_BASE);
        mpu.rasr.write(GUARD_ATTRIBUTES);
        mpu.ctrl.write(CTRL_ENABLE_PRIVDEFENA);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}
