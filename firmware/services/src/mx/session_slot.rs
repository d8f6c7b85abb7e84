//! Static slots that a session in progress runs in: the future that serves one client (its
//! SMTP session, policy, TLS stream, the awaits of spool and AUTH: about 4.3 KB on the H5) is
//! placed in a slot taken with the session's permit rather than in every listener's task.
//! Only as many sessions as the pools admit run at once, while every listener task would
//! otherwise reserve a whole session for its life; the listener keeps only its accept loop.
//!
//! One owner per slot (Embassy/Hubris style): [`Slots::take`] hands out a [`Lease`] that
//! wins the slot's flag, [`Lease::run`] builds the future in the slot and gives an [`InSlot`] that polls
//! it there; the future is dropped in place when it finishes or when the `InSlot` is dropped,
//! and the slot is free again when the lease is dropped. A slot whose future was never dropped
//! (its `InSlot` leaked) stays taken for good, so pinned memory is never reused under a live
//! future.
//!
//! A [`SharedSlot`] is one such slot that sessions take in turn, waiting for it, for an await
//! much larger than their others that runs one at a time anyway.
//!
//! Owns: the slots' memory, flags and turns (the statics are the caller's). Calls: nothing.

use core::cell::UnsafeCell;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::{align_of, size_of, MaybeUninit};
use core::pin::Pin;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll};

/// Alignment of a slot's memory (the largest a session's future has: 32, TLS buffers).
pub const SLOT_ALIGN: usize = 32;

#[repr(C, align(32))]
struct Memory<const SIZE: usize>([MaybeUninit<u8>; SIZE]);

/// `COUNT` slots, each room for one future of at most `SIZE` bytes. (The flags are kept apart
/// from the memory: beside each slot's 32-aligned memory a flag cost 32 bytes.)
pub struct Slots<const SIZE: usize, const COUNT: usize> {
    taken: [AtomicBool; COUNT],
    memory: [UnsafeCell<Memory<SIZE>>; COUNT],
}

// SAFETY: a slot's memory is reached only through the one `Lease` that won its `taken` flag
// (compare-exchange), until that lease is dropped.
unsafe impl<const SIZE: usize, const COUNT: usize> Sync for Slots<SIZE, COUNT> {}

impl<const SIZE: usize, const COUNT: usize> Slots<SIZE, COUNT> {
    /// All free.
    pub const fn new() -> Self {
        Slots {
            taken: [const { AtomicBool::new(false) }; COUNT],
            memory: [const { UnsafeCell::new(Memory([MaybeUninit::uninit(); SIZE])) }; COUNT],
        }
    }

    /// A free slot, now owned by the returned lease; `None` when all are taken.
    pub fn take(&'static self) -> Option<Lease<SIZE>> {
        let index = self.taken.iter().position(|taken| taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok())?;
        Some(Lease { taken: &self.taken[index], memory: &self.memory[index], occupied: false })
    }
}

/// A slot taken from its [`Slots`]; given back when dropped (unless a future still lives in it).
pub struct Lease<const SIZE: usize> {
    taken: &'static AtomicBool,
    memory: &'static UnsafeCell<Memory<SIZE>>,
    /// A future was built in the slot and not yet dropped.
    occupied: bool,
}

impl<const SIZE: usize> Lease<SIZE> {
    /// Builds `make`'s future in the slot and returns it to be awaited there. Fails to compile
    /// when the future does not fit the slot.
    pub fn run<F: Future>(&mut self, make: impl FnOnce() -> F) -> InSlot<'_, F, SIZE> {
        const { assert!(size_of::<F>() <= SIZE && align_of::<F>() <= SLOT_ALIGN, "the future does not fit the slot") };
        // A future whose `InSlot` was leaked still lives here: it may not be overwritten.
        assert!(!self.occupied, "a session slot still holds a future");
        let place = self.memory.get().cast::<F>();
        place_future(place, make);
        self.occupied = true;
        // SAFETY: `place` is the slot's memory, not null.
        let future = unsafe { NonNull::new_unchecked(place) };
        InSlot { future: Some(future), lease: self, _future: PhantomData }
    }
}

