//! The passphrase KDF: PBKDF2-HMAC-SHA256 with a per-device salt, its default cost, and the
//! two keys split from its output (the key-encryption key and the passphrase check).
//!
//! # Cost and the default iteration count
//!
//! The budget is "unlock ≤ 2 s at 168 MHz" (STM32F4-class Cortex-M4). SHA-256 in portable
//! Rust costs about 48 instructions per byte on a Cortex-M4, so one 64-byte compression is
//! ≈ 48 × 64 = 3,072 ≈ **3,100 instructions**. HMAC keeps the inner and outer padded key
//! states, so one PBKDF2 iteration (`U_i = HMAC(P, U_{i-1})`, a 32-byte message) is one inner
//! and one outer compression: **2 compressions ≈ 6,200 instructions**. Aiming at ≈ 1.5 s,
//! leaving a third of the budget for flash wait states and the few instructions per cycle
//! above one:
//!
//! ```text
//! 1.5 s × 168,000,000 instructions/s ÷ 6,200 instructions/iteration ≈ 40,645
//! DEFAULT_ITERATIONS = 40,000 → 40,000 × 6,200 = 248 M instructions ≈ 1.48 s at 168 MHz
//! ```
//!
//! (The estimate is what [`estimated_instructions`] computes; the `keystore_figures` example
//! prints it next to the host time. The fixed cost, HMAC keying, the salt block and the two
//! label HMACs below, is about 10 compressions and does not matter.)
//!
//! The count is stored in each record (so it can grow with later hardware without losing old
//! records) and comes from [`crate::KeystoreConfig`] for new records; host tests use small
//! counts. A record asking for more than [`MAX_ITERATIONS`] is refused as corrupt, so a forged
//! record cannot make the device compute for hours.
//!
//! # Why not Argon2 or scrypt
//!
//! Their advantage over PBKDF2 is memory-hardness, and that needs memory: scrypt's usual
//! parameters (N = 2^15, r = 8) take 32 MiB, RFC 9106's Argon2id recommendations 64 MiB to
//! 2 GiB. The whole part has 192 KB of RAM, most of it promised to SMTP sessions and TLS; the
//! ≈ 64 KB it could lend for a second would fit in a GPU's on-chip memory and buy little
//! hardness, while adding code and a dependency. PBKDF2-HMAC-SHA256 needs a few hundred bytes
//! of stack and reuses the SHA-256 the image already carries (TLS, signatures). The price is
//! that an attacker holding a copy of the flash can test passphrases on GPUs (on the order of
//! 10^5 guesses per second per high-end GPU at 40,000 iterations, an estimate): the owner's
//! passphrase must be strong (e.g. five or more random words).
//!
//! # Key split
//!
//! PBKDF2 produces a 32-byte master; `HMAC-SHA256(master, label)` with two labels gives the
//! key-encryption key and a 16-byte passphrase check stored in the record. The check lets the
//! store tell "wrong passphrase" from "right passphrase, tampered record" (see
//! [`crate::record`]); it gives an offline attacker nothing the wrapped key does not already
//! give (testing a guess costs the same full PBKDF2 run either way). The master and the
//! intermediate HMAC outputs are wiped before returning, then the stack is scrubbed.

use crate::secret::{scrub_stack, KeyEncryptionKey, SecretBytes, KEY_LENGTH};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// Iterations for new records: ≈ 248 M instructions ≈ 1.48 s at 168 MHz (see module doc).
pub const DEFAULT_ITERATIONS: u32 = 40_000;

/// Records asking for more iterations than this (≈ 15 s at 168 MHz) are refused as corrupt.
pub const MAX_ITERATIONS: u32 = 400_000;

/// Length of the per-device random salt.
pub const SALT_LENGTH: usize = 16;

/// Length of the passphrase check stored in the record.
pub const PASSPHRASE_CHECK_LENGTH: usize = 16;

/// Estimated Cortex-M4 instructions per SHA-256 compression (≈ 48 per byte × 64 bytes).
pub const ESTIMATED_INSTRUCTIONS_PER_COMPRESSION: u64 = 3_100;

