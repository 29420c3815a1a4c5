//! The opening handshake's tests, grouped by the rule they check: §1.3 and
//! §4.2.2 (the worked example), head reading and its limits (`head.rs`),
//! §4.2.1 (`server.rs`), §9.1 (`extension.rs`), §3 (`url.rs`), §4.1
//! (`client.rs`), and RFC 7692's negotiation as the handshake runs it.

use super::client::check_extensions;
use super::server::negotiate_deflate;
use super::*;
use crate::proto::config::{Config, DeflateConfig};
use crate::proto::deflate;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request_bytes(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn read_request(bytes: &[u8]) -> Result<Request, HandshakeError> {
    let mut hs = ServerHandshake::new(&Config::default());
    match hs.receive(bytes)? {
        Some((req, used)) => {
            assert_eq!(used, bytes.len());
            Ok(req)
        }
        None => panic!("incomplete"),
    }
}

fn upgrade(bytes: &str) -> Result<UpgradeRequest, HandshakeError> {
    read_request(bytes.as_bytes())?.upgrade()
}

// §1.3 and §4.2.2: the worked example.

#[test]
fn accept_key_matches_rfc_example() {
    assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn server_accepts_rfc_example_request() {
    let up = upgrade(&request_bytes(
        "Sec-WebSocket-Protocol: chat, superchat\r\n",
    ))
    .unwrap();
    assert_eq!(up.target, "/chat");
    assert_eq!(up.host, "server.example.com");
    assert_eq!(up.origin.as_deref(), Some("http://example.com"));
    assert_eq!(up.protocols, ["chat", "superchat"]);
    let response = up.accept(up.choose_protocol(&["superchat"])).unwrap();
    assert_eq!(
        &response[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: superchat\r\n\r\n"
    );
}

#[test]
fn every_truncated_request_asks_for_more() {
    let bytes = request_bytes("");
    for end in 0..bytes.len() {
        let mut hs = ServerHandshake::new(&Config::default());
        assert_eq!(
            hs.receive(&bytes.as_bytes()[..end]),
            Ok(None),
            "prefix {end}"
        );
    }
}

#[test]
fn request_fed_one_byte_at_a_time_parses() {
    let bytes = request_bytes("");
    let mut hs = ServerHandshake::new(&Config::default());
    let (last, init) = bytes.as_bytes().split_last().unwrap();
    for b in init {
        assert_eq!(hs.receive(std::slice::from_ref(b)), Ok(None));
    }
    let (req, used) = hs.receive(std::slice::from_ref(last)).unwrap().unwrap();
    assert_eq!(used, 1);
    assert!(req.upgrade().is_ok());
}

#[test]
fn bytes_after_the_head_are_handed_back() {
    let mut bytes = request_bytes("").into_bytes();
    let head_len = bytes.len();
    bytes.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
    let mut hs = ServerHandshake::new(&Config::default());
    let (_, used) = hs.receive(&bytes).unwrap().unwrap();
    assert_eq!(used, head_len);
    assert_eq!(&bytes[used..], &[0x81, 0x85, 1, 2, 3, 4]);
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let req = "GET / HTTP/1.1\r\nhost: a\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    assert!(upgrade(req).is_ok());
}

// §4.2.1: one test per rule.

#[test]
fn non_get_request_gets_405() {
    let req = request_bytes("").replacen("GET", "POST", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::MethodNotGet));
    assert!(
        HandshakeError::MethodNotGet
            .response()
            .starts_with(b"HTTP/1.1 405 ")
    );
}

#[test]
fn http_1_0_is_rejected() {
    let req = request_bytes("").replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::HttpVersion));
}

#[test]
fn missing_host_is_rejected() {
    let req = request_bytes("").replacen("Host: server.example.com\r\n", "", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::MissingHost));
}

#[test]
fn missing_upgrade_is_rejected() {
    let req = request_bytes("").replacen("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::MissingUpgrade));
}

#[test]
fn connection_without_upgrade_is_rejected() {
    let req = request_bytes("").replacen("Connection: Upgrade", "Connection: keep-alive", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::MissingConnectionUpgrade));
}

