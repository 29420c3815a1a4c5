//! Reading an HTTP head (RFC 9112 §2.1: start line, header lines, an empty
//! line) from bytes that arrive in pieces, within the handshake's limits.
//!
//! [`HeadReader`] only finds where the head ends and counts its lines;
//! httparse parses it once it is whole. Both roles read their peer's head
//! with it: a server the request, a client the response.

use std::fmt::Write as _;

use super::error::HandshakeError;
use crate::proto::config::Config;

/// Where the scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Inside a line that has content.
    InLine,
    /// Just after a `\n`: a `\n` (or `\r\n`) now ends the head.
    LineStart,
    /// After `\n\r`: a `\n` ends the head.
    LineStartCr,
}

/// Collects an HTTP head (request or response) from bytes that arrive in
/// pieces, looking at each byte once.
///
/// The head ends at the first empty line (`\r\n\r\n`; a bare `\n\n` too, as
/// httparse accepts it). Limits apply while scanning: a head longer than
/// `max_bytes`, or with more than `max_headers` header lines, fails before
/// any of it past the limit is stored.
#[derive(Debug)]
pub struct HeadReader {
    buf: Vec<u8>,
    scan: Scan,
    /// Non-empty lines seen: the start line plus the header lines.
    lines: usize,
    max_bytes: usize,
    max_headers: usize,
    done: bool,
}

impl HeadReader {
    /// A reader with the handshake limits of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            buf: Vec::new(),
            scan: Scan::InLine,
            lines: 0,
            max_bytes: config.max_handshake_bytes,
            max_headers: config.max_handshake_headers,
            done: false,
        }
    }

    /// Takes the next piece of input. Returns `Ok(Some(n))` when the head is
    /// complete, `n` being how many bytes of `data` belong to it (the rest
    /// is the start of what follows the head), or `Ok(None)` when all of
    /// `data` was taken and the head goes on.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, HandshakeError> {
        if self.done {
            return Ok(Some(0));
        }
        for (i, &byte) in data.iter().enumerate() {
            if self.buf.len() + i >= self.max_bytes {
                return Err(HandshakeError::HeadTooLarge);
            }
            self.scan = match (self.scan, byte) {
                (Scan::LineStart | Scan::LineStartCr, b'\n') => {
                    self.buf.extend_from_slice(&data[..=i]);
                    self.done = true;
                    return Ok(Some(i + 1));
                }
                (Scan::InLine, b'\n') => {
                    self.lines += 1;
                    // The start line is not a header.
                    if self.lines > self.max_headers + 1 {
                        return Err(HandshakeError::TooManyHeaders);
                    }
                    Scan::LineStart
                }
                (Scan::LineStart, b'\r') => Scan::LineStartCr,
                _ => Scan::InLine,
            };
        }
        self.buf.extend_from_slice(data);
        Ok(None)
    }

    /// The head read so far (all of it once `feed` returned `Some`).
    pub fn head(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the next piece of input as [`feed`](Self::feed) does and, once
    /// the head is whole, hands it to `parse` (httparse's request or
    /// response parser) with as many header slots as lines were counted,
    /// bounded by the limit: nothing is allocated for headers that are not
    /// there. Returns what `parse` made and how many bytes of `data` the
    /// head used.
    pub(super) fn read<T>(
        &mut self,
        data: &[u8],
        parse: impl for<'h> FnOnce(&mut [httparse::Header<'h>], &'h [u8]) -> Result<T, HandshakeError>,
    ) -> Result<Option<(T, usize)>, HandshakeError> {
        let Some(used) = self.feed(data)? else {
            return Ok(None);
        };
        let mut slots = vec![httparse::EMPTY_HEADER; self.lines.min(self.max_headers + 1)];
        Ok(Some((parse(&mut slots, &self.buf)?, used)))
    }
}

/// httparse's verdict on a head the reader saw end: anything but a complete,
/// well-formed head is malformed HTTP.
pub(super) fn check_parsed(parsed: httparse::Result<usize>) -> Result<(), HandshakeError> {
    match parsed {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders),
        Ok(httparse::Status::Partial) | Err(_) => Err(HandshakeError::MalformedHttp),
    }
}

/// One header field, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The field name, as sent (compare it case-insensitively).
    pub name: String,
    /// The field value, as sent.
    pub value: Vec<u8>,
}

/// Owned copies of the fields httparse borrowed from the head.
pub(super) fn collect_headers(headers: &[httparse::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: h.value.to_vec(),
        })
        .collect()
}

/// Appends one header line, `name: value` and CRLF (RFC 9112 §5), to a head
/// being written.
pub(super) fn write_header(head: &mut String, name: &str, value: &str) {
    // Writing to a String cannot fail.
    let _ = write!(head, "{name}: {value}\r\n");
}
