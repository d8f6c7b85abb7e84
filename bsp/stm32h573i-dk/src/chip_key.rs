//! The chip key of the STM32H573: AES-256 in ECB mode under the SAES's **derived hardware
//! unique key** (DHUK) over a fixed label, so the key store's wrapping key depends on this
//! chip (`homemx_keystore::chip_binding`). The DHUK is loaded into the SAES by the hardware
//! (`KEYSEL = DHUK`): software can use it but never read it, and no other chip has it, so a
//! copy of the flash (the internal one with the key record, or the Octo-SPI NOR with the spool)
//! cannot be opened on another chip, even with the passphrase. **Not run on hardware here**:
//! this module is built in CI (`cargo xtask build --board stm32h573i-dk`), never exercised.
//!
//! ```text
//! derive(label) = AES-256-ECB_DHUK(label[0..16]) | AES-256-ECB_DHUK(label[16..32])   (32 bytes)
//! ```
//!
//! The two label halves differ (the key store's label does), so the two output blocks do too.
//! Each block is written to `SAES_DINR` as four big-endian words, first word first, with
//! `DATATYPE = 00` (no swapping), and read back from `SAES_DOUTR` the same way: the order ST's
//! HAL and embassy-stm32 use. What matters is not that it matches a textbook AES byte order but
//! that it never changes: **any change to this procedure (byte order, key size, chaining mode,
//! key mode, label) changes every device's chip key and makes its spool unreadable for good.**
//!
//! # Why not embassy-stm32's `saes` driver
//!
//! embassy-stm32 0.6 has one (`Saes::start_with_hw_key(HardwareKeySource::DHUK, …)`), but it
//! waits for `KEYVALID` without a bound and without looking at `KEIF`: when the SAES refuses the
//! DHUK (it does after a tamper event, until the next reset) the firmware would hang instead of
//! refusing the unlock. It also sets `KEYPROT` after `KEYSEL`, when `BUSY` makes the write be
//! ignored, and asserts (panics) on an RNG error at start-up. So the registers are driven here
//! through its PAC (stm32-metapac `saes_v1a`), following RM0481's SAES chapter (the sections on
//! SAES initialization, the key registers and key selection, the ECB encryption procedure and
//! the SAES registers; section numbers not checked here):
//!
//! 1. `RCC_AHB2ENR.SAESEN = 1`, then a pulse of `RCC_AHB2RSTR.SAESRST` ([`SaesChipKey::new`]).
//!    The SAES draws random numbers from the RNG (masking against side channels), so the RNG
//!    is started first (the board's `entropy` does, in `init`).
//! 2. Wait for `SAES_SR.BUSY = 0` (the random-number fetch after reset); `SAES_ISR.RNGEIF` set
//!    is an error. Clear the flags through `SAES_ICR`.
//! 3. With `EN = 0`: `SAES_CR` = `KEYSIZE = 1` (256 bits), `CHMOD = 000` (ECB), `MODE = 00`
//!    (encryption), `DATATYPE = 00`, `KMOD = 00` (normal key), `KEYPROT = 0`; wait for `BUSY = 0`
//!    (a new key size may fetch a longer mask).
//! 4. `KEYSEL = 001` (DHUK): the SAES loads the key itself (`BUSY` while it does). Then
//!    `SAES_ISR.KEIF = 1` or `SAES_SR.KEYVALID = 0` is an error.
//! 5. `EN = 1`; for each 16-byte block: four writes to `SAES_DINR`, wait for `SAES_ISR.CCF`,
//!    four reads of `SAES_DOUTR`, clear `CCF` through `SAES_ICR.CCF`; `SAES_ISR.RWEIF` is an
//!    error.
//! 6. Always, success or not: `SAES_CR.IPRST` pulsed, which clears the key registers, the data
//!    path and the configuration. A failed derivation wipes the caller's output.
//!
//! Every wait is bounded ([`POLL_LIMIT`]); running out is an error, never a hang.
//!
//! # What the binding is worth, and when
//!
//! - The DHUK depends on the execution context (privilege level and TrustZone security state;
//!   on the H5 also the HDPL level): the firmware always derives from the same place
//!   (privileged thread mode, TrustZone off), and must keep doing so.
//! - ST documents for the U5 that the DHUK is one value shared by all devices while readout
//!   protection is off (RDP 0: development). The H5's counterpart is its **product state**: in
//!   `Open` the binding must be assumed to be to "any H573", not to this chip. Provision the
//!   product in state `Provisioned` or `Closed` (to check against RM0481 and on the kit).
//! - After a tamper event the SAES refuses the DHUK until the next reset (ST's H5 secure
//!   storage notes): the derivation fails with [`ChipKeyError::Hardware`], the key store refuses
//!   to unlock, and a reset of the device clears it.
//!
//! Owns: the SAES peripheral. Calls: nothing.

