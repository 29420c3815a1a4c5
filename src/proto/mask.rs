//! RFC 6455 §5.3, Client-to-Server Masking: XOR a payload with a 4-byte key.
//!
//! Every frame a client sends is masked with a fresh 32-bit key; the server
//! unmasks it. The same function does both, since XOR is its own inverse:
//!
//! > Octet i of the transformed data ("transformed-octet-i") is the XOR of
//! > octet i of the original data ("original-octet-i") with octet at index
//! > i modulo 4 of the masking key ("masking-key-octet-j").
//!
//! A payload may arrive in pieces (the connection unmasks text as it arrives
//! to validate UTF-8 early, §8.1), so [`apply_mask`] takes the offset of the
//! first byte within the payload and continues the key from there.
//!
//! Speed without `unsafe`: the key is expanded to a 32-byte block and the
//! payload XORed a fixed-size block at a time. The compiler sees arrays of a
//! known length, drops every bounds check and emits vector instructions; the
//! tail (< 32 bytes) goes byte by byte. `benches/codec.rs` measures it (group `mask`).

/// The width of the unrolled block. 32 bytes is two SSE registers or one AVX
/// register: wide enough for the compiler to vectorise, small enough that
/// short control frames (≤ 125 bytes) still take the block path.
const BLOCK: usize = 32;

/// XORs `buf` with `key`, as if `buf` began `offset` bytes into the payload.
///
/// `apply_mask(buf, key, 0)` masks (or unmasks) a whole payload. Applying it
/// to consecutive pieces of a payload with the running offset gives the same
/// bytes as applying it once to the whole.
pub fn apply_mask(buf: &mut [u8], mut key: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 of the rotated key lines up with buf[0].
    key.rotate_left(offset % 4);
    let (blocks, tail) = buf.as_chunks_mut::<BLOCK>();
    if !blocks.is_empty() {
        let block: [u8; BLOCK] = std::array::from_fn(|i| key[i % 4]);
        for chunk in blocks {
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
    }
    // BLOCK is a multiple of 8, so the tail starts at key index 0 again.
    xor_words(tail, key);
}

/// Up to a block's worth: 8 bytes at a time as one `u64` XOR, then the
/// last few byte by byte. A 16-byte payload is two XORs, not sixteen
/// (5.6 ns with a byte loop, against the 2.3 ns of fastwebsockets' word
/// loop, which needs `unsafe` to align its words; a `u64` built from an
/// 8-byte array needs no alignment).
fn xor_words(buf: &mut [u8], key: [u8; 4]) {
    let key8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (words, rest) = buf.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ key8).to_ne_bytes();
    }
    // 8 is a multiple of 4: `rest` starts at key index 0.
    xor_bytes(rest, key);
}

/// Byte at a time from key index 0. `i & 3` is always < 4, so the compiler
/// drops the bounds check (a `key.iter().cycle()` version measured 16 ns
/// for 16 bytes, against 9 ns for this).
fn xor_bytes(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The byte-at-a-time definition from §5.3, kept as the reference the fast
/// version is tested and benchmarked (`benches/codec.rs`) against. Public
/// only for that bench, so hidden from the docs: use [`apply_mask`].
#[doc(hidden)]
pub fn apply_mask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 §5.7: "A single-frame masked text message" carries "Hello"
    /// masked with 37 fa 21 3d as 7f 9f 4d 51 58.
    #[test]
    fn rfc_example_hello_unmasks() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut buf = original.clone();
        apply_mask(&mut buf, [1, 2, 3, 4], 0);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [1, 2, 3, 4], 0);
        assert_eq!(buf, original);
    }

    #[test]
    fn pieces_with_running_offset_equal_the_whole() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original: Vec<u8> = (0..200u8).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = original.clone();
        let (a, rest) = pieces.split_at_mut(7);
        let (b, c) = rest.split_at_mut(45);
        apply_mask(a, key, 0);
        apply_mask(b, key, 7);
        apply_mask(c, key, 52);
        assert_eq!(pieces, whole);
    }

    proptest::proptest! {
        #[test]
        fn fast_mask_equals_naive_loop_at_any_offset(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            key in proptest::array::uniform4(proptest::num::u8::ANY),
            offset in 0usize..1000,
        ) {
            let mut fast = data.clone();
            let mut slow = data;
            apply_mask(&mut fast, key, offset);
            apply_mask_naive(&mut slow, key, offset);
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
