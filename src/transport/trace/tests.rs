//! The tracer against the RFCs' own bytes, fed one byte at a time where the
//! split matters (a trace must not depend on how reads cut the stream).

use super::*;
use crate::proto::LengthEncoding;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
const RESPONSE_DEFLATE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
/// RFC 6455 §5.7: "A single-frame masked text message", "Hello".
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn byte_by_byte(log: &mut FrameLog, bytes: &[u8]) -> Vec<String> {
    bytes
        .iter()
        .flat_map(|b| log.observe(std::slice::from_ref(b)))
        .collect()
}

#[test]
fn the_head_is_printed_then_the_rfc_masked_hello_decoded() {
    let mut log = FrameLog::new(">>", TraceMode::Frames);
    let mut bytes = REQUEST.to_vec();
    bytes.extend_from_slice(&MASKED_HELLO);
    assert_eq!(
        byte_by_byte(&mut log, &bytes),
        [
            ">> GET / HTTP/1.1",
            ">> Host: a",
            ">> FIN=1 RSV=000 Text mask=37fa213d len=5 \"Hello\"",
        ]
    );
}

#[test]
fn close_frames_show_code_meaning_and_reason() {
    let mut log = FrameLog::new("<<", TraceMode::Frames);
    log.observe(REQUEST);
    let mut wire = vec![0x88, 0x05, 0x03, 0xe8, b'b', b'y', b'e'];
    wire.extend_from_slice(&[0x88, 0x00]);
    wire.extend_from_slice(&[0x88, 0x02, 0x03, 0xee]);
    assert_eq!(
        log.observe(&wire),
        [
            "<< FIN=1 RSV=000 Close mask=- len=5 code=1000 (normal closure) reason=\"bye\"",
            "<< FIN=1 RSV=000 Close mask=- len=0 no status code (reported as 1005)",
            "<< FIN=1 RSV=000 Close mask=- len=2 code=1006 (abnormal closure: reserved, never sent) reason=\"\"",
        ]
    );
}

#[test]
fn every_status_code_has_a_meaning() {
    // §7.4.1 and §7.4.2, range by range.
    for (code, meaning) in [
        (999, "not a status code (never used)"),
        (1001, "going away"),
        (1011, "internal error"),
        (1015, "TLS handshake failure: reserved, never sent"),
        (2000, "reserved for this protocol (invalid on the wire)"),
        (3000, "for libraries and frameworks (IANA)"),
        (4999, "private, for applications"),
        (5000, "not a status code (invalid)"),
    ] {
        assert_eq!(close_code_meaning(code), meaning, "{code}");
    }
}