use embassy_stm32::pac;
use embassy_stm32::pac::saes::vals::{Chmod, Datatype, Keysel, Keysize, Kmod, Mode};
use embassy_stm32::peripherals::SAES;
use embassy_stm32::Peri;
use homemx_board::{ChipKey, ChipKeyError};
use zeroize::Zeroize;

/// Register polls before a wait counts as failed: the SAES needs tens of cycles for a block
/// and a key load; 100,000 polls are a few milliseconds at 250 MHz.
const POLL_LIMIT: u32 = 100_000;

/// The SAES with the DHUK as this board's chip key.
pub struct SaesChipKey {
    _peripheral: Peri<'static, SAES>,
}

impl SaesChipKey {
    /// Clocks and resets the SAES (step 1 of the module documentation). Start the RNG first.
    pub fn new(peripheral: Peri<'static, SAES>) -> Self {
        pac::RCC.ahb2enr().modify(|register| register.set_saesen(true));
        // Read back: the clock is running before the first access to the SAES.
        let _ = pac::RCC.ahb2enr().read();
        pac::RCC.ahb2rstr().modify(|register| register.set_saesrst(true));
        pac::RCC.ahb2rstr().modify(|register| register.set_saesrst(false));
        SaesChipKey { _peripheral: peripheral }
    }
}

impl ChipKey for SaesChipKey {
    fn is_available(&self) -> bool {
        true
    }

    fn derive(&mut self, label: &[u8; 32], output: &mut [u8; 32]) -> Result<(), ChipKeyError> {
        let result = encrypt_with_dhuk(label, output);
        // Step 6: whatever happened, nothing of the key or the data stays in the SAES.
        let saes = pac::SAES;
        saes.cr().modify(|register| register.set_iprst(true));
        saes.cr().modify(|register| register.set_iprst(false));
        if result.is_err() {
            output.zeroize();
            defmt::warn!("chip key: the SAES refused to derive with the DHUK");
        }
        result
    }
}

/// Steps 2 to 5 of the module documentation.
fn encrypt_with_dhuk(label: &[u8; 32], output: &mut [u8; 32]) -> Result<(), ChipKeyError> {
    let saes = pac::SAES;
    saes.cr().modify(|register| register.set_en(false));
    wait_until(|| !saes.sr().read().busy())?;
    if saes.isr().read().rngeif() {
        return Err(ChipKeyError::Hardware);
    }
    clear_flags();
    saes.cr().write(|register| {
        register.set_keysize(Keysize::BITS256);
        register.set_chmod(Chmod::ECB);
        register.set_mode(Mode::ENCRYPTION);
        register.set_datatype(Datatype::NONE);
        register.set_kmod(Kmod::NORMAL);
        register.set_keyprot(false);
    });
    wait_until(|| !saes.sr().read().busy())?;
    saes.cr().modify(|register| register.set_keysel(Keysel::DHUK));
    wait_until(|| !saes.sr().read().busy())?;
    if saes.isr().read().keif() || !saes.sr().read().keyvalid() {
        return Err(ChipKeyError::Hardware);
    }
    saes.cr().modify(|register| register.set_en(true));
    wait_until(|| !saes.sr().read().busy())?;
    for (input, output) in label.chunks_exact(16).zip(output.chunks_exact_mut(16)) {
        for word in input.chunks_exact(4) {
            saes.dinr().write_value(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
        }
        wait_until(|| saes.isr().read().ccf())?;
        if saes.isr().read().rweif() {
            return Err(ChipKeyError::Hardware);
        }
        for word in output.chunks_exact_mut(4) {
            word.copy_from_slice(&saes.doutr().read().to_be_bytes());
        }
        saes.icr().write(|register| register.set_ccf(true));
    }
    saes.cr().modify(|register| register.set_en(false));
    Ok(())
}

/// Clears the computation, read/write and key error flags of `SAES_ISR` (through `SAES_ICR`;
/// not `RNGEIF`, whose clearing starts a new random-number fetch, and which was checked).
fn clear_flags() {
    pac::SAES.icr().write(|register| {
        register.set_ccf(true);
        register.set_rweif(true);
        register.set_keif(true);
    });
}

/// Polls `done` up to [`POLL_LIMIT`] times.
fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), ChipKeyError> {
    for _ in 0..POLL_LIMIT {
        if done() {
            return Ok(());
        }
    }
    Err(ChipKeyError::Hardware)
}
