//! Randomness for RFC 6455 §5.3 masking keys and the §4.1 handshake nonce.
//!
//! §5.3: "The masking key is a 32-bit value chosen at random by the client
//! ... The masking key needs to be unpredictable; thus, the masking key MUST
//! be derived from a strong source of entropy, and the masking key for a
//! given frame MUST NOT make it simple for a server/proxy to predict the
//! masking key for a subsequent frame." (The attack it prevents is §10.3's
//! cache poisoning of intermediaries by attacker-chosen bytes.)
//!
//! A system call per frame would cost more than masking the frame, so each
//! client connection seeds one ChaCha20 keystream (RFC 8439 §2.3) from the
//! operating system once, via `getrandom`, and draws mask keys from it:
//! sixteen keys per 64-byte block. ChaCha20 is a stream cipher whose output
//! cannot be predicted without the key, which is exactly the property §5.3
//! asks for; it is short enough to write out here rather than pull in a
//! dependency for the protocol core. Servers never mask and never create one.

/// RFC 8439 §2.3: "The first four words (0-3) are constants: 0x61707865,
/// 0x3320646e, 0x79622d32, 0x6b206574" ("expand 32-byte k").
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A ChaCha20 keystream, consumed 4 bytes at a time for mask keys.
#[derive(Clone)]
pub struct MaskRng {
    /// Words 4–11: the 256-bit key (the seed).
    key: [u32; 8],
    /// Word 12, the block counter, and words 13–15, the nonce; the nonce's
    /// first word is bumped whenever the counter wraps, so the stream never
    /// repeats.
    counter: u32,
    nonce: [u32; 3],
    block: [u8; 64],
    /// Bytes of `block` already handed out.
    used: usize,
}

impl std::fmt::Debug for MaskRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("MaskRng")
    }
}

impl MaskRng {
    /// Seeds a stream from the operating system's CSPRNG.
    ///
    /// # Panics
    ///
    /// If the operating system cannot provide entropy (`getrandom` fails),
    /// which the platforms we build for never do once booted. There is no
    /// safe fallback: keys from a weak seed would break §5.3's promise, so
    /// failing loudly is the only honest answer. No input from a peer can
    /// reach this.
    pub fn from_entropy() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .expect("the OS random number generator failed (RFC 6455 §5.3 needs it)");
        Self::from_seed(seed)
    }

    /// A stream from a given seed: the same seed gives the same keys, for
    /// tests and fuzzing.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut key = [0u32; 8];
        for (word, bytes) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        Self {
            key,
            counter: 0,
            nonce: [0; 3],
            block: [0; 64],
            used: 64,
        }
    }

    /// The next masking key.
    pub fn mask_key(&mut self) -> [u8; 4] {
        let mut k = [0u8; 4];
        self.fill(&mut k);
        k
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == self.block.len() {
                self.refill();
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }

    fn refill(&mut self) {
        self.block = chacha20_block(&self.key, self.counter, &self.nonce);
        self.used = 0;
        self.counter = self.counter.wrapping_add(1);
        if self.counter == 0 {
            self.nonce[0] = self.nonce[0].wrapping_add(1);
        }
    }
}

/// RFC 8439 §2.1: the quarter round on four words of the state.
fn quarter_round(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// RFC 8439 §2.3: the block function, 20 rounds as 10 "double rounds"
/// (a column round then a diagonal round), then the input added back in.
fn chacha20_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u8; 64] {
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&CONSTANTS);
    input[4..12].copy_from_slice(key);
    input[12] = counter;
    input[13..].copy_from_slice(nonce);
    let mut s = input;
    for _ in 0..10 {
        quarter_round(&mut s, 0, 4, 8, 12);
        quarter_round(&mut s, 1, 5, 9, 13);
        quarter_round(&mut s, 2, 6, 10, 14);
        quarter_round(&mut s, 3, 7, 11, 15);
        quarter_round(&mut s, 0, 5, 10, 15);
        quarter_round(&mut s, 1, 6, 11, 12);
        quarter_round(&mut s, 2, 7, 8, 13);
        quarter_round(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for ((chunk, word), orig) in out.chunks_exact_mut(4).zip(s).zip(input) {
        chunk.copy_from_slice(&word.wrapping_add(orig).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7539 Appendix A.2, test vector #1: all-zero key and nonce, block
    /// counter 0. The keystream is the ciphertext of 64 zero bytes.
    #[test]
    fn zero_key_matches_rfc_test_vector() {
        let expected: [u8; 32] = [
            0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
            0xbd, 0x28, 0xbd, 0xd2, 0x19, 0xb8, 0xa0, 0x8d, 0xed, 0x1a, 0xa8, 0x36, 0xef, 0xcc,
            0x8b, 0x77, 0x0d, 0xc7,
        ];
        let mut rng = MaskRng::from_seed([0; 32]);
        let mut out = [0u8; 32];
        rng.fill(&mut out);
        assert_eq!(out, expected);
        // The first mask key is the stream's first four bytes.
        assert_eq!(
            MaskRng::from_seed([0; 32]).mask_key(),
            [0x76, 0xb8, 0xe0, 0xad]
        );
    }

    #[test]
    fn consecutive_blocks_differ() {
        let mut rng = MaskRng::from_seed([7; 32]);
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        rng.fill(&mut a);
        rng.fill(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn entropy_seeds_differ() {
        assert_ne!(
            MaskRng::from_entropy().mask_key(),
            MaskRng::from_entropy().mask_key()
        );
    }
}
