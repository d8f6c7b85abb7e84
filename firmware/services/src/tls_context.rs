//! What every TLS connection of the appliance shares: the rustls crypto provider (built once),
//! its random source, and the wall clock that certificate dates are checked against.
//!
//! Owns the TLS random stream; the link (crate::link) re-keys it from a fresh derived stream
//! before each handshake and is its only caller.
//!
//! Owns: the TLS random stream and the crypto provider. Calls: `random`, `wall_clock`.

use alloc::sync::Arc;
use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use rustls::crypto::{CryptoProvider, GetRandomFailed, SecureRandom};

use crate::random::DerivedRandom;

/// The random source rustls draws from (client randoms, key shares): a ChaCha20 stream keyed
/// from the board's entropy; empty until the first handshake keys it.
#[derive(Debug)]
struct TlsRandom;

static STREAM: Mutex<CriticalSectionRawMutex, RefCell<Option<DerivedRandom>>> = Mutex::new(RefCell::new(None));
static PROVIDER: Mutex<CriticalSectionRawMutex, RefCell<Option<Arc<CryptoProvider>>>> = Mutex::new(RefCell::new(None));

impl SecureRandom for TlsRandom {
    fn fill(&self, destination: &mut [u8]) -> Result<(), GetRandomFailed> {
        STREAM.lock(|stream| match stream.borrow_mut().as_mut() {
            Some(stream) => {
                stream.fill_bytes(destination);
                Ok(())
            }
            None => Err(GetRandomFailed),
        })
    }
}

/// The appliance's wall clock (SNTP) as homemx-tls asks for it.
#[derive(Debug)]
struct TlsWallClock;

impl homemx_tls::WallClock for TlsWallClock {
    fn unix_seconds(&self) -> Option<u64> {
        crate::wall_clock::unix_seconds()
    }
}

/// Keys the TLS random stream from `random` and returns the provider and clock for a
/// handshake.
pub fn prepare(random: DerivedRandom) -> (Arc<CryptoProvider>, &'static dyn homemx_tls::WallClock) {
    STREAM.lock(|stream| *stream.borrow_mut() = Some(random));
    let provider = PROVIDER.lock(|cell| cell.borrow_mut().get_or_insert_with(|| homemx_tls::crypto::provider(&TlsRandom)).clone());
    (provider, &TlsWallClock)
}
