//! Arbitrary bytes into the §5.2 header parser: it never panics, every
//! header it accepts re-encodes to the same bytes, and every shorter prefix
//! of an accepted header asks for more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfc6455::proto::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, len))) = FrameHeader::parse(data) else {
        return;
    };
    assert!(len <= MAX_HEADER_LEN && len <= data.len());
    let mut out = bytes::BytesMut::new();
    header.encode(&mut out);
    assert_eq!(&out[..], &data[..len], "re-encoding differs");
    assert_eq!(header.encoded_len(), len);
    for end in 0..len {
        assert_eq!(
            FrameHeader::parse(&data[..end]),
            Ok(None),
            "prefix of {end} bytes"
        );
    }
});
