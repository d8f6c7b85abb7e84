//! Mail users' password records: what the owner's CLI makes from a password, what the device
//! stores (inside its encrypted configuration) and checks an SMTP `AUTH` against; and the
//! firmware's one PBKDF2-HMAC-SHA256 ([`Derivation`]), which the key store's unlock runs too.
//!
//! A [`PasswordRecord`] is versioned: an algorithm id ([`ALGORITHM_PBKDF2_HMAC_SHA256`], the
//! only one), the iteration count, a 16-byte random salt and the 32-byte PBKDF2 output (the
//! first block, RFC 8018 §5.2). [`PasswordRecord::new`] makes one (the caller brings a fresh
//! random salt: this crate has no entropy source); [`Verifier`] checks a password against one
//! in steps of a few hundred iterations, so the device's single executor can run other tasks
//! between them; [`Verifier::unknown_user`] does the same work for a name that has no record.
//!
//! # Algorithm: PBKDF2-HMAC-SHA256
//!
//! The device checks passwords on a Cortex-M4/M33 with no SHA hardware on the executor's path
//! and a few hundred KB of RAM promised to mail sessions and TLS. Memory-hard functions
//! (scrypt, Argon2) only pay off with megabytes per guess, which the device cannot lend to
//! every `AUTH`; PBKDF2-HMAC-SHA256 needs a few hundred bytes of state and the SHA-256 the
//! image already carries (TLS, the key store). Its price is that an attacker with the records
//! can guess on GPUs; the records never leave the device's encrypted store (the console answers
//! `config get` without salt and hash), so that attacker must first break the store.
//!
//! HMAC is built here on `sha2::compress256`: the inner and outer key states are two `[u32; 8]`
//! computed once per check, and each iteration (`U_i = HMAC(P, U_{i-1})`, a 32-byte message)
//! is exactly **two compressions**. Every state derived from the password is a plain array,
//! wiped when a [`Verifier`] is dropped, with no `unsafe` (the `hmac` crate's state cannot be
//! wiped without it).
//!
//! # Cost and the default iteration count
//!
//! Measured with the repository's instruction-count plugin on QEMU's Cortex-M4 (mps2-an386),
//! this crate built as the firmware is (opt-level "s", fat LTO), by `cost/run.sh`
//! (`cost/src/main.rs` calls the plugin's marks around each piece):
//!
//! ```text
//! one PBKDF2 iteration (2 compressions)             6,910 instructions (1,000 counted)
//! one verification, DEFAULT_ITERATIONS = 10,000    69.1 M instructions ≈ 0.28 s at 250 MHz
//! one step of ITERATIONS_PER_STEP = 250             1.73 M instructions ≈ 6.9 ms
//! an unknown user (the dummy), 10,000              69.1 M instructions (404 fewer: 0.0006 %)
//! MAX_ITERATIONS = 50,000                         ≈ 345 M instructions ≈ 1.4 s (a hostile record's worst)
//! MIN_ITERATIONS =  5,000                         ≈  35 M instructions ≈ 0.14 s
//! ```
//!
//! (The time is one instruction per cycle at the real board's 250 MHz; flash wait states on
//! the Cortex-M33 add to it, which is why the default sits in the lower half of the wanted
//! 0.2–0.5 s.) The compression costs ≈ 3,450 instructions, near the platform notes' anchor
//! (SHA-256 ≈ 48 instructions per byte: 3,072). A first version that buffered each iteration's
//! message byte by byte through a general SHA-256 cost 11,990 per iteration: the iteration now
//! writes each result straight into a kept, padded block (see `Derivation`).
//!
//! So one verification is slow for an offline attacker (an estimate from published GPU figures
//! for PBKDF2-HMAC-SHA256: on the order of 10^6 guesses per second per high-end GPU at 10,000
//! iterations, 10^4 times fewer than with one SHA-256 per guess), bounded on the device, and
//! online guessing is limited by the SMTP layer's delays anyway. Each `AUTH` attempt costs the
//! device that much CPU: the caller must rate-limit attempts per address.
//!
//! # Chunked verification
//!
//! [`Verifier::step`] runs at most the iterations it is given; [`ITERATIONS_PER_STEP`] (250,
//! 1.73 M instructions ≈ 6.9 ms at 250 MHz) keeps each poll of the device's executor short:
//!
//! ```ignore
//! let mut verifier = Verifier::new(&record, password)?;        // or Verifier::unknown_user(…)
//! let accepted = loop {
//!     match verifier.step(ITERATIONS_PER_STEP) {
//!         Progress::Pending => embassy_futures::yield_now().await,
//!         Progress::Done(verdict) => break verdict == Verdict::Accepted,
//!     }
//! };
//! ```
//!
//! # Unknown users
//!
//! The time of an `AUTH` must not tell whether the name exists. For a name with no record the
//! caller runs [`Verifier::unknown_user`] with the password given and the iteration count of
//! [`dummy_iterations`] over the configured records (the same count the real ones cost: all
//! records the CLI makes use [`DEFAULT_ITERATIONS`]), steps it exactly as a real check, and
//! answers exactly as for a wrong password. Its verdict is always [`Verdict::Refused`], even
//! for a password that happened to match the dummy salt and hash. Looking the name up among at
//! most 16 records costs nothing next to the 0.28 s of the check (measured: the dummy's whole
//! run differs from a real one by 404 of 69.1 M instructions).
//!
//! The final comparison is constant-time (`subtle`). No allocator, no I/O, no `unsafe`.
//! Calls: nothing (`sha2`, `subtle`, `zeroize`, `serde`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

