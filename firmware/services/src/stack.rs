//! The stack's high-water mark: the board paints the stack region at reset (cortex-m-rt
//! `paint-stack`); the deepest word that no longer holds the paint marks how far the stack
//! has ever grown. Together with the static RAM of the image this is the RAM the firmware
//! needs.
//!
//! [`OwnFrame`] keeps a big job's poll out of its caller's stack frame; [`MadeInFrame`] keeps
//! its making out too.
//!
//! Owns: the wipe task (the stack region itself is the board's). Calls: `channels`.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

#[cfg(target_os = "none")]
use crate::bsp;

/// A future polled in a stack frame of its own: LLVM inlines an awaited async fn's poll into
/// its caller's and gives every inlined callee's locals their own room in that one frame, so
/// a task that runs several big jobs one after the other has a poll frame as large as all of
/// them together, under every path below it. Awaited through this, each job's locals take
/// stack only while that job is polled.
pub struct OwnFrame<F>(F);

/// `future`, polled in a frame of its own ([`OwnFrame`]).
pub fn own_frame<F: Future>(future: F) -> OwnFrame<F> {
    OwnFrame(future)
}

impl<F: Future> Future for OwnFrame<F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning: the inner future is never moved out of `self`.
        unsafe { self.map_unchecked_mut(|own| &mut own.0) }.poll(context)
    }
}

/// A future made on its first poll, in place, and polled in a frame of its own
/// ([`OwnFrame`]): an async fn's future made before it is awaited is put together in a
/// temporary of the caller's poll frame (for some layouts two, each the size of its arguments'
/// part of the future: 1.4 KB for an ACME exchange) and copied in, and those temporaries take
/// stack under every await below. Made here, in [`MadeInFrame::make`]'s own frame, they are
/// gone before the future is first polled.
pub struct MadeInFrame<M, F>(Stage<M, F>);

enum Stage<M, F> {
    /// Not polled yet: what makes the future.
    Maker(M),
    /// Made, and pinned from now on.
    Running(F),
    /// Only while the future is being made (a maker that panicked leaves it so).
    Making,
}

/// The future `make` returns, made on the first poll and polled in a frame of its own
/// ([`MadeInFrame`]).
pub fn own_frame_made<M: FnOnce() -> F, F: Future>(make: M) -> MadeInFrame<M, F> {
    MadeInFrame(Stage::Maker(make))
}

impl<M: FnOnce() -> F, F: Future> MadeInFrame<M, F> {
    /// Replaces the maker (`stage` holds one) by its future, in place; never inlined, so that
    /// the making's temporaries are off the stack before the future is polled.
    #[inline(never)]
    fn make(stage: &mut Stage<M, F>) {
        if let Stage::Maker(make) = core::mem::replace(stage, Stage::Making) {
            *stage = Stage::Running(make());
        }
    }
}

impl<M: FnOnce() -> F, F: Future> Future for MadeInFrame<M, F> {
    type Output = F::Output;

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future is pinned from the moment it is made (`Running`) and never moved
        // out of `self` after; only the maker, which is not pinned, is moved out before.
        let stage = unsafe { &mut self.get_unchecked_mut().0 };
        if matches!(stage, Stage::Maker(_)) {
            Self::make(stage);
        }
        match stage {
            // SAFETY: as above: `self` is pinned, so is the future in it.
            Stage::Running(future) => unsafe { Pin::new_unchecked(future) }.poll(context),
            _ => panic!("MadeInFrame polled after its maker panicked"),
        }
    }
}

#[cfg(target_os = "none")]
const PAINT: u32 = 0xCCCC_CCCC;

/// Bytes of the stack region scanned between two yields to the executor (the QEMU board's
/// stack region is megabytes: scanned in one piece it kept every task waiting 30–40 ms).
#[cfg(target_os = "none")]
const SCAN_BYTES_PER_YIELD: usize = 64 * 1024;

/// Bytes of stack used at most since reset; `None` when the board does not paint the stack.
/// Scans the unused part of the stack region, yielding every [`SCAN_BYTES_PER_YIELD`]: call
/// it rarely (a status request).
#[cfg(target_os = "none")]
pub async fn high_water() -> Option<usize> {
    if !bsp::STACK_PAINTED {
        return None;
    }
    extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let mut address = bottom;
    loop {
        let stop = top.min(address + SCAN_BYTES_PER_YIELD);
        // SAFETY: the linker's symbols bound the stack region; reading its words has no effect.
        while address < stop && unsafe { core::ptr::read_volatile(address as *const u32) } == PAINT {
            address += 4;
        }
        if address < stop || address >= top {
            return Some(top - address);
        }
        embassy_futures::yield_now().await;
    }
}

