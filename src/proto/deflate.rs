//! RFC 7692, Compression Extensions for WebSocket: permessage-deflate.
//!
//! Two halves, one per part of the RFC:
//!
//! - **Negotiation** (RFC 7692 §5, §7.1), in this file, with no dependency:
//!   a client writes an offer with [`offer`]; a server picks the first offer
//!   it can honour with [`negotiate`] and answers with
//!   [`DeflateParams::response`]; the client checks that answer against its
//!   offer with [`check_response`]. Both ends come out holding the same
//!   [`DeflateParams`], the agreement.
//! - **Compression** (RFC 7692 §7.2), in [`codec`] (feature `deflate`):
//!   raw DEFLATE (RFC 1951) with the `00 00 ff ff` tail of a sync flush
//!   removed on send and put back on receipt, context kept or reset per the
//!   agreement. [`Connection`](super::Connection) calls it; frames with RSV1
//!   set (§6, "Per-Message Compressed") are the ones that went through it.
//!
//! # The four parameters
//!
//! | parameter                     | in an offer                  | in a response                      |
//! |-------------------------------|------------------------------|------------------------------------|
//! | `server_no_context_takeover`  | "server, reset per message"  | "I, the server, will"              |
//! | `client_no_context_takeover`  | "I, the client, will reset"  | "client, you must reset"           |
//! | `server_max_window_bits=N`    | "server, use ≤ 2^N bytes"    | "I, the server, will" (N ≤ offer's)|
//! | `client_max_window_bits[=N]`  | "I can be limited" (≤ N)     | "client, use ≤ 2^N bytes"          |
//!
//! # Window bits 8
//!
//! The RFC allows windows of 2^8 to 2^15 bytes. zlib (and zlib-rs, which
//! copies its interface) cannot *compress* raw DEFLATE with a 256-byte
//! window: `deflateInit2` refuses `windowBits = -8`. Anything can be
//! *decompressed* with a larger window than it was compressed with, so our
//! side of a window-8 agreement decompresses with 2^9. When the agreement
//! limits *our* compressor to 2^8, we still accept it and send every message
//! uncompressed (RSV1 clear): §6 lets any message go uncompressed, and a
//! message with no back-references at all is within every window. So no
//! offer is declined for its window size.

use super::handshake::{Extension, HandshakeError};

/// The extension's name in `Sec-WebSocket-Extensions` (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The largest LZ77 window, 2^15 = 32 KiB: the default when no
/// `*_max_window_bits` parameter says otherwise (RFC 7692 §7.1.2).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window RFC 7692 §7.1.2.1 allows: 2^8 = 256 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// What one end is willing to agree to: an offer to write (client), or the
/// limits applied to offers (server).
///
/// Off unless configured: `proto::Config::deflate` is `None` by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Server: always promise to reset the compression context after each
    /// message (so one compressed frame suits every recipient of a
    /// broadcast, and no compressor outlives a message). Client: ask the
    /// server for it. Default `false`.
    pub server_no_context_takeover: bool,
    /// Server: require the client to reset its context after each message
    /// (so no decompressor outlives a message here). Client: promise it.
    /// Default `false`.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8–15. Server: the
    /// most it answers with. Client: below 15, asked for in the offer.
    /// Default 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8–15. Server: asked
    /// of a client that allows it. Client: below 15, promised in the offer.
    /// Default 15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed (RFC
    /// 7692 §6 leaves the choice per message to the sender). Default 64:
    /// below it, DEFLATE's block header and Huffman tables cost more than a
    /// fresh context saves on chat-sized JSON (measured in
    /// `codec::tests::small_messages_do_not_shrink`).
    pub threshold: usize,
    /// zlib compression level, 0 (store) to 9 (smallest). Default 6, zlib's
    /// own default. The level changes speed, not memory.
    pub level: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            threshold: 64,
            level: 6,
        }
    }
}

impl DeflateConfig {
    /// Resets both contexts after every message: the least memory (no
    /// compressor or decompressor between messages) and, for a server, one
    /// compressed frame that fits every recipient of a broadcast.
    pub fn no_context_takeover() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..Self::default()
        }
    }
}