#[cfg(feature = "deflate")]
#[test]
fn compressed_messages_show_what_they_inflate_to() {
    let mut trace = Trace::new(TraceMode::Frames);
    trace.sent(REQUEST);
    trace.received(RESPONSE_DEFLATE);
    // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello" twice, the second a
    // back-reference into the first (context takeover).
    let lines = trace.received(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(
        lines,
        ["<< FIN=1 RSV=100 Text mask=- len=7 compressed, inflates to 5 bytes \"Hello\""]
    );
    let lines = trace.received(&[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00]);
    assert_eq!(
        lines,
        ["<< FIN=1 RSV=100 Text mask=- len=5 compressed, inflates to 5 bytes \"Hello\""]
    );
}

#[cfg(feature = "deflate")]
#[test]
fn a_compressed_message_in_fragments_inflates_across_them() {
    let mut trace = Trace::new(TraceMode::Frames);
    trace.received(RESPONSE_DEFLATE);
    // RFC 7692 §7.2.3.3: the compressed "Hello" cut in two frames; RSV1 on
    // the first only, and both are inflated as one stream.
    let wire = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    let mut log = Vec::new();
    for b in wire {
        log.extend(trace.received(&[b]));
    }
    assert_eq!(log.len(), 2, "{log:?}");
    let inflated: u64 = log
        .iter()
        .map(|l| {
            let n = l.split("inflates to ").nth(1).expect("an inflated size");
            n.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(inflated, 5, "{log:?}");
    assert!(log[0].starts_with("<< FIN=0 RSV=100 Text "), "{}", log[0]);
    assert!(
        log[1].starts_with("<< FIN=1 RSV=000 Continuation "),
        "{}",
        log[1]
    );
}

#[test]
fn a_101_naming_permessage_deflate_is_an_agreement() {
    // RFC 7692 §5: the server accepts by naming the extension; a request
    // that offers it is no agreement.
    let mut log = FrameLog::new("<<", TraceMode::Frames);
    log.observe(RESPONSE_DEFLATE);
    assert!(log.accepts_deflate());
    let mut log = FrameLog::new(">>", TraceMode::Frames);
    log.observe(b"GET / HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    assert!(!log.accepts_deflate());
}

#[test]
fn without_an_agreement_a_compressed_frame_is_not_inflated() {
    let mut log = FrameLog::new("<<", TraceMode::Frames);
    log.observe(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    assert!(!log.accepts_deflate());
    assert_eq!(
        log.observe(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        ["<< FIN=1 RSV=100 Text mask=- len=7 compressed, inflated size unknown"]
    );
}

#[test]
fn hex_mode_annotates_each_header_field() {
    let mut log = FrameLog::new(">>", TraceMode::Hex);
    log.observe(REQUEST);
    assert_eq!(
        log.observe(&MASKED_HELLO),
        [
            ">> FIN=1 RSV=000 Text mask=37fa213d len=5 \"Hello\"",
            ">>    81                        # FIN=1 RSV1=0 RSV2=0 RSV3=0 opcode=0x1 (text)",
            ">>    85                        # MASK=1 payload length=5 (7-bit)",
            ">>    37 fa 21 3d               # masking key",
            ">>    7f 9f 4d 51 58            # payload, masked",
            ">>                              # unmasked: 48 65 6c 6c 6f = \"Hello\"",
        ]
    );
}

#[test]
fn hex_mode_shows_the_length_encoding_and_cuts_long_payloads() {
    let mut log = FrameLog::new("<<", TraceMode::Hex);
    log.observe(REQUEST);
    // §5.2: 256 bytes take the 16-bit form, 126 then 01 00.
    let mut wire = vec![0x82, 0x7e, 0x01, 0x00];
    wire.extend(std::iter::repeat_n(0xab, 256));
    let lines = log.observe(&wire);
    assert_eq!(lines[0], "<< FIN=1 RSV=000 Binary mask=- len=256 256 bytes");
    assert_eq!(
        lines[2],
        "<<    7e 01 00                  # MASK=0 payload length=256 (126: a 16-bit length follows)"
    );
    assert!(lines[3].ends_with("# payload"), "{}", lines[3]);
    // Four rows of 16 (HEX_MAX is 64), then the count of the rest.
    assert_eq!(lines.len(), 2 + 1 + 4 + 2, "{lines:#?}");
    assert!(lines[7].ends_with("# and 192 more bytes"), "{}", lines[7]);
}

#[test]
fn a_header_breaking_the_rules_stops_the_decoding() {
    let mut log = FrameLog::new("<<", TraceMode::Frames);
    log.observe(REQUEST);
    // Opcode 3 is reserved (§5.2).
    let lines = log.observe(&[0x83, 0x00]);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("<< invalid frame header: "),
        "{}",
        lines[0]
    );
}

#[test]
fn a_refused_upgrade_is_not_decoded_as_frames() {
    // §4.1: a status other than 101 is plain HTTP; its body is not frames.
    let mut log = FrameLog::new("<<", TraceMode::Frames);
    let lines = log.observe(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope");
    assert_eq!(
        lines,
        [
            "<< HTTP/1.1 403 Forbidden",
            "<< Content-Length: 4",
            "<< (no upgrade: what follows is not WebSocket frames)",
        ]
    );
    assert!(log.observe(&[0x81, 0x00]).is_empty());
}

#[test]
fn records_mode_hands_over_heads_and_whole_frames_unmasked() {
    let mut trace = Trace::new(TraceMode::Records);
    let mut bytes = REQUEST.to_vec();
    bytes.extend_from_slice(&MASKED_HELLO);
    // Byte by byte: a record must not depend on how reads cut the stream.
    for b in &bytes {
        assert!(
            trace
                .sent(std::slice::from_ref(b))
                .iter()
                .all(|l| !l.contains("FIN="))
        );
    }
    // 300 bytes: the 16-bit length form (§5.2).
    let mut long = vec![0x82, 126, 0x01, 0x2c];
    long.extend(std::iter::repeat_n(0xff, 300));
    trace.received(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    trace.received(&long);
    let events = trace.take_events();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        events[0],
        (
            Direction::Sent,
            TraceEvent::Head(vec!["GET / HTTP/1.1".into(), "Host: a".into()])
        )
    );
    let (Direction::Sent, TraceEvent::Frame(hello)) = &events[1] else {
        panic!("{events:?}");
    };
    assert_eq!(hello.header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
    assert_eq!(hello.payload, b"Hello");
    assert_eq!(
        (hello.length_encoding(), hello.truncated()),
        (LengthEncoding::Bits7, false)
    );
    let (Direction::Received, TraceEvent::Frame(binary)) = &events[3] else {
        panic!("{events:?}");
    };
    assert_eq!(binary.header.opcode, OpCode::Binary);
    assert_eq!(binary.payload, vec![0xff; 300]);
    assert_eq!(binary.length_encoding(), LengthEncoding::Bits16);
    assert!(trace.take_events().is_empty(), "taken once");
}

#[cfg(feature = "deflate")]
#[test]
fn records_of_a_compressed_message_carry_the_wire_bytes_and_the_inflated_size() {
    let mut trace = Trace::new(TraceMode::Records);
    trace.received(RESPONSE_DEFLATE);
    // RFC 7692 §7.2.3.1: "Hello" compressed, 7 bytes on the wire.
    trace.received(&[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    let events = trace.take_events();
    let [_, (Direction::Received, TraceEvent::Frame(frame))] = events.as_slice() else {
        panic!("{events:?}");
    };
    assert!(frame.header.rsv1 && frame.compressed);
    assert_eq!(frame.payload, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    assert_eq!(frame.inflated_len, Some(5));
}

#[test]
fn a_hand_built_record_too_short_for_its_key_does_not_panic() {
    // FrameRecord's fields are public: a record built by hand may claim a
    // masked header of 2 bytes, which no wire can hold.
    let mut header = crate::proto::FrameHeader::new(OpCode::Text, 5);
    header.mask = Some([1, 2, 3, 4]);
    let record = FrameRecord {
        header,
        header_len: 2,
        payload: b"Hello".to_vec(),
        compressed: false,
        inflated_len: None,
    };
    // The encoding follows from the length (the parser takes only the
    // minimal form), not from header_len: nothing to underflow.
    assert_eq!(record.length_encoding(), LengthEncoding::Bits7);
}

#[tokio::test]
async fn a_traced_stream_in_records_mode_keeps_the_events_until_taken() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not a dead end: with_mode(.., Records) prints nothing and keeps
    // what it saw for take_events.
    let (near, mut far) = tokio::io::duplex(1024);
    let mut traced = Traced::with_mode(near, TraceMode::Records);
    traced.write_all(REQUEST).await.unwrap();
    traced.write_all(&MASKED_HELLO).await.unwrap();
    let mut wire = [0u8; REQUEST.len() + MASKED_HELLO.len()];
    far.read_exact(&mut wire).await.unwrap();
    let events = traced.take_events();
    assert!(
        matches!(
            events.as_slice(),
            [(Direction::Sent, TraceEvent::Head(_)), (Direction::Sent, TraceEvent::Frame(f))]
                if f.payload == b"Hello"
        ),
        "{events:?}"
    );
    assert!(traced.take_events().is_empty(), "taken once");
}