#[test]
fn key_of_wrong_length_is_rejected() {
    // "c2hvcnQ=" is base64 for "short".
    let req = request_bytes("").replacen(KEY, "c2hvcnQ=", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
}

#[test]
fn key_that_is_not_base64_is_rejected() {
    let req = request_bytes("").replacen(KEY, "!!!!!!!!!!!!!!!!!!!!!!==", 1);
    assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
}

#[test]
fn repeated_key_is_rejected() {
    let req = request_bytes(&format!("Sec-WebSocket-Key: {KEY}\r\n"));
    assert_eq!(upgrade(&req), Err(HandshakeError::InvalidKey));
}

#[test]
fn repeated_version_is_rejected() {
    // §11.3.5: |Sec-WebSocket-Version| "MUST NOT appear more than once in
    // an HTTP request".
    let req = request_bytes("Sec-WebSocket-Version: 13\r\n");
    assert_eq!(upgrade(&req), Err(HandshakeError::UnsupportedVersion));
}

#[test]
fn other_version_gets_426_naming_13() {
    let req = request_bytes("").replacen("Version: 13", "Version: 8", 1);
    let err = upgrade(&req).unwrap_err();
    assert_eq!(err, HandshakeError::UnsupportedVersion);
    let response = String::from_utf8(err.response().to_vec()).unwrap();
    assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(response.contains("\r\nSec-WebSocket-Version: 13\r\n"));
}

#[test]
fn error_response_is_complete_http_with_a_reason() {
    let response = String::from_utf8(HandshakeError::MissingHost.response().to_vec()).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 Bad Request"));
    assert!(head.contains(&format!("Content-Length: {}", body.len())));
    assert_eq!(body, "missing Host header\n");
}

#[test]
fn accepting_a_protocol_not_offered_is_refused() {
    let up = upgrade(&request_bytes("")).unwrap();
    assert_eq!(
        up.accept(Some("chat")),
        Err(HandshakeError::ProtocolNotOffered)
    );
}

#[test]
fn malformed_protocol_list_is_rejected() {
    let req = request_bytes("Sec-WebSocket-Protocol: a b\r\n");
    assert_eq!(upgrade(&req), Err(HandshakeError::InvalidProtocolHeader));
}

// Limits.

#[test]
fn head_over_the_byte_limit_gets_431_before_it_ends() {
    let config = Config {
        max_handshake_bytes: 100,
        ..Config::default()
    };
    let mut head = HeadReader::new(&config);
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(200));
    let err = head.feed(long.as_bytes()).unwrap_err();
    assert_eq!(err, HandshakeError::HeadTooLarge);
    assert_eq!(err.status(), 431);
    assert!(head.head().len() < 100, "stored past the limit");
}

#[test]
fn too_many_headers_get_431() {
    let config = Config {
        max_handshake_headers: 3,
        ..Config::default()
    };
    let mut hs = ServerHandshake::new(&config);
    let req = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
    assert_eq!(
        hs.receive(req.as_bytes()),
        Err(HandshakeError::TooManyHeaders)
    );
}

#[test]
fn exactly_the_header_limit_is_allowed() {
    let config = Config {
        max_handshake_headers: 6,
        ..Config::default()
    };
    let mut hs = ServerHandshake::new(&config);
    let req = request_bytes("");
    assert!(
        hs.receive(req.as_bytes())
            .unwrap()
            .unwrap()
            .0
            .upgrade()
            .is_ok()
    );
}

// §9.1 extension offers.

#[test]
fn extension_offers_are_parsed_with_parameters() {
    let req = request_bytes(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits=\"10\"\r\nSec-WebSocket-Extensions: x-foo\r\n",
    );
    let up = upgrade(&req).unwrap();
    assert_eq!(
        up.extensions,
        vec![
            Extension {
                name: "permessage-deflate".into(),
                params: vec![("client_max_window_bits".into(), None)],
            },
            Extension {
                name: "permessage-deflate".into(),
                params: vec![("server_max_window_bits".into(), Some("10".into()))],
            },
            Extension {
                name: "x-foo".into(),
                params: vec![]
            },
        ]
    );
}

#[test]
fn malformed_extension_offers_are_rejected() {
    for bad in [
        "a;",
        "a; b=",
        "a b",
        "a; b=\"c d\"",
        "a; b=\"unterminated",
        ";a",
    ] {
        let req = request_bytes(&format!("Sec-WebSocket-Extensions: {bad}\r\n"));
        assert_eq!(
            upgrade(&req),
            Err(HandshakeError::InvalidExtensionsHeader),
            "{bad}"
        );
    }
}

