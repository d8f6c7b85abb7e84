//! Random streams for the firmware's consumers (network stack, spool, key-value store,
//! console challenges): each is a ChaCha20 stream keyed with 32 fresh bytes from the board's
//! entropy source, so consumers never share or disturb each other's state.
//!
//! A stream is its key and the number of the next unused ChaCha20 block (40 bytes; the
//! `rand_chacha` generator it replaced was 312, most of it a four-block output buffer, and a
//! dozen streams are held for the firmware's life). Each draw makes the keystream from the
//! next unused block on, straight into the caller's buffer, and moves past the blocks it
//! touched: every output is handed out once and no copy of it is kept (the data key is drawn
//! from one, and every derived stream's key). The bytes are those of `rand_chacha`'s
//! `ChaCha20Rng` with the same key, block for block (a test checks it).
//!
//! Owns: nothing (each stream is owned by whoever derived it). Calls: nothing.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20Legacy;
use homemx_board::EntropySource;
use homemx_keystore::secret::SecretBytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Octets of one ChaCha20 block.
const BLOCK: u64 = 64;

/// An independent random stream derived from the board's entropy.
pub struct DerivedRandom {
    /// The ChaCha20 key (wiped when the stream is dropped).
    key: SecretBytes<32>,
    /// The next block not used yet.
    next_block: u64,
}

impl DerivedRandom {
    fn keyed(key: &SecretBytes<32>) -> Self {
        let mut stream = DerivedRandom { key: SecretBytes::zeroed(), next_block: 0 };
        stream.key.expose_mut().copy_from_slice(key.expose());
        stream
    }

    /// Keys a new stream from the board.
    pub fn from_board(entropy: &mut impl EntropySource) -> Self {
        let mut key = SecretBytes::<32>::zeroed();
        entropy.fill_bytes(key.expose_mut());
        Self::keyed(&key)
    }

    /// A new independent stream keyed from this one.
    pub fn derive(&mut self) -> Self {
        let mut key = SecretBytes::<32>::zeroed();
        self.fill_bytes(key.expose_mut());
        Self::keyed(&key)
    }

    /// Fills `buffer` with the keystream from the next unused block on and moves past every
    /// block it touched (the rest of the last one is never handed out).
    pub fn fill_bytes(&mut self, buffer: &mut [u8]) {
        let mut cipher = ChaCha20Legacy::new(self.key.expose().into(), &[0u8; 8].into());
        cipher.seek(self.next_block.saturating_mul(BLOCK));
        buffer.fill(0);
        cipher.apply_keystream(buffer);
        let blocks = (buffer.len() as u64).div_ceil(BLOCK);
        self.next_block = self.next_block.saturating_add(blocks);
    }

    /// A `rand_core` generator keyed from this stream, for the consumers that take one (key
    /// generation): made when needed, dropped after. (Keyed from this stream directly: a
    /// derived stream in between would only cost one more draw.)
    pub fn rng(&mut self) -> ChaCha20Rng {
        let mut key = SecretBytes::<32>::zeroed();
        self.fill_bytes(key.expose_mut());
        ChaCha20Rng::from_seed(*key.expose())
    }

    /// A random 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }
}

impl homemx_spool::RandomSource for DerivedRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        DerivedRandom::fill_bytes(self, buffer);
    }
}

impl homemx_wire::device::NonceSource for DerivedRandom {
    fn fill_bytes(&mut self, buffer: &mut [u8]) {
        DerivedRandom::fill_bytes(self, buffer);
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    use super::DerivedRandom;

    struct FixedEntropy(u8);

    impl homemx_board::EntropySource for FixedEntropy {
        fn fill_bytes(&mut self, buffer: &mut [u8]) {
            for (index, byte) in buffer.iter_mut().enumerate() {
                *byte = self.0.wrapping_add(index as u8);
            }
        }

        fn kind(&self) -> homemx_board::EntropyKind {
            homemx_board::EntropyKind::Simulated
        }
    }

    /// The key `FixedEntropy(first)` gives.
    fn key(first: u8) -> [u8; 32] {
        core::array::from_fn(|index| first.wrapping_add(index as u8))
    }

    #[test]
    fn draws_are_chacha20_blocks_each_handed_out_once() {
        let mut stream = DerivedRandom::from_board(&mut FixedEntropy(7));
        let mut reference = ChaCha20Rng::from_seed(key(7));
        let mut next_block = 0u64;
        for length in [32usize, 8, 100, 64, 1, 0, 65, 4096] {
            let mut drawn = std::vec![0u8; length];
            stream.fill_bytes(&mut drawn);
            reference.set_word_pos(u128::from(next_block) * 16);
            let mut expected = std::vec![0u8; length];
            reference.fill_bytes(&mut expected);
            assert_eq!(drawn, expected, "a draw of {length} octets is the keystream from the next unused block");
            next_block += (length as u64).div_ceil(64);
        }
        assert_eq!(stream.next_block, next_block, "every block touched is passed");
    }

    #[test]
    fn derived_streams_differ_from_their_parent_and_each_other() {
        let mut parent = DerivedRandom::from_board(&mut FixedEntropy(1));
        let mut first = parent.derive();
        let mut second = parent.derive();
        let (mut a, mut b, mut c) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        first.fill_bytes(&mut a);
        second.fill_bytes(&mut b);
        parent.fill_bytes(&mut c);
        assert!(a != b && b != c && a != c);
        assert!(first.next_u64() != second.next_u64());
    }

    #[test]
    fn a_stream_is_its_key_and_block_number() {
        assert!(core::mem::size_of::<DerivedRandom>() <= 40);
    }
}