use serde::{Deserialize, Serialize};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The algorithm id of PBKDF2-HMAC-SHA256 with a 16-byte salt and a 32-byte output.
pub const ALGORITHM_PBKDF2_HMAC_SHA256: u8 = 1;
/// Bytes of a record's salt.
pub const SALT_LENGTH: usize = 16;
/// Bytes of a record's hash (one PBKDF2-HMAC-SHA256 block).
pub const HASH_LENGTH: usize = 32;
/// Iterations of new records: 69 M instructions, ≈ 0.28 s per verification at 250 MHz (measured,
/// see the crate docs).
pub const DEFAULT_ITERATIONS: u32 = 10_000;
/// Fewest iterations a record may ask for: a cheaper record would make offline guessing cheap.
pub const MIN_ITERATIONS: u32 = 5_000;
/// Most iterations a record may ask for (≈ 1.4 s per verification at 250 MHz), so a hostile
/// configuration cannot make the device compute for minutes per `AUTH`.
pub const MAX_ITERATIONS: u32 = 50_000;
/// Iterations per [`Verifier::step`] on the device: 1.73 M instructions ≈ 6.9 ms at 250 MHz
/// (measured), well inside the executor's 50 ms poll target.
pub const ITERATIONS_PER_STEP: u32 = 250;

/// A salted, slow password hash, as the configuration carries it. `Debug` shows the algorithm
/// and the iteration count only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordRecord {
    /// Which algorithm made it ([`ALGORITHM_PBKDF2_HMAC_SHA256`]); a record with another id is
    /// refused by [`PasswordRecord::check`], not guessed at.
    pub algorithm: u8,
    /// PBKDF2 iterations, [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    pub iterations: u32,
    /// Random salt, fresh for every record.
    pub salt: [u8; SALT_LENGTH],
    /// PBKDF2-HMAC-SHA256(password, salt, iterations), 32 bytes.
    pub hash: [u8; HASH_LENGTH],
}

impl fmt::Debug for PasswordRecord {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PasswordRecord")
            .field("algorithm", &self.algorithm)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a record (or the parameters of a new one) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordProblem {
    /// The algorithm id is not one this firmware knows.
    UnknownAlgorithm,
    /// The iteration count is outside [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`].
    IterationsOutOfRange,
}

impl RecordProblem {
    /// The rule in words (for the configuration's refusals).
    pub const fn rule(self) -> &'static str {
        match self {
            RecordProblem::UnknownAlgorithm => "unknown password hash algorithm (only 1, PBKDF2-HMAC-SHA256, is known)",
            RecordProblem::IterationsOutOfRange => {
                "password hash iterations must be 5000..=50000 (cheaper is guessable, dearer stalls the device at every AUTH)"
            }
        }
    }
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.rule())
    }
}