// §3 URLs and §4.1 the client's side.

#[test]
fn urls_are_split_into_host_port_and_resource() {
    let u = WsUrl::parse("ws://example.com/chat?x=1").unwrap();
    assert_eq!(
        (u.secure, u.host.as_str(), u.port, u.resource.as_str()),
        (false, "example.com", 80, "/chat?x=1")
    );
    assert_eq!(u.host_header(), "example.com");
    let u = WsUrl::parse("wss://[::1]:9001").unwrap();
    assert_eq!(
        (u.secure, u.host.as_str(), u.port, u.resource.as_str()),
        (true, "::1", 9001, "/")
    );
    assert_eq!(u.host_header(), "[::1]:9001");
    let u = WsUrl::parse("WS://h?q").unwrap();
    assert_eq!(u.resource, "/?q");
}

#[test]
fn a_unicode_path_is_sent_percent_encoded_as_utf8() {
    // §11.1.1: excluded characters become their UTF-8 bytes, percent-encoded.
    let u = WsUrl::parse("ws://example.com/caf\u{e9}?q=\u{263a}").unwrap();
    assert_eq!(u.resource, "/caf%C3%A9?q=%E2%98%BA");
}

#[test]
fn bad_urls_are_rejected() {
    for bad in [
        "http://a/",
        "ws://",
        "ws://a:0/",
        "ws://a:99999/",
        "ws://a/#frag",
        "ws://u@a/",
        "ws://a/b c",
        "ws://[::1/",
        // §11.1.1 asks for IDNA (punycode) here; we refuse instead
        // (docs/RFC6455.md says why): the xn-- form works.
        "ws://caf\u{e9}.example/",
    ] {
        assert!(WsUrl::parse(bad).is_err(), "{bad}");
    }
}

fn client(protocols: &[&str]) -> (ClientHandshake, String) {
    let url = WsUrl::parse("ws://server.example.com/chat").unwrap();
    let nonce = *b"the sample nonce";
    let (hs, req) = ClientHandshake::with_key(
        &url,
        protocols,
        &[("Origin", "http://example.com")],
        &Config::default(),
        nonce,
    )
    .unwrap();
    (hs, String::from_utf8(req.to_vec()).unwrap())
}

const GOOD_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

#[test]
fn client_request_is_what_a_server_accepts() {
    // "the sample nonce" is the nonce behind the RFC's example key.
    let (_, req) = client(&["chat"]);
    assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"));
    assert!(req.contains(&format!("Sec-WebSocket-Key: {KEY}\r\n")));
    let up = read_request(req.as_bytes()).unwrap().upgrade().unwrap();
    assert_eq!(up.protocols, ["chat"]);
    assert_eq!(up.origin.as_deref(), Some("http://example.com"));
}

#[test]
fn client_accepts_correct_response_and_keeps_trailing_bytes() {
    let (mut hs, _) = client(&[]);
    let mut bytes = format!("{GOOD_RESPONSE}\r\n").into_bytes();
    let head = bytes.len();
    bytes.extend_from_slice(&[0x81, 0x00]);
    let (resp, used) = hs.receive(&bytes).unwrap().unwrap();
    assert_eq!(used, head);
    assert_eq!(resp.protocol, None);
}

#[test]
fn client_rejects_wrong_accept() {
    let (mut hs, _) = client(&[]);
    let bad = GOOD_RESPONSE.replace("s3pP", "AAAA") + "\r\n";
    assert_eq!(
        hs.receive(bad.as_bytes()),
        Err(HandshakeError::InvalidAccept)
    );
}

