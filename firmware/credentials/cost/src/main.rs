//! Counts the Cortex-M4 instructions of the password verifier in QEMU (mps2-an386) with the
//! repository's instruction-count plugin (qemu/plugin/operation_counts.c, which setup.sh
//! builds): the program calls the plugin's mark sled around each measured piece, then exits
//! through semihosting. Measured, in order (operation index: what):
//!
//! 0. `Verifier::step(1000)`: 1,000 PBKDF2 iterations (the per-iteration figure ÷ 1,000);
//! 1. one whole verification at `DEFAULT_ITERATIONS` (`Verifier::new` and every step of
//!    `ITERATIONS_PER_STEP`, the comparison);
//! 2. one `Verifier::step(ITERATIONS_PER_STEP)`: what one executor poll costs;
//! 3. `Verifier::unknown_user` at `DEFAULT_ITERATIONS`, whole.
//!
//! Run by `run.sh` beside this file. Calls: `homemx_credentials`.
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use homemx_credentials::{PasswordRecord, Progress, Verifier, DEFAULT_ITERATIONS, ITERATIONS_PER_STEP};

// The mark sled: one 2-byte `bx lr` per entry; entry 3 × operation + 0 begins, + 1 ends it.
core::arch::global_asm!(
    ".section .text.homemx_instrument_marks,\"ax\",%progbits",
    ".global homemx_instrument_marks",
    ".thumb_func",
    "homemx_instrument_marks:",
    ".rept 12",
    "bx lr",
    ".endr",
);

extern "C" {
    fn homemx_instrument_marks();
}

/// Calls sled entry `index` (a function of its own: `bx lr` returns at once).
fn mark(index: usize) {
    let address = (homemx_instrument_marks as *const () as usize & !1) + 2 * index;
    // SAFETY: the sled holds 12 `bx lr` entries; each is a valid Thumb function (bit 0 set).
    let entry: extern "C" fn() = unsafe { core::mem::transmute(address | 1) };
    entry();
}

fn measured<R>(operation: usize, work: impl FnOnce() -> R) -> R {
    mark(3 * operation);
    let result = black_box(work());
    mark(3 * operation + 1);
    result
}

fn run(mut verifier: Verifier) -> Progress {
    loop {
        if let Progress::Done(verdict) = verifier.step(ITERATIONS_PER_STEP) {
            return Progress::Done(verdict);
        }
    }
}

#[entry]
fn main() -> ! {
    // The record is made here too (its cost is not measured): the salt is fixed, as no
    // entropy is needed to count instructions.
    let record = PasswordRecord::new(black_box(b"correct horse"), [7; 16], DEFAULT_ITERATIONS).unwrap();
    let mut verifier = Verifier::new(&record, black_box(b"correct horse")).unwrap();
    measured(0, || verifier.step(black_box(1000)));
    measured(1, || run(Verifier::new(&record, black_box(b"correct horse")).unwrap()));
    let mut verifier = Verifier::new(&record, black_box(b"wrong")).unwrap();
    measured(2, || verifier.step(black_box(ITERATIONS_PER_STEP)));
    measured(3, || run(Verifier::unknown_user(black_box(b"correct horse"), DEFAULT_ITERATIONS)));
    exit()
}

/// Semihosting SYS_EXIT with ADP_Stopped_ApplicationExit.
fn exit() -> ! {
    loop {
        // SAFETY: the semihosting call QEMU's -semihosting serves; r1 points at nothing it reads.
        unsafe { core::arch::asm!("bkpt 0xab", in("r0") 0x18, in("r1") 0x20026) };
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit()
}
