//! The incremental validator against `std::str::from_utf8`, over arbitrary
//! bytes split at arbitrary points; and fail-fast: it rejects at the first
//! byte after which no continuation could be valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfc6455::proto::Utf8Validator;

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (data, cuts) = input;
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (data.len() + 1))
        .collect();
    points.sort_unstable();
    points.push(data.len());
    let mut v = Utf8Validator::new();
    let mut start = 0;
    let mut result = Ok(());
    for p in points {
        if result.is_ok() {
            result = v.feed(&data[start..p]);
            if result.is_err() {
                // Fail-fast: the bytes so far are already hopeless.
                let hopeless = match std::str::from_utf8(&data[..p]) {
                    Ok(_) => false,
                    Err(e) => e.error_len().is_some(),
                };
                assert!(hopeless, "rejected a prefix that could still be valid");
            }
        }
        start = p;
    }
    if result.is_ok() {
        result = v.finish();
    }
    assert_eq!(result.is_ok(), std::str::from_utf8(&data).is_ok());
});
