//! The heap: rustls allocates its handshake state (about 4 KB), the server's certificate chain
//! while it is checked, and one record's plaintext while it is read. Only the TLS layer uses
//! it; everything else in the firmware lives in statics and task futures.
//!
//! Owns the global allocator and its RAM; `init` runs once at boot, before any TLS connection.
//!
//! Owns: the global allocator and its RAM. Calls: nothing.

#[cfg(target_os = "none")]
use core::mem::MaybeUninit;

#[cfg(target_os = "none")]
use embedded_alloc::LlffHeap;

/// Heap bytes the board gives TLS: one connection at a time (the link's buffers are shared),
/// a 16 KB record in rustls plus the copy handed to the session, the handshake and an RSA-4096
/// chain. The NUCLEO-F429ZI's 192 KB of SRAM leaves it less.
pub const HEAP_BYTES: usize = crate::bsp::SIZING.heap_bytes;

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

/// Gives the allocator its RAM. Call once, first thing in `main`.
#[cfg(target_os = "none")]
pub fn init() {
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];
    // SAFETY: called once at boot; the memory is used by the allocator alone from now on.
    unsafe { HEAP.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_BYTES) }
}

/// Bytes allocated now.
#[cfg(target_os = "none")]
pub fn used() -> usize {
    HEAP.used()
}

/// On the host (the simulator) the process's allocator serves the services: nothing to give.
#[cfg(not(target_os = "none"))]
pub fn init() {}

/// On the host the services share the process's allocator with the simulator, which counts
/// nothing per service: always 0.
#[cfg(not(target_os = "none"))]
pub fn used() -> usize {
    0
}
