//! Instruction-count marks: where an [`Operation`] begins and ends, told to the QEMU counting
//! plugin (`qemu/plugin/operation_counts.c`), which writes the instructions executed in
//! between to a file the harness reads (`qemu/src/instructions.rs`, `cargo xtask bench`).
//!
//! QEMU 7.2's plugin API sees which code runs, but reads neither registers nor stored values:
//! so a mark is a call into the *mark sled* `homemx_instrument_marks`, a block of one-instruction
//! functions (`bx lr`, 2 bytes each), and the entry's address is the message (entry
//! `operation * 3 + kind`, see `homemx-instrument`). A mark costs a handful of instructions
//! (the sled's address, an add, `blx`, `bx lr`), touches no memory and no register but `lr`,
//! and does the same on every board: it is always compiled in, so the image measured is the
//! product. Marks stay out of hot loops: one per operation.
//!
//! [`begin`] returns a [`Measurement`]; [`Measurement::end`] marks the operation complete.
//! A measurement dropped without `end` (an error path, an early return, a future dropped by a
//! timeout) marks a cancel, so the plugin never keeps a stale begin. [`reached`] marks an
//! operation that is measured from the machine's start ([`Operation::BootToReady`]).
//!
//! What a count includes: every instruction the core executed between the marks, whichever
//! task or interrupt handler ran them (one executor runs every task; idle time is spent in WFI
//! and costs only the timer interrupts). Two operations of the same kind at once (concurrent
//! MX sessions) cannot be told apart: the plugin reports them as overlapped, without a count.
//!
//! Called by: link (TLS handshakes), mx, delivery, backup_mx, dyndns, acme (an issuance,
//! with the TLS handshakes inside it counted apart), console (unlock), network (ready). Calls
//! nothing.
//!
//! Owns: the mark sled (code, no data). Calls: nothing.

pub use homemx_instrument::Operation;
use homemx_instrument::MarkKind;
#[cfg(target_os = "none")]
use homemx_instrument::{sled_entry, ENTRY_BYTES, SLED_ENTRIES};

// The sled: SLED_ENTRIES times `bx lr`, in a section of its own so no other code shares its
// translation blocks. Each entry is a block of its own in QEMU (a branch ends a block).
#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.homemx_instrument_marks,\"ax\",%progbits",
    ".global homemx_instrument_marks",
    ".type homemx_instrument_marks,%function",
    ".thumb_func",
    ".p2align 2",
    "homemx_instrument_marks:",
    ".rept {entries}",
    "bx lr",
    ".endr",
    ".size homemx_instrument_marks, . - homemx_instrument_marks",
    ".text",
    entries = const SLED_ENTRIES,
);

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn homemx_instrument_marks();
}

/// Calls the sled entry of `kind` for `operation`.
#[cfg(target_os = "none")]
#[inline(always)]
fn mark(operation: Operation, kind: MarkKind) {
    // The symbol's address has the Thumb bit set; entries are 2 bytes apart.
    let entry = homemx_instrument_marks as *const () as usize + sled_entry(operation, kind) * ENTRY_BYTES;
    // SAFETY: `entry` is a `bx lr` inside the sled above: it returns at once and changes no
    // register but `lr` (declared clobbered) and no memory.
    unsafe {
        core::arch::asm!("blx {entry}", entry = in(reg) entry, out("lr") _, options(nomem, nostack, preserves_flags));
    }
}

/// On the host (the simulator) there is no QEMU plugin to tell: a mark does nothing.
#[cfg(not(target_os = "none"))]
fn mark(_operation: Operation, _kind: MarkKind) {}

/// An operation under way; [`Measurement::end`] completes it, dropping it cancels it.
#[must_use = "dropping a measurement cancels it at once"]
pub struct Measurement {
    operation: Operation,
}

/// Marks the begin of `operation`.
pub fn begin(operation: Operation) -> Measurement {
    mark(operation, MarkKind::Begin);
    Measurement { operation }
}

impl Measurement {
    /// Marks the operation complete (the plugin records the instructions since its begin).
    pub fn end(self) {
        mark(self.operation, MarkKind::End);
        core::mem::forget(self);
    }
}

impl Drop for Measurement {
    fn drop(&mut self) {
        mark(self.operation, MarkKind::Cancel);
    }
}

/// Marks the end of an operation that is measured from the machine's start (no begin).
pub fn reached(operation: Operation) {
    mark(operation, MarkKind::End);
}
