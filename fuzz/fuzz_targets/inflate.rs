//! RFC 7692 §7.2, the permessage-deflate codec on its own, in two modes.
//!
//! **Inflate** (mode bit clear): arbitrary bytes, cut into arbitrary
//! frames and messages, go to a [`Decompressor`] with an arbitrary limit of
//! at most 64 KiB. It never panics; after a frame that inflates fine the
//! message holds at most `limit` bytes, and after
//! [`InflateError::TooLarge`] at most `limit + 1` (§7.2.2 inflates into
//! memory, and that bound is what keeps a zip bomb from growing it). The
//! frame boundaries must not matter: a second decompressor given each
//! message in one piece produces the same messages.
//!
//! **Round trip** (mode bit set): arbitrary messages, sent in arbitrary
//! fragments, go through a [`Compressor`] (each fragment with `fin` clear,
//! the last with it set, as `Connection::send_*_fragment` does) and a
//! [`Decompressor`] with the same window and context takeover, with the
//! compressed fragments cut again at arbitrary points: every message comes
//! out exactly as it went in.
//!
//! The input is hand-parsed so that seeds can be written by hand:
//!
//! ```text
//! byte 0        bit 0: mode (0 inflate, 1 round trip)
//!               bit 1: no_context_takeover
//!               bits 2-4: window bits - 8 (8..=15)
//! inflate:      bytes 1-2: limit, u16 little-endian
//! round trip:   byte 1: compression level (mod 10)
//! then records  [flags] [len] [len bytes]: one frame's payload (inflate)
//!               or one fragment's data (round trip); flags bit 0 is FIN,
//!               flags >> 1 is where a round trip cuts the compressed
//!               fragment in two.
//! ```
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rfc6455::proto::deflate::codec::{Compressor, Decompressor, InflateError};

/// One record of the input: a frame (or fragment) and whether it ends its
/// message.
struct Record<'a> {
    fin: bool,
    cut: usize,
    data: &'a [u8],
}

/// Splits the input after the header into records; a short last record
/// takes what is left.
fn records(mut rest: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while let [flags, len, tail @ ..] = rest {
        let (data, next) = tail.split_at(usize::from(*len).min(tail.len()));
        out.push(Record {
            fin: flags & 1 == 1,
            cut: usize::from(flags >> 1),
            data,
        });
        rest = next;
    }
    out
}

/// The records grouped into messages: each ends at a FIN, and the last may
/// be unfinished.
fn messages<'a>(records: Vec<Record<'a>>) -> Vec<(Vec<Record<'a>>, bool)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for record in records {
        let fin = record.fin;
        current.push(record);
        if fin {
            out.push((std::mem::take(&mut current), true));
        }
    }
    if !current.is_empty() {
        out.push((current, false));
    }
    out
}

/// Checks the bound on what one `decompress` or `finish` left in `out`.
fn check_bound(result: Result<(), InflateError>, out: &BytesMut, limit: usize) {
    match result {
        Ok(()) => assert!(out.len() <= limit, "Ok with {} > {limit}", out.len()),
        Err(InflateError::TooLarge) => assert!(
            out.len() <= limit + 1,
            "TooLarge with {} > {limit} + 1",
            out.len()
        ),
        Err(InflateError::Corrupt) => {}
    }
}

fn inflate(window_bits: u8, no_context_takeover: bool, limit: usize, rest: &[u8]) {
    let mut framed = Decompressor::new(window_bits, no_context_takeover);
    let mut whole = Decompressor::new(window_bits, no_context_takeover);
    // The two decompressors see the same messages only while neither has
    // failed: after a failure a connection is closed (§7.1.7), so what a
    // decompressor does next is only checked for panics and bounds.
    let mut comparable = true;
    for (frames, finished) in messages(records(rest)) {
        let mut out = BytesMut::new();
        let mut result = Ok(());
        for frame in &frames {
            result = framed.decompress(frame.data, &mut out, limit);
            check_bound(result, &out, limit);
            if result.is_err() {
                break;
            }
        }
        if finished && result.is_ok() {
            result = framed.finish(&mut out, limit);
            check_bound(result, &out, limit);
        }
        if !comparable {
            continue;
        }
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
        let mut again = BytesMut::new();
        let mut result_whole = whole.decompress(&joined, &mut again, limit);
        check_bound(result_whole, &again, limit);
        if finished && result_whole.is_ok() {
            result_whole = whole.finish(&mut again, limit);
            check_bound(result_whole, &again, limit);
        }
        match (result, result_whole) {
            (Ok(()), Ok(())) => assert_eq!(out, again, "frame boundaries changed the message"),
            (Err(_), Err(_)) => comparable = false,
            (a, b) => panic!("frame boundaries changed the outcome: framed {a:?}, whole {b:?}"),
        }
        if !finished {
            // Left mid-message: the next call would continue this one.
            break;
        }
    }
}

fn round_trip(window_bits: u8, no_context_takeover: bool, level: u8, rest: &[u8]) {
    let mut compressor = Compressor::new(level, window_bits, no_context_takeover);
    let mut decompressor = Decompressor::new(window_bits, no_context_takeover);
    for (fragments, finished) in messages(records(rest)) {
        let message: Vec<u8> = fragments
            .iter()
            .flat_map(|f| f.data.iter().copied())
            .collect();
        // The message exactly: its own length is a limit it must fit.
        let limit = message.len();
        let mut out = BytesMut::new();
        for fragment in &fragments {
            let z = compressor
                .compress(fragment.data, fragment.fin)
                .expect("compressing never fails");
            // §7.2.2 appends `00 00 ff ff` to the last piece: after nothing,
            // that is not a flush's tail but a stored block's length
            // (§7.2.3.6: the least a last piece can be is `00`).
            assert!(
                !(fragment.fin && z.is_empty()),
                "empty compressed last fragment"
            );
            let (a, b) = z.split_at(fragment.cut.min(z.len()));
            decompressor
                .decompress(a, &mut out, limit)
                .expect("first piece inflates");
            decompressor
                .decompress(b, &mut out, limit)
                .expect("second piece inflates");
        }
        if !finished {
            // End the message as a sender would: an empty last fragment.
            let z = compressor
                .compress(&[], true)
                .expect("compressing never fails");
            assert!(!z.is_empty(), "empty compressed last fragment");
            decompressor
                .decompress(&z, &mut out, limit)
                .expect("last piece inflates");
        }
        decompressor
            .finish(&mut out, limit)
            .expect("message ends cleanly");
        assert_eq!(&out[..], &message[..], "round trip changed the message");
        assert_eq!(compressor.is_allocated(), !no_context_takeover);
        assert_eq!(decompressor.is_allocated(), !no_context_takeover);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let no_context_takeover = mode & 0b10 != 0;
    let window_bits = 8 + ((mode >> 2) & 7);
    if mode & 1 == 0 {
        let [lo, hi, rest @ ..] = rest else {
            return;
        };
        inflate(
            window_bits,
            no_context_takeover,
            usize::from(u16::from_le_bytes([*lo, *hi])),
            rest,
        );
    } else {
        let [level, rest @ ..] = rest else {
            return;
        };
        round_trip(window_bits, no_context_takeover, level % 10, rest);
    }
});