#[test]
fn client_rejects_a_repeated_accept_or_protocol() {
    // §11.3.3 and §11.3.4: neither "MUST appear more than once in an HTTP
    // response", even with the right value twice.
    let (mut hs, _) = client(&[]);
    let twice =
        format!("{GOOD_RESPONSE}Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
    assert_eq!(
        hs.receive(twice.as_bytes()),
        Err(HandshakeError::InvalidAccept)
    );
    let (mut hs, _) = client(&["chat"]);
    let twice = format!(
        "{GOOD_RESPONSE}Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
    assert_eq!(
        hs.receive(twice.as_bytes()),
        Err(HandshakeError::UnrequestedProtocol)
    );
}

#[test]
fn client_rejects_non_101_status() {
    let (mut hs, _) = client(&[]);
    let resp = "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::NotSwitchingProtocols(403))
    );
}

#[test]
fn client_rejects_missing_upgrade_and_connection() {
    let (mut hs, _) = client(&[]);
    let resp = GOOD_RESPONSE.replace("Upgrade: websocket\r\n", "") + "\r\n";
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::MissingUpgrade)
    );
    let (mut hs, _) = client(&[]);
    let resp = GOOD_RESPONSE.replace("Connection: Upgrade\r\n", "") + "\r\n";
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::MissingConnectionUpgrade)
    );
}

#[test]
fn client_accepts_only_a_protocol_it_offered() {
    let (mut hs, _) = client(&["chat"]);
    let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: chat\r\n\r\n");
    assert_eq!(
        hs.receive(resp.as_bytes())
            .unwrap()
            .unwrap()
            .0
            .protocol
            .as_deref(),
        Some("chat")
    );
    let (mut hs, _) = client(&["chat"]);
    let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: other\r\n\r\n");
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::UnrequestedProtocol)
    );
    let (mut hs, _) = client(&[]);
    let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Protocol: chat\r\n\r\n");
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::UnrequestedProtocol)
    );
}

#[test]
fn client_rejects_an_extension_it_did_not_offer() {
    let (mut hs, _) = client(&[]);
    let resp = format!("{GOOD_RESPONSE}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    assert_eq!(
        hs.receive(resp.as_bytes()),
        Err(HandshakeError::UnrequestedExtension)
    );
}

#[test]
fn client_refuses_to_offer_a_subprotocol_twice() {
    // §4.1 item 10: the offered subprotocols "MUST all be unique strings".
    let url = WsUrl::parse("ws://a/").unwrap();
    let twice = ClientHandshake::new(&url, &["chat", "v2", "chat"], &[], &Config::default());
    assert_eq!(twice.unwrap_err(), HandshakeError::InvalidProtocolHeader);
    assert!(ClientHandshake::new(&url, &["chat", "v2"], &[], &Config::default()).is_ok());
}

#[test]
fn random_keys_differ() {
    let url = WsUrl::parse("ws://a/").unwrap();
    let (_, a) = ClientHandshake::new(&url, &[], &[], &Config::default()).unwrap();
    let (_, b) = ClientHandshake::new(&url, &[], &[], &Config::default()).unwrap();
    assert_ne!(a, b);
}

// RFC 7692 §5.1 and §7.1: permessage-deflate offers and answers, parsed by
// the §9.1 grammar, judged by `deflate::accept` and `deflate::check_response`.

fn offers(value: &str) -> Vec<Extension> {
    parse_extensions(&[Header {
        name: "Sec-WebSocket-Extensions".into(),
        value: value.as_bytes().to_vec(),
    }])
    .expect("well-formed header")
}

fn server(value: &str, config: &DeflateConfig) -> Option<String> {
    negotiate_deflate(&offers(value), config).map(|p| p.response())
}

// --- RFC 7692 §5.1 and §7.1: the server's choice -------------------

#[test]
fn server_accepts_a_plain_offer_with_a_plain_response() {
    let c = DeflateConfig::default();
    assert_eq!(
        server("permessage-deflate", &c).as_deref(),
        Some("permessage-deflate")
    );
}

#[test]
fn server_answers_the_chromium_offer() {
    // What Chromium sends.
    let c = DeflateConfig::default();
    assert_eq!(
        server("permessage-deflate; client_max_window_bits", &c).as_deref(),
        Some("permessage-deflate")
    );
    let c = DeflateConfig::no_context_takeover();
    assert_eq!(
        server("permessage-deflate; client_max_window_bits", &c).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
}

#[test]
fn server_skips_offers_it_must_decline_and_takes_the_first_good_one() {
    let c = DeflateConfig::default();
    // Unknown parameter, duplicate, bad value, value where none belongs,
    // no value where one must be: each declined (§7.1).
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=0x0f",
        "permessage-deflate; client_no_context_takeover=1",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(server(bad, &c), None, "{bad}");
        let two = format!("{bad}, permessage-deflate; server_max_window_bits=10");
        assert_eq!(
            server(&two, &c).as_deref(),
            Some("permessage-deflate; server_max_window_bits=10"),
            "{two}"
        );
    }
}