/// The iteration count rule alone.
pub const fn check_iterations(iterations: u32) -> Result<(), RecordProblem> {
    if iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS {
        Err(RecordProblem::IterationsOutOfRange)
    } else {
        Ok(())
    }
}

impl PasswordRecord {
    /// Hashes `password` with `salt` (fresh random bytes, from the caller's entropy source) and
    /// `iterations` in one go. For the CLI; the device checks with a [`Verifier`].
    pub fn new(password: &[u8], salt: [u8; SALT_LENGTH], iterations: u32) -> Result<Self, RecordProblem> {
        check_iterations(iterations)?;
        let mut derivation = Derivation::new(password, &salt, iterations);
        while derivation.run(u32::MAX) {}
        Ok(Self { algorithm: ALGORITHM_PBKDF2_HMAC_SHA256, iterations, salt, hash: derivation.output })
    }

    /// The rules every record meets: a known algorithm, the iteration count in range.
    pub const fn check(&self) -> Result<(), RecordProblem> {
        if self.algorithm != ALGORITHM_PBKDF2_HMAC_SHA256 {
            return Err(RecordProblem::UnknownAlgorithm);
        }
        check_iterations(self.iterations)
    }

    /// Verifies `password` in one go (host side and tests; the device steps a [`Verifier`]).
    pub fn verify(&self, password: &[u8]) -> Result<Verdict, RecordProblem> {
        let mut verifier = Verifier::new(self, password)?;
        loop {
            if let Progress::Done(verdict) = verifier.step(u32::MAX) {
                return Ok(verdict);
            }
        }
    }

    /// The same record with salt and hash zeroed: what the device shows when the configuration
    /// is read back (the count and the algorithm stay; the guessable part does not leave).
    pub fn redacted(&self) -> Self {
        Self { algorithm: self.algorithm, iterations: self.iterations, salt: [0; SALT_LENGTH], hash: [0; HASH_LENGTH] }
    }
}

/// The iteration count for [`Verifier::unknown_user`]: the largest of the configured records'
/// (so an unknown name never answers sooner than a known one), [`DEFAULT_ITERATIONS`] when
/// there is none. Records that break [`PasswordRecord::check`] are skipped.
pub fn dummy_iterations<'a>(records: impl IntoIterator<Item = &'a PasswordRecord>) -> u32 {
    records.into_iter().filter(|record| record.check().is_ok()).map(|record| record.iterations).max().unwrap_or(DEFAULT_ITERATIONS)
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The password matches the record.
    Accepted,
    /// It does not, or the user is unknown.
    Refused,
}

/// Where a [`Verifier`] stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Iterations remain: call [`Verifier::step`] again (after yielding).
    Pending,
    /// Finished; further steps return the same verdict and do no work.
    Done(Verdict),
}

/// Salt of the dummy record of [`Verifier::unknown_user`] (any fixed value serves: its verdict
/// is refused whatever the output).
const DUMMY_SALT: [u8; SALT_LENGTH] = *b"homemx no user..";

/// A password check in steps (see the crate documentation). Holds the password's HMAC key
/// states and the running PBKDF2 block, all wiped on drop; never the password itself.
pub struct Verifier {
    derivation: Derivation,
    expected: [u8; HASH_LENGTH],
    /// False for [`Verifier::unknown_user`]: the verdict is refused whatever the comparison.
    known: bool,
}

impl Verifier {
    /// Starts checking `password` against `record` (2–3 compressions now, the iterations in
    /// [`Verifier::step`]). A record that breaks [`PasswordRecord::check`] is refused before any
    /// work.
    pub fn new(record: &PasswordRecord, password: &[u8]) -> Result<Self, RecordProblem> {
        record.check()?;
        Ok(Self { derivation: Derivation::new(password, &record.salt, record.iterations), expected: record.hash, known: true })
    }