/// SHA-256 compressions per PBKDF2-HMAC-SHA256 iteration (inner and outer hash).
pub const COMPRESSIONS_PER_ITERATION: u64 = 2;

/// Fixed compressions per derivation: HMAC keying (2), the salt block (2), the label HMACs (6).
pub const FIXED_COMPRESSIONS: u64 = 10;

/// The reference core clock of the budget (STM32F4-class part).
pub const REFERENCE_CORE_CLOCK_HZ: u64 = 168_000_000;

/// Label of the key-encryption key split from the PBKDF2 output.
const KEY_ENCRYPTION_LABEL: &[u8] = b"homemx-keystore v1 key-encryption key";
/// Label of the passphrase check split from the PBKDF2 output.
const PASSPHRASE_CHECK_LABEL: &[u8] = b"homemx-keystore v1 passphrase check";

/// Estimated Cortex-M4 instructions of one key derivation with `iterations` (an estimate
/// from the per-compression figure in the module doc, not a measurement).
pub const fn estimated_instructions(iterations: u32) -> u64 {
    (iterations as u64 * COMPRESSIONS_PER_ITERATION + FIXED_COMPRESSIONS)
        * ESTIMATED_INSTRUCTIONS_PER_COMPRESSION
}

/// Estimated milliseconds of one key derivation at 168 MHz, one instruction per cycle.
pub const fn estimated_milliseconds_at_reference_clock(iterations: u32) -> u64 {
    estimated_instructions(iterations) * 1000 / REFERENCE_CORE_CLOCK_HZ
}

/// Iterations between two yields to the executor: ≈ 200 × 6,200 ≈ 1.2 M instructions, about
/// 7 ms at 168 MHz. One executor runs every task of the firmware; a derivation in one piece
/// (1.5 s) would stop the network, the console and the mail for as long.
pub const ITERATIONS_PER_YIELD: u32 = 200;

/// Runs PBKDF2-HMAC-SHA256 and splits the output (see module doc): the key-encryption key is
/// derived straight into `key_encryption_key` (no copy of it is made), and the passphrase
/// check (stored in the clear in the record, so not a secret) is returned. Costs `iterations`,
/// yielding to the executor every [`ITERATIONS_PER_YIELD`].
pub(crate) async fn derive_keys(
    passphrase: &[u8],
    salt: &[u8; SALT_LENGTH],
    iterations: u32,
    key_encryption_key: &mut KeyEncryptionKey,
) -> [u8; PASSPHRASE_CHECK_LENGTH] {
    let mut master = SecretBytes::<KEY_LENGTH>::zeroed();
    pbkdf2_hmac_sha256(passphrase, salt, iterations, master.expose_mut()).await;
    label_hmac(master.expose(), KEY_ENCRYPTION_LABEL, key_encryption_key.bytes_mut());
    let mut check = SecretBytes::<KEY_LENGTH>::zeroed();
    label_hmac(master.expose(), PASSPHRASE_CHECK_LABEL, check.expose_mut());
    let mut passphrase_check = [0u8; PASSPHRASE_CHECK_LENGTH];
    passphrase_check.copy_from_slice(&check.expose()[..PASSPHRASE_CHECK_LENGTH]);
    drop((master, check));
    scrub_stack();
    passphrase_check
}

/// PBKDF2-HMAC-SHA256 (RFC 8018 5.2) for one 32-byte block, by the firmware's one copy of it
/// (`homemx_credentials::Derivation`, which also checks SMTP `AUTH` passwords), yielding to the
/// executor every [`ITERATIONS_PER_YIELD`] iterations. The derivation's keyed states and `U_i`
/// live in the future across the yields; it wipes them when dropped, here.
async fn pbkdf2_hmac_sha256(passphrase: &[u8], salt: &[u8], iterations: u32, output: &mut [u8; KEY_LENGTH]) {
    let mut derivation = homemx_credentials::Derivation::new(passphrase, salt, iterations);
    while derivation.run(ITERATIONS_PER_YIELD) {
        embassy_futures::yield_now().await;
    }
    output.copy_from_slice(derivation.output());
}

