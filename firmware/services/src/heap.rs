//! The heap: rustls allocates its handshake state (about 4 KB), the server's certificate chain
//! while it is checked, and one record's plaintext while it is handed over (decrypted data then
//! waits in the connection's incoming record buffer). The TLS layer uses it (the inbound
//! sessions' record buffers too), and the ACME run its response buffers; everything else in the
//! firmware lives in statics and task futures.
//!
//! Owns the global allocator and its RAM; `init` runs once at boot, before any TLS connection.
//!
//! Owns: the global allocator and its RAM. Calls: nothing.

#[cfg(target_os = "none")]
use core::mem::MaybeUninit;

#[cfg(target_os = "none")]
use embedded_alloc::LlffHeap;

/// Heap bytes the board gives TLS (`homemx_board::heap_for`): the provider connection, the
/// inbound server configuration and what one call allocates and frees (a record's hand-over,
/// a chain's checks), plus each inbound TLS session's record buffers and rustls state.
pub const HEAP_BYTES: usize = crate::bsp::SIZING.heap_bytes;

/// The allocator: embedded-alloc's linked-list heap, and the most it ever had allocated at
/// once (the figure that sizes [`HEAP_BYTES`]).
#[cfg(target_os = "none")]
struct MeasuredHeap {
    heap: LlffHeap,
    high_water: core::sync::atomic::AtomicUsize,
}

#[cfg(target_os = "none")]
#[global_allocator]
static HEAP: MeasuredHeap = MeasuredHeap { heap: LlffHeap::empty(), high_water: core::sync::atomic::AtomicUsize::new(0) };

// SAFETY: every call goes to the linked-list heap unchanged; only a counter is read after it.
#[cfg(target_os = "none")]
unsafe impl core::alloc::GlobalAlloc for MeasuredHeap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let pointer = unsafe { self.heap.alloc(layout) };
        self.high_water.fetch_max(self.heap.used(), core::sync::atomic::Ordering::Relaxed);
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.heap.dealloc(pointer, layout) }
    }
}

/// Gives the allocator its RAM. Call once, first thing in `main`.
#[cfg(target_os = "none")]
pub fn init() {
    static mut HEAP_MEMORY: [MaybeUninit<u8>; HEAP_BYTES] = [MaybeUninit::uninit(); HEAP_BYTES];
    // SAFETY: called once at boot; the memory is used by the allocator alone from now on.
    unsafe { HEAP.heap.init(core::ptr::addr_of_mut!(HEAP_MEMORY) as usize, HEAP_BYTES) }
}

/// Bytes allocated now.
#[cfg(target_os = "none")]
pub fn used() -> usize {
    HEAP.heap.used()
}

/// The most bytes allocated at once since boot.
#[cfg(target_os = "none")]
pub fn high_water() -> usize {
    HEAP.high_water.load(core::sync::atomic::Ordering::Relaxed)
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

/// On the host: always 0, as [`used`].
#[cfg(not(target_os = "none"))]
pub fn high_water() -> usize {
    0
}
