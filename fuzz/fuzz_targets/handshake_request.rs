//! Arbitrary bytes into the server's request reader, in arbitrary chunks:
//! it never panics, never stores more than its limit, and whatever request
//! it reads can be judged and answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfc6455::proto::{Config, ServerHandshake};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let config = Config {
        max_handshake_bytes: 1024,
        max_handshake_headers: 16,
        ..Config::default()
    };
    let mut hs = ServerHandshake::new(&config);
    let chunk = usize::from(seed % 31) + 1;
    let mut fed = 0;
    for piece in stream.chunks(chunk) {
        match hs.receive(piece) {
            Ok(None) => fed += piece.len(),
            Ok(Some((request, used))) => {
                assert!(used <= piece.len());
                assert!(fed + used <= config.max_handshake_bytes);
                match request.upgrade() {
                    Ok(up) => {
                        let response = up.accept(up.protocols.first().map(String::as_str)).unwrap();
                        assert!(response.starts_with(b"HTTP/1.1 101 "));
                    }
                    Err(e) => assert!(e.response().starts_with(b"HTTP/1.1 4")),
                }
                return;
            }
            Err(e) => {
                assert!(e.response().starts_with(b"HTTP/1.1 4"));
                return;
            }
        }
    }
});