/// The host's (the simulator's) stack is not the device's and has no paint.
#[cfg(not(target_os = "none"))]
pub async fn high_water() -> Option<usize> {
    None
}

/// (RAM used at most: static data plus the stack's high-water mark, RAM size) in bytes, from
/// the linker's symbols (static data from `.data` to the end of `.uninit`; the stack region
/// inside RAM or, on boards that put it elsewhere such as the STM32's CCM, beside it).
#[cfg(target_os = "none")]
pub async fn ram_use() -> Option<(usize, usize)> {
    let stack = high_water().await?;
    extern "C" {
        static __sdata: u32;
        static __euninit: u32;
        static _ram_start: u32;
        static _ram_end: u32;
        static _stack_end: u32;
        static _stack_start: u32;
    }
    // Only the symbols' addresses are taken.
    let address = |symbol: *const u32| symbol as usize;
    let static_bytes = address(core::ptr::addr_of!(__euninit)) - address(core::ptr::addr_of!(__sdata));
    let (ram_start, ram_end) = (address(core::ptr::addr_of!(_ram_start)), address(core::ptr::addr_of!(_ram_end)));
    let (stack_end, stack_start) = (address(core::ptr::addr_of!(_stack_end)), address(core::ptr::addr_of!(_stack_start)));
    let stack_inside_ram = stack_end >= ram_start && stack_start <= ram_end;
    let size = (ram_end - ram_start) + if stack_inside_ram { 0 } else { stack_start - stack_end };
    Some((static_bytes + stack, size))
}

/// The host (the simulator) has no linker symbols for the device's RAM.
#[cfg(not(target_os = "none"))]
pub async fn ram_use() -> Option<(usize, usize)> {
    None
}

/// Bytes left alone below this function's own local: its frame and the critical section's.
#[cfg(target_os = "none")]
const WIPE_MARGIN: usize = 512;

/// Zeroes what deeper calls left on the stack below the caller (moved copies of the stores
/// and their keys, key schedules, frames with passwords): from the deepest word ever used
/// (words still holding the paint were never written, and stay painted, so the high-water
/// mark is unchanged) up to just below this function's frame. Interrupts are masked
/// meanwhile: they push their frames onto this stack.
/// The host (the simulator) keeps no secrets of a real device: nothing is wiped there.
#[cfg(target_os = "none")]
#[inline(never)]
pub fn wipe_below() {
    extern "C" {
        static _stack_end: u32;
    }
    let marker = 0u32;
    let current = core::hint::black_box(&marker) as *const u32 as usize;
    let limit = (current - WIPE_MARGIN) & !3;
    critical_section::with(|_| {
        // SAFETY: `_stack_end..limit` is the part of the stack region below every live frame
        // (ours included, with a margin), and no interrupt can push a frame there meanwhile.
        unsafe {
            let mut address = core::ptr::addr_of!(_stack_end) as usize;
            if bsp::STACK_PAINTED {
                while address < limit && core::ptr::read_volatile(address as *const u32) == PAINT {
                    address += 4;
                }
            }
            while address < limit {
                core::ptr::write_volatile(address as *mut u32, 0);
                address += 4;
            }
        }
    });
}

/// See the device's version: the host's stack is the simulator's, not the device's.
#[cfg(not(target_os = "none"))]
pub fn wipe_below() {}

/// Wipes the dead stack from a shallow frame and returns once done: [`wipe_task`] runs while
/// no other task is being polled, so everything below the executor's own frame is dead, the
/// calling task's poll frame included (an async function's frame holds the temporaries of
/// every synchronous call inlined into it: key schedules, decrypted blocks). Call it before
/// building anything whose unused bytes are copied along (heapless strings) and at `lock`.
pub async fn wipe_dead_frames() {
    crate::channels::WIPE_DONE.reset();
    crate::channels::WIPE_REQUEST.signal(());
    crate::channels::WIPE_DONE.wait().await;
}

/// Runs [`wipe_below`] for [`wipe_dead_frames`]; its own future and frame are tiny.
#[embassy_executor::task]
pub async fn wipe_task() -> ! {
    loop {
        crate::channels::WIPE_REQUEST.wait().await;
        wipe_below();
        crate::channels::WIPE_DONE.signal(());
    }
}

#[cfg(test)]
mod tests {
    use core::cell::Cell;

    use super::own_frame_made;

    #[test]
    fn a_made_future_is_made_at_its_first_poll_and_runs_to_its_output() {
        let made = Cell::new(false);
        let future = own_frame_made(|| {
            made.set(true);
            async {
                embassy_futures::yield_now().await;
                41 + 1
            }
        });
        assert!(!made.get(), "nothing is made before the first poll");
        assert_eq!(embassy_futures::block_on(future), 42);
        assert!(made.get());
    }
}