#[test]
fn server_honours_every_parameter_of_an_offer() {
    let c = DeflateConfig::default();
    let p = negotiate_deflate(
        &offers(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=\"9\"; client_max_window_bits=12",
        ),
        &c,
    )
    .expect("accepted");
    assert!(p.server_no_context_takeover && p.client_no_context_takeover);
    assert_eq!(
        (p.server_max_window_bits, p.client_max_window_bits),
        (9, 12)
    );
    assert_eq!(
        p.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9; client_max_window_bits=12"
    );
}

#[test]
fn server_applies_its_own_limits() {
    let c = DeflateConfig {
        server_max_window_bits: 10,
        client_max_window_bits: 11,
        ..DeflateConfig::default()
    };
    // It may shrink its own window unasked, but may limit the client's
    // only when the client said it can be limited (§7.1.2.2).
    assert_eq!(
        server("permessage-deflate", &c).as_deref(),
        Some("permessage-deflate; server_max_window_bits=10")
    );
    assert_eq!(
        server(
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits",
            &c
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11")
    );
    // Never more than the client asked for.
    assert_eq!(
        server(
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
            &c
        )
        .as_deref(),
        Some("permessage-deflate; server_max_window_bits=8; client_max_window_bits=9")
    );
}

// --- RFC 7692 §5.1 and §7.1: the client's offer and check ------------

#[test]
fn client_and_server_agree_on_the_same_parameters() {
    let configs = [
        DeflateConfig::default(),
        DeflateConfig::no_context_takeover(),
        DeflateConfig {
            server_max_window_bits: 9,
            client_max_window_bits: 8,
            ..DeflateConfig::default()
        },
        DeflateConfig {
            server_no_context_takeover: true,
            server_max_window_bits: 12,
            ..DeflateConfig::default()
        },
    ];
    for client in &configs {
        for server_config in &configs {
            let server_side = negotiate_deflate(&offers(&deflate::offer(client)), server_config)
                .expect("accepted");
            let client_side = check_extensions(&offers(&server_side.response()), Some(client))
                .expect("valid response")
                .expect("accepted");
            assert_eq!(
                (
                    client_side.server_no_context_takeover,
                    client_side.client_no_context_takeover,
                    client_side.server_max_window_bits,
                    client_side.client_max_window_bits
                ),
                (
                    server_side.server_no_context_takeover,
                    server_side.client_no_context_takeover,
                    server_side.server_max_window_bits,
                    server_side.client_max_window_bits
                ),
                "client {client:?} server {server_config:?}"
            );
        }
    }
}

#[test]
fn client_accepts_a_declined_offer() {
    assert_eq!(
        check_extensions(&[], Some(&DeflateConfig::default())),
        Ok(None)
    );
}

#[test]
fn client_fails_a_response_outside_its_offer() {
    let asked = DeflateConfig {
        server_no_context_takeover: true,
        server_max_window_bits: 10,
        ..DeflateConfig::default()
    };
    for (response, config) in [
        // Not what we offered.
        ("x-foo", &DeflateConfig::default()),
        (
            "permessage-deflate, permessage-deflate",
            &DeflateConfig::default(),
        ),
        // Grammar (§7.1).
        ("permessage-deflate; foo", &DeflateConfig::default()),
        (
            "permessage-deflate; server_max_window_bits=16",
            &DeflateConfig::default(),
        ),
        // §7.1.2.2: a value is required in a response.
        (
            "permessage-deflate; client_max_window_bits",
            &DeflateConfig::default(),
        ),
        // Ignoring what we asked for (§7.1.1.1, §7.1.2.1).
        ("permessage-deflate; server_max_window_bits=10", &asked),
        (
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
            &asked,
        ),
        ("permessage-deflate; server_no_context_takeover", &asked),
    ] {
        assert!(
            check_extensions(&offers(response), Some(config)).is_err(),
            "{response}"
        );
    }
}
