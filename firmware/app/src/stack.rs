//! The stack's high-water mark: the board paints the stack region at reset (cortex-m-rt
//! `paint-stack`); the deepest word that no longer holds the paint marks how far the stack
//! has ever grown. Together with the static RAM of the image this is the RAM the firmware
//! needs.

use crate::bsp;

const PAINT: u32 = 0xCCCC_CCCC;

/// Bytes of stack used at most since reset; `None` when the board does not paint the stack.
/// Scans the unused part of the stack region: call it rarely (a status request).
pub fn high_water() -> Option<usize> {
    if !bsp::STACK_PAINTED {
        return None;
    }
    extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    // SAFETY: the linker's symbols bound the stack region; reading its words has no effect.
    unsafe {
        let bottom = core::ptr::addr_of!(_stack_end) as usize;
        let top = core::ptr::addr_of!(_stack_start) as usize;
        let mut address = bottom;
        while address < top && core::ptr::read_volatile(address as *const u32) == PAINT {
            address += 4;
        }
        Some(top - address)
    }
}

/// (RAM used at most: static data plus the stack's high-water mark, RAM size) in bytes, from
/// the linker's symbols (RAM runs from `.data` up to the top of the stack).
pub fn ram_use() -> Option<(usize, usize)> {
    let stack = high_water()?;
    extern "C" {
        static __sdata: u32;
        static _stack_end: u32;
        static _stack_start: u32;
    }
    // Only the symbols' addresses are taken.
    let (start, static_end, top) = (
        core::ptr::addr_of!(__sdata) as usize,
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    );
    Some((static_end - start + stack, top - start))
}
