//! Arbitrary bytes into the client's response reader, in arbitrary chunks:
//! it never panics and accepts only a response that names our key's accept
//! value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfc6455::proto::{ClientHandshake, Config, WsUrl, accept_key};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let url = WsUrl::parse("ws://example.com/chat").unwrap();
    let config = Config {
        max_handshake_bytes: 1024,
        max_handshake_headers: 16,
        ..Config::default()
    };
    let (mut hs, _) =
        ClientHandshake::with_key(&url, &["chat"], &[], &config, *b"the sample nonce").unwrap();
    let chunk = usize::from(seed % 31) + 1;
    for piece in stream.chunks(chunk) {
        match hs.receive(piece) {
            Ok(None) => {}
            Ok(Some((response, _))) => {
                let accept = accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
                let named = response
                    .headers
                    .iter()
                    .any(|h| h.value.trim_ascii() == accept.as_bytes());
                assert!(named, "accepted a response without our accept value");
                return;
            }
            Err(_) => return,
        }
    }
});