/// `output = HMAC-SHA256(key, label)`; the MAC's output array is wiped after the copy.
fn label_hmac(key: &[u8; KEY_LENGTH], label: &[u8], output: &mut [u8; KEY_LENGTH]) {
    // HMAC accepts keys of any length: this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(label);
    let mut digest = mac.finalize().into_bytes();
    output.copy_from_slice(&digest);
    digest.as_mut_slice().zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::hex;

    /// RFC 7914 §11, first PBKDF2-HMAC-SHA256 vector (c = 1, dkLen = 64).
    #[test]
    fn pbkdf2_rfc7914_vector_one_iteration() {
        let mut output = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut output);
        assert_eq!(
            output.to_vec(),
            hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc\
                 49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
        );
    }

    /// RFC 7914 §11, second vector (c = 80,000: the one slow vector test, twice the default).
    #[test]
    fn pbkdf2_rfc7914_vector_80000_iterations() {
        let mut output = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"Password", b"NaCl", 80_000, &mut output);
        assert_eq!(
            output.to_vec(),
            hex("4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56\
                 a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d")
        );
    }

    /// The whole derivation against an independent implementation (Python's hashlib/hmac):
    /// master = pbkdf2_hmac('sha256', b'correct horse', bytes(range(16)), 1000, 32);
    /// kek = hmac(master, label1); check = hmac(master, label2)[:16].
    #[test]
    fn derive_keys_vector() {
        let salt: [u8; 16] = core::array::from_fn(|index| index as u8);
        let mut key_encryption_key = KeyEncryptionKey::zeroed();
        let passphrase_check =
            homemx_spool::testing::block_on(derive_keys(b"correct horse", &salt, 1000, &mut key_encryption_key));
        assert_eq!(key_encryption_key.bytes().to_vec(), hex(KEK_VECTOR));
        assert_eq!(passphrase_check.to_vec(), hex(CHECK_VECTOR));
    }

    /// The yielding PBKDF2 equals the pbkdf2 crate's, across and between the yields, and
    /// yields every `ITERATIONS_PER_YIELD` iterations.
    #[test]
    fn yielding_pbkdf2_matches_the_reference_and_yields() {
        for iterations in [1, 2, ITERATIONS_PER_YIELD - 1, ITERATIONS_PER_YIELD, ITERATIONS_PER_YIELD + 1, 1000] {
            let mut expected = [0u8; KEY_LENGTH];
            pbkdf2::pbkdf2_hmac::<Sha256>(b"correct horse", b"some salt", iterations, &mut expected);
            let mut output = [0u8; KEY_LENGTH];
            let mut pending = 0;
            {
                let mut future = core::pin::pin!(pbkdf2_hmac_sha256(b"correct horse", b"some salt", iterations, &mut output));
                let mut context = core::task::Context::from_waker(core::task::Waker::noop());
                while core::future::Future::poll(future.as_mut(), &mut context).is_pending() {
                    pending += 1;
                }
            }
            assert_eq!(output, expected, "{iterations} iterations");
            // Between two runs of at most ITERATIONS_PER_YIELD (U_1 comes before them).
            assert_eq!(pending, (iterations.max(1) - 1).div_ceil(ITERATIONS_PER_YIELD).saturating_sub(1), "{iterations} iterations");
        }
    }

    const KEK_VECTOR: &str = "ec2eaf42e97e3d76d554a197c5b676db5f1be0982c622598feb3a70e6496482d";
    const CHECK_VECTOR: &str = "3367e7fc1b5ca4d7c520acbf32793dd4";

    #[test]
    fn estimate_is_within_budget() {
        let milliseconds = estimated_milliseconds_at_reference_clock(DEFAULT_ITERATIONS);
        assert!((1400..=1600).contains(&milliseconds), "{milliseconds} ms");
        assert!(estimated_milliseconds_at_reference_clock(MAX_ITERATIONS) < 20_000);
    }
}