    /// Starts the same work for a name that has no record, with `iterations` from
    /// [`dummy_iterations`] (clamped to the allowed range). Its verdict is always refused.
    pub fn unknown_user(password: &[u8], iterations: u32) -> Self {
        let iterations = iterations.clamp(MIN_ITERATIONS, MAX_ITERATIONS);
        Self { derivation: Derivation::new(password, &DUMMY_SALT, iterations), expected: [0; HASH_LENGTH], known: false }
    }

    /// Runs at most `iterations` more iterations ([`ITERATIONS_PER_STEP`] on the device).
    pub fn step(&mut self, iterations: u32) -> Progress {
        if self.derivation.run(iterations) {
            return Progress::Pending;
        }
        let matches = self.derivation.output.ct_eq(&self.expected) & subtle::Choice::from(u8::from(self.known));
        Progress::Done(if bool::from(matches) { Verdict::Accepted } else { Verdict::Refused })
    }

    /// Iterations still to run.
    pub fn remaining(&self) -> u32 {
        self.derivation.remaining
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Verifier").field("remaining", &self.derivation.remaining).finish_non_exhaustive()
    }
}

/// SHA-256's initial state (FIPS 180-4 §5.3.3).
const SHA256_INITIAL_STATE: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
/// SHA-256's block size in bytes.
const BLOCK: usize = 64;

/// PBKDF2-HMAC-SHA256, first output block, in steps: `U_1 = HMAC(P, S || INT(1))`,
/// `U_i = HMAC(P, U_{i-1})`, output `U_1 ^ … ^ U_c` (RFC 8018 §5.2). The one copy of PBKDF2 in
/// the firmware: [`Verifier`] runs it for `AUTH`, the key store (homemx-keystore) for the
/// storage passphrase. Every state is wiped on drop.
///
/// Every iteration hashes a 32-byte message after one key block, so both of its compressions
/// take the same single block: `U (32) | 0x80 | zeros | 768 as a 64-bit length`. That block is
/// kept padded, `U_i` in its first 32 bytes, and each compression's result is written straight
/// back into it: no byte-wise buffering per iteration.
pub struct Derivation {
    /// SHA-256 state after the block `K ^ ipad`.
    inner: [u32; 8],
    /// SHA-256 state after the block `K ^ opad`.
    outer: [u32; 8],
    /// `U_i` in bytes 0..32, then the fixed padding of a 96-byte message.
    block: GenericArray<u8, U64>,
    /// `U_1 ^ … ^ U_i`.
    output: [u8; HASH_LENGTH],
    /// Iterations still to run (`c - i`).
    remaining: u32,
}

impl Derivation {
    /// Keys HMAC with `password` and computes `U_1`; `iterations` of at least 1 in total.
    pub fn new(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut key = [0u8; BLOCK];
        if password.len() > BLOCK {
            // RFC 2104: a key longer than the block is hashed first.
            let mut digest = sha256(&SHA256_INITIAL_STATE, 0, &[password]);
            key[..HASH_LENGTH].copy_from_slice(&digest);
            digest.zeroize();
        } else {
            key[..password.len()].copy_from_slice(password);
        }
        let mut pad = [0u8; BLOCK];
        let mut inner = SHA256_INITIAL_STATE;
        let mut outer = SHA256_INITIAL_STATE;
        for (padded, byte) in pad.iter_mut().zip(key.iter()) {
            *padded = byte ^ 0x36;
        }
        sha2::compress256(&mut inner, &[GenericArray::clone_from_slice(&pad)]);
        for (padded, byte) in pad.iter_mut().zip(key.iter()) {
            *padded = byte ^ 0x5c;
        }
        sha2::compress256(&mut outer, &[GenericArray::clone_from_slice(&pad)]);
        key.zeroize();
        pad.zeroize();
        let mut block = GenericArray::<u8, U64>::default();
        block[HASH_LENGTH] = 0x80;
        block[BLOCK - 8..].copy_from_slice(&(((BLOCK + HASH_LENGTH) * 8) as u64).to_be_bytes());
        let mut derivation = Self { inner, outer, block, output: [0; HASH_LENGTH], remaining: iterations.max(1) - 1 };
        let mut first = derivation.hmac(&[salt, &1u32.to_be_bytes()]);
        derivation.block[..HASH_LENGTH].copy_from_slice(&first);
        derivation.output = first;
        first.zeroize();
        derivation
    }