/// Writes `make`'s future at `place`, in a frame of its own: if the future is built on the
/// stack before it is moved (5 KB), that copy is gone before the future is polled, instead of
/// sitting in the caller's poll frame under every await below it.
#[inline(never)]
fn place_future<F>(place: *mut F, make: impl FnOnce() -> F) {
    // SAFETY: the caller's lease owns the slot and it holds no live future (`occupied` false
    // or the last one dropped); size and alignment were checked.
    unsafe { place.write(make()) };
}

impl<const SIZE: usize> Drop for Lease<SIZE> {
    fn drop(&mut self) {
        if !self.occupied {
            self.taken.store(false, Ordering::Release);
        }
    }
}

/// A future running in a slot (see [`Lease::run`]); dropped in place when it finishes or when
/// this is dropped.
pub struct InSlot<'l, F, const SIZE: usize> {
    /// `None` once the future finished and was dropped.
    future: Option<NonNull<F>>,
    lease: &'l mut Lease<SIZE>,
    _future: PhantomData<F>,
}

// `InSlot` holds only a pointer to the future (which stays pinned in the slot): moving it
// moves nothing pinned.
impl<F, const SIZE: usize> Unpin for InSlot<'_, F, SIZE> {}

impl<F, const SIZE: usize> InSlot<'_, F, SIZE> {
    fn drop_future(&mut self) {
        if let Some(future) = self.future.take() {
            // SAFETY: the future was written by `Lease::run` and is dropped once, in place.
            unsafe { core::ptr::drop_in_place(future.as_ptr()) };
            self.lease.occupied = false;
        }
    }
}

impl<F: Future, const SIZE: usize> Future for InSlot<'_, F, SIZE> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let Some(future) = this.future else {
            panic!("InSlot polled after it finished");
        };
        // SAFETY: the future lives in the leased slot, which is neither moved nor reused
        // until the future is dropped (`occupied`).
        let output = unsafe { Pin::new_unchecked(&mut *future.as_ptr()) }.poll(context);
        if output.is_ready() {
            this.drop_future();
        }
        output
    }
}

impl<F, const SIZE: usize> Drop for InSlot<'_, F, SIZE> {
    fn drop(&mut self) {
        self.drop_future();
    }
}

/// A slot that sessions take in turn ([`SharedSlot::run`] waits for it): for an await of a
/// session whose future is much larger than the rest of the session's awaits but that runs
/// one at a time anyway (it holds the store's lock), so that it is held once, not in every
/// session slot.
pub struct SharedSlot<const SIZE: usize> {
    /// Held by the session whose future is in the slot.
    turn: embassy_sync::mutex::Mutex<embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex, ()>,
    slot: Slots<SIZE, 1>,
}

impl<const SIZE: usize> SharedSlot<SIZE> {
    /// Free.
    pub const fn new() -> Self {
        SharedSlot { turn: embassy_sync::mutex::Mutex::new(()), slot: Slots::new() }
    }

    /// Waits for the slot, then runs `make`'s future there (see [`Lease::run`]); `None` when
    /// the slot is lost for good (a future of an earlier turn was leaked in it, which this
    /// function never does: its turn is given back only after its future was dropped).
    pub async fn run<F: Future>(&'static self, make: impl FnOnce() -> F) -> Option<F::Output> {
        let _turn = self.turn.lock().await;
        let mut lease = self.slot.take()?;
        let output = lease.run(make).await;
        Some(output)
    }
}

/// Functions whose result type can be named by a constant (the way embassy-executor sizes its
/// task pools): the future of an `async fn` of no, one or four arguments.
pub trait SessionFn<Args>: Copy {
    /// What the function returns.
    type Output;
}

impl<F, R> SessionFn<()> for F
where
    F: Copy + FnOnce() -> R,
{
    type Output = R;
}

impl<F, A, R> SessionFn<(A,)> for F
where
    F: Copy + FnOnce(A) -> R,
{
    type Output = R;
}

impl<F, A, B, C, D, R> SessionFn<(A, B, C, D)> for F
where
    F: Copy + FnOnce(A, B, C, D) -> R,
{
    type Output = R;
}

/// Bytes of what `function` returns (for an `async fn`, its future): the size of a slot.
pub const fn output_size<F: SessionFn<Args>, Args>(_function: F) -> usize {
    size_of::<F::Output>()
}
