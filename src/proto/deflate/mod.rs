//! RFC 7692, Compression Extensions for WebSocket: permessage-deflate.
//!
//! Two halves, one per part of the RFC:
//!
//! - **Negotiation** (RFC 7692 §5, §7.1), in this file, built with or
//!   without the feature: a client writes an offer with [`offer`]; a server
//!   asks [`accept`] about each offer in turn and answers the first
//!   agreement with [`DeflateParams::response`]; the client checks that
//!   answer against its offer with [`check_response`]. Both ends come out
//!   holding the same [`DeflateParams`], the agreement. The handshake
//!   (`handshake/`) reads and writes the headers (RFC 6455 §9.1) and hands
//!   this file one element's parameters at a time, so nothing here depends
//!   on it.
//! - **Compression** (RFC 7692 §7.2), in `codec` (feature `deflate`): raw
//!   DEFLATE (RFC 1951) with the `00 00 ff ff` tail of a sync flush removed
//!   on send and put back on receipt, context kept or reset per the
//!   agreement. A [`Connection`](super::Connection) holds one
//!   [`PerMessageDeflate`], made from the agreement; frames with RSV1 set
//!   (§6, "Per-Message Compressed") are the ones that went through it.
//!
//! # The feature switch
//!
//! Whether this build compresses at all (feature `deflate`) is decided in
//! this folder and nowhere else. Without the feature, [`configured`] says
//! no deflate is configured, so no handshake offers or accepts it, and
//! [`PerMessageDeflate`] is `disabled.rs`'s zero-sized stand-in, which is
//! never enabled and compresses nothing. The connection and the transport
//! call the same functions either way.
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

use std::fmt::Write as _;

use super::config::{Config, DeflateConfig};
use super::role::Role;

#[cfg(feature = "deflate")]
#[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
pub mod codec;
#[cfg(feature = "deflate")]
use codec as compression;
#[cfg(not(feature = "deflate"))]
mod disabled;
#[cfg(not(feature = "deflate"))]
use disabled as compression;

// The connection's codec state and the one-shot compressor are plumbing of
// `Connection`: public once, as `codec::PerMessageDeflate` (with the
// feature), not again here.
pub(crate) use compression::{PerMessageDeflate, compress_once};

/// The parameters of one `permessage-deflate` element of
/// `Sec-WebSocket-Extensions`, in order, unquoted: `name` or `name=value`
/// (RFC 6455 §9.1, as `handshake::Extension` holds them).
pub type Params = [(String, Option<String>)];

/// The permessage-deflate configuration a handshake offers or accepts:
/// `config.deflate`, in a build that can compress (feature `deflate`);
/// `None` in one that cannot, which then neither offers nor accepts.
pub fn configured(config: &Config) -> Option<&DeflateConfig> {
    config
        .deflate
        .as_ref()
        .filter(|_| cfg!(feature = "deflate"))
}

/// The extension's name in `Sec-WebSocket-Extensions` (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The largest LZ77 window, 2^15 = 32 KiB: the default when no
/// `*_max_window_bits` parameter says otherwise (RFC 7692 §7.1.2).
pub const MAX_WINDOW_BITS: u8 = 15;

/// The smallest window RFC 7692 §7.1.2.1 allows: 2^8 = 256 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

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
    /// What `role`'s compressor and its peer's obey, each as (window bits,
    /// context reset after every message): ours first.
    pub fn sides(&self, role: Role) -> ((u8, bool), (u8, bool)) {
        let server = (self.server_max_window_bits, self.server_no_context_takeover);
        let client = (self.client_max_window_bits, self.client_no_context_takeover);
        match role {
            Role::Server => (server, client),
            Role::Client => (client, server),
        }
    }

    /// The `Sec-WebSocket-Extensions` value a server answers with.
    pub fn response(&self) -> String {
        let mut out = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        // Writing to a String cannot fail.
        if self.server_window_in_response {
            let bits = self.server_max_window_bits;
            let _ = write!(out, "; server_max_window_bits={bits}");
        }
        if self.client_window_in_response {
            let bits = self.client_max_window_bits;
            let _ = write!(out, "; client_max_window_bits={bits}");
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
fn parse(params: &Params) -> Option<Parsed> {
    let mut p = Parsed::default();
    for (name, value) in params {
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
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => value.parse().ok(),
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
        let _ = write!(out, "; server_max_window_bits={server_bits}");
    }
    let client_bits = clamp_bits(config.client_max_window_bits);
    if client_bits < MAX_WINDOW_BITS {
        let _ = write!(out, "; client_max_window_bits={client_bits}");
    } else {
        out.push_str("; client_max_window_bits");
    }
    out
}

/// A server's answer to one `permessage-deflate` offer (RFC 7692 §5.1):
/// the agreement, or `None` if the offer breaks §7.1's rules and must be
/// declined. The handshake asks offer by offer and takes the first
/// agreement.
pub fn accept(offer: &Params, config: &DeflateConfig) -> Option<DeflateParams> {
    let offer = parse(offer)?;
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
    Some(DeflateParams {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        server_window_in_response,
        client_window_in_response,
    })
}

/// A client's check of the server's acceptance against the offer it made
/// with `config` (RFC 7692 §7.1): the agreement if the server accepted
/// within what we offered, `None` if not (then the client "MUST _Fail the
/// WebSocket Connection_").
pub fn check_response(accepted: &Params, config: &DeflateConfig) -> Option<DeflateParams> {
    let p = parse(accepted)?;
    // §7.1.1.1: we asked for server_no_context_takeover; a server that
    // accepts "MUST include" it.
    if config.server_no_context_takeover && !p.server_no_context_takeover {
        return None;
    }
    // §7.1.2.1: we asked for a smaller server window; the answer must
    // include one "with the same or smaller value".
    let asked = clamp_bits(config.server_max_window_bits);
    let server_max_window_bits = match p.server_max_window_bits {
        Some(bits) if bits <= asked => bits,
        Some(_) => return None,
        None if asked < MAX_WINDOW_BITS => return None,
        None => MAX_WINDOW_BITS,
    };
    // §7.1.2.2: in a response, client_max_window_bits "MUST have a value";
    // and a larger window than we promised tells us nothing new.
    let promised = clamp_bits(config.client_max_window_bits);
    let client_max_window_bits = match p.client_max_window_bits {
        Some(Some(bits)) => bits.min(promised),
        Some(None) => return None,
        None => promised,
    };
    Some(DeflateParams {
        server_no_context_takeover: p.server_no_context_takeover,
        // What we promised in the offer binds us whether or not the server
        // repeated it.
        client_no_context_takeover: p.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        server_window_in_response: p.server_max_window_bits.is_some(),
        client_window_in_response: p.client_max_window_bits.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7692 §5.1: the client's offer. The server's choice and the
    // client's check go through the handshake's grammar, and are tested
    // there (`handshake/tests.rs`).

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
}