    /// The derived block, `U_1 ^ … ^ U_c` once [`Derivation::run`] returned false.
    pub fn output(&self) -> &[u8; HASH_LENGTH] {
        &self.output
    }

    /// HMAC(P, message parts) from the keyed states.
    fn hmac(&self, message: &[&[u8]]) -> [u8; HASH_LENGTH] {
        let mut inner = sha256(&self.inner, BLOCK, message);
        let outer = sha256(&self.outer, BLOCK, &[&inner]);
        inner.zeroize();
        outer
    }

    /// Runs at most `budget` iterations; true while some remain.
    pub fn run(&mut self, budget: u32) -> bool {
        let count = budget.min(self.remaining);
        let mut state = [0u32; 8];
        for _ in 0..count {
            // Inner hash of U_i, then the outer hash of that: U_{i+1}, each back into the block.
            state = self.inner;
            sha2::compress256(&mut state, core::slice::from_ref(&self.block));
            write_words(&state, &mut self.block);
            state = self.outer;
            sha2::compress256(&mut state, core::slice::from_ref(&self.block));
            write_words(&state, &mut self.block);
            for (out, byte) in self.output.iter_mut().zip(self.block.iter()) {
                *out ^= byte;
            }
        }
        state.zeroize();
        self.remaining -= count;
        self.remaining > 0
    }
}

impl Drop for Derivation {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
        self.block.as_mut_slice().zeroize();
        self.output.zeroize();
    }
}

/// A SHA-256 state as its 32-byte digest, into the first 32 bytes of `block`.
fn write_words(state: &[u32; 8], block: &mut [u8]) {
    for (chunk, word) in block.chunks_exact_mut(4).zip(state.iter()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
}

/// SHA-256 of the concatenated `parts`, continuing from `state` after `prefix_length` bytes
/// (whole blocks) already compressed into it. The block buffer is wiped before returning.
fn sha256(state: &[u32; 8], prefix_length: usize, parts: &[&[u8]]) -> [u8; HASH_LENGTH] {
    let mut state = *state;
    let mut buffer = [0u8; BLOCK];
    let mut filled = 0;
    let mut total = prefix_length as u64;
    for part in parts {
        for &byte in *part {
            buffer[filled] = byte;
            filled += 1;
            if filled == BLOCK {
                sha2::compress256(&mut state, &[GenericArray::clone_from_slice(&buffer)]);
                filled = 0;
            }
        }
        total += part.len() as u64;
    }
    buffer[filled] = 0x80;
    buffer[filled + 1..].fill(0);
    if filled + 1 > BLOCK - 8 {
        sha2::compress256(&mut state, &[GenericArray::clone_from_slice(&buffer)]);
        buffer.fill(0);
    }
    buffer[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
    sha2::compress256(&mut state, &[GenericArray::clone_from_slice(&buffer)]);
    buffer.zeroize();
    let mut digest = [0u8; HASH_LENGTH];
    for (chunk, word) in digest.chunks_exact_mut(4).zip(state.iter()) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    state.zeroize();
    digest
}

/// PBKDF2-HMAC-SHA256's first output block for any salt: the published test vectors use salts
/// of other lengths than a record's.
#[cfg(test)]
fn pbkdf2_first_block(password: &[u8], salt: &[u8], iterations: u32) -> [u8; HASH_LENGTH] {
    let mut derivation = Derivation::new(password, salt, iterations);
    while derivation.run(u32::MAX) {}
    derivation.output
}

#[cfg(test)]
mod tests;