/// What both ends agreed to (RFC 7692 §7.1): the same value on both sides
/// of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with a window of at most 2^this bytes.
    pub server_max_window_bits: u8,
    /// The client compresses with a window of at most 2^this bytes.
    pub client_max_window_bits: u8,
    /// Whether the response names `server_max_window_bits` (it must when
    /// the offer did, §7.1.2.1).
    server_window_in_response: bool,
    /// Whether the response names `client_max_window_bits`.
    client_window_in_response: bool,
}

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value a server answers with.
    pub fn response(&self) -> String {
        let mut out = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_window_in_response {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if self.client_window_in_response {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits
            ));
        }
        out
    }
}

/// The parameters of one `permessage-deflate` element, checked against
/// §7.1's grammar but not yet against anything else.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// §7.1: "A server MUST decline an extension negotiation offer for this
/// extension if any of the following conditions are met: The negotiation
/// offer contains an extension parameter not defined for use in an offer.
/// The negotiation offer contains an extension parameter with an invalid
/// value. The negotiation offer contains multiple extension parameters with
/// the same name." A client holds a response to the same rules.
fn parse(ext: &Extension) -> Option<Parsed> {
    let mut p = Parsed::default();
    for (name, value) in &ext.params {
        match (name.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) if !p.server_no_context_takeover => {
                p.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !p.client_no_context_takeover => {
                p.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if p.server_max_window_bits.is_none() => {
                p.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if p.client_max_window_bits.is_none() => {
                p.client_max_window_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
            }
            _ => return None,
        }
    }
    Some(p)
}

/// §7.1.2.1: the value "MUST conform to the ABNF below. server-max-window-
/// bits = 1*DIGIT ... This value MUST be an integer ... 8 to 15, inclusive"
/// and has no leading zeros (`%x38-39 / "1" %x30-35`).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// The `Sec-WebSocket-Extensions` value of a client's offer (RFC 7692 §5.1).
///
/// It always includes `client_max_window_bits`, so that a server short of
/// memory may ask us for a smaller window (§7.1.2.2: without it in the
/// offer, a response "MUST NOT include" it).
pub fn offer(config: &DeflateConfig) -> String {
    let mut out = String::from(PERMESSAGE_DEFLATE);
    if config.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    let server_bits = clamp_bits(config.server_max_window_bits);
    if server_bits < MAX_WINDOW_BITS {
        out.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    let client_bits = clamp_bits(config.client_max_window_bits);
    if client_bits < MAX_WINDOW_BITS {
        out.push_str(&format!("; client_max_window_bits={client_bits}"));
    } else {
        out.push_str("; client_max_window_bits");
    }
    out
}

/// A server's choice among a client's offers (RFC 7692 §5.1): the first
/// `permessage-deflate` offer it can accept, and what it answers; `None`
/// declines them all (the connection goes on uncompressed).
///
/// §5.1: "the server ... may accept ... the first acceptable one"; offers
/// that break §7.1's rules are declined and the next is tried.
pub fn negotiate(offers: &[Extension], config: &DeflateConfig) -> Option<DeflateParams> {
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .filter_map(parse)
        .map(|offer| answer(&offer, config))
        .next()
}

fn answer(offer: &Parsed, config: &DeflateConfig) -> DeflateParams {
    // §7.1.1.1: a server accepting an offer with server_no_context_takeover
    // "MUST include the "server_no_context_takeover" extension parameter in
    // the ... response"; without it in the offer, the server "MAY" include
    // it anyway.
    let server_no_context_takeover =
        offer.server_no_context_takeover || config.server_no_context_takeover;
    // §7.1.1.2: "A server MAY include the "client_no_context_takeover"
    // extension parameter ... even if the ... offer ... doesn't include"
    // it. We echo a client's promise too, so that we may rely on it.
    let client_no_context_takeover =
        offer.client_no_context_takeover || config.client_no_context_takeover;
    // §7.1.2.1: with server_max_window_bits in the offer, the server accepts
    // "by including the "server_max_window_bits" extension parameter in the
    // ... response ... with the same or smaller value as the offer";
    // without it, the server MAY still include one to use a smaller window.
    let ours = clamp_bits(config.server_max_window_bits);
    let (server_max_window_bits, server_window_in_response) = match offer.server_max_window_bits {
        Some(asked) => (asked.min(ours), true),
        None => (ours, ours < MAX_WINDOW_BITS),
    };
    // §7.1.2.2: a response may include client_max_window_bits only if the
    // offer did ("MUST NOT include" otherwise), with a value no larger than
    // the offer's.
    let wanted = clamp_bits(config.client_max_window_bits);
    let (client_max_window_bits, client_window_in_response) = match offer.client_max_window_bits {
        None => (MAX_WINDOW_BITS, false),
        Some(promised) => {
            let bits = promised.unwrap_or(MAX_WINDOW_BITS).min(wanted);
            (bits, bits < MAX_WINDOW_BITS)
        }
    };
    DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        server_window_in_response,
        client_window_in_response,
    }
}

/// A client's check of the server's `Sec-WebSocket-Extensions` answer
/// against the offer it made with `config` (RFC 7692 §7.1): `Ok(None)` if
/// the server declined, the agreement if it accepted within what we
/// offered, and an error (the client must _Fail the WebSocket Connection_)
/// otherwise.
pub fn check_response(
    accepted: &[Extension],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let ext = match accepted {
        [] => return Ok(None),
        [ext] if ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) => ext,
        // RFC 6455 §4.1: an extension "not present in the client's
        // handshake" fails the connection; we offered one, once.
        _ => return Err(HandshakeError::UnrequestedExtension),
    };
    let bad = HandshakeError::InvalidDeflateResponse;
    let p = parse(ext).ok_or(bad.clone())?;
    // §7.1.1.1: we asked for server_no_context_takeover; a server that
    // accepts "MUST include" it.
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(bad);
    }
    // §7.1.2.1: we asked for a smaller server window; the answer must
    // include one "with the same or smaller value".
    let asked = clamp_bits(config.server_max_window_bits);
    let server_max_window_bits = match p.server_max_window_bits {
        Some(bits) if bits <= asked => bits,
        Some(_) => return Err(bad),
        None if asked < MAX_WINDOW_BITS => return Err(bad),
        None => MAX_WINDOW_BITS,
    };
    // §7.1.2.2: in a response, client_max_window_bits "MUST have a value";
    // and a larger window than we promised tells us nothing new.
    let promised = clamp_bits(config.client_max_window_bits);
    let client_max_window_bits = match p.client_max_window_bits {
        Some(Some(bits)) => bits.min(promised),
        Some(None) => return Err(bad),
        None => promised,
    };
    Ok(Some(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        // What we promised in the offer binds us whether or not the server
        // repeated it.
        client_no_context_takeover: p.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        server_window_in_response: p.server_max_window_bits.is_some(),
        client_window_in_response: p.client_max_window_bits.is_some(),
    }))
}

#[cfg(feature = "deflate")]
pub mod codec;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::{Header, parse_extensions};

    fn offers(value: &str) -> Vec<Extension> {
        parse_extensions(&[Header {
            name: "Sec-WebSocket-Extensions".into(),
            value: value.as_bytes().to_vec(),
        }])
        .expect("well-formed header")
    }

    fn server(value: &str, config: &DeflateConfig) -> Option<String> {
        negotiate(&offers(value), config).map(|p| p.response())
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
        let p = negotiate(
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
    fn client_offers_what_it_is_configured_with() {
        assert_eq!(
            offer(&DeflateConfig::default()),
            "permessage-deflate; client_max_window_bits"
        );
        let c = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 9,
            ..DeflateConfig::default()
        };
        assert_eq!(
            offer(&c),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
    }

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
                let server_side =
                    negotiate(&offers(&offer(client)), server_config).expect("accepted");
                let client_side = check_response(&offers(&server_side.response()), client)
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
        assert_eq!(check_response(&[], &DeflateConfig::default()), Ok(None));
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
                check_response(&offers(response), config).is_err(),
                "{response}"
            );
        }
    }
}
