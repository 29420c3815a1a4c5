//! A learner's Wireshark: a stream wrapper that prints every frame going in
//! and out, decoded (RFC 6455 §5.2).
//!
//! [`Traced`] wraps any `AsyncRead + AsyncWrite` and copies what passes
//! through it to two [`FrameLog`]s, one per direction. Each skips the
//! HTTP handshake head, then decodes frame headers with
//! [`FrameHeader::parse`] and prints one line per frame: FIN, RSV bits,
//! opcode, mask, length and the first bytes of the payload, unmasked.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::proto::{FrameHeader, apply_mask};

/// How many payload bytes a trace line shows.
const PREVIEW: usize = 24;

/// Decodes one direction of a connection's bytes into printable lines.
#[derive(Debug)]
pub struct FrameLog {
    label: &'static str,
    /// Still inside the HTTP head; counts the `\r\n\r\n` matched so far.
    head_match: Option<usize>,
    /// Header bytes not yet complete.
    pending: Vec<u8>,
    /// The frame whose payload is passing: header, bytes seen, preview.
    current: Option<(FrameHeader, u64, Vec<u8>)>,
}

impl FrameLog {
    /// A log whose lines start with `label` (e.g. `"<<"` for received).
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            head_match: Some(0),
            pending: Vec::new(),
            current: None,
        }
    }

    /// Takes bytes passing in this direction; returns a line per frame
    /// header seen (lines for bad input say so and stop decoding).
    pub fn observe(&mut self, mut data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !data.is_empty() {
            if let Some(matched) = self.head_match {
                let mut m = matched;
                let mut used = 0;
                for &b in data {
                    used += 1;
                    m = match (m, b) {
                        (0 | 2, b'\r') => m + 1,
                        (1 | 3, b'\n') => m + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if m == 4 {
                        break;
                    }
                }
                data = &data[used..];
                self.head_match = if m == 4 { None } else { Some(m) };
                continue;
            }
            if let Some((header, seen, preview)) = &mut self.current {
                let left = header.payload_len - *seen;
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                let room = PREVIEW.saturating_sub(preview.len()).min(take);
                let start = preview.len();
                preview.extend_from_slice(&data[..room]);
                if let Some(key) = header.mask {
                    apply_mask(&mut preview[start..], key, start);
                }
                *seen += take as u64;
                data = &data[take..];
                if *seen == header.payload_len {
                    lines.push(self.line());
                    self.current = None;
                }
                continue;
            }
            self.pending.push(data[0]);
            data = &data[1..];
            match FrameHeader::parse(&self.pending) {
                Ok(None) => {}
                Ok(Some((header, _))) => {
                    self.pending.clear();
                    self.current = Some((header, 0, Vec::new()));
                    if header.payload_len == 0 {
                        lines.push(self.line());
                        self.current = None;
                    }
                }
                Err(e) => {
                    lines.push(format!("{} invalid frame header: {e}", self.label));
                    self.head_match = Some(0);
                    self.pending.clear();
                    return lines;
                }
            }
        }
        lines
    }

    fn line(&self) -> String {
        let Some((h, _, preview)) = &self.current else {
            return String::new();
        };
        let bit = |b: bool| if b { '1' } else { '0' };
        let shown: String = String::from_utf8_lossy(preview)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect();
        let more = if h.payload_len > preview.len() as u64 {
            "…"
        } else {
            ""
        };
        format!(
            "{} FIN={} RSV={}{}{} {:?} mask={} len={} {:?}{more}",
            self.label,
            bit(h.fin),
            bit(h.rsv1),
            bit(h.rsv2),
            bit(h.rsv3),
            h.opcode,
            h.mask.map_or("-".to_owned(), |k| format!(
                "{:02x}{:02x}{:02x}{:02x}",
                k[0], k[1], k[2], k[3]
            )),
            h.payload_len,
            shown,
        )
    }
}

/// A stream that prints the frames passing through it to stderr.
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    incoming: FrameLog,
    outgoing: FrameLog,
}

impl<S> Traced<S> {
    /// Wraps `inner`; received frames print as `<<`, sent ones as `>>`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            incoming: FrameLog::new("<<"),
            outgoing: FrameLog::new(">>"),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            for line in self.incoming.observe(&buf.filled()[before..]) {
                eprintln!("{line}");
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            for line in self.outgoing.observe(&data[..n]) {
                eprintln!("{line}");
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_the_head_and_decodes_the_rfc_masked_hello() {
        let mut log = FrameLog::new(">>");
        let mut bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        let mut lines = Vec::new();
        for b in &bytes {
            lines.extend(log.observe(std::slice::from_ref(b)));
        }
        assert_eq!(
            lines,
            [">> FIN=1 RSV=000 Text mask=37fa213d len=5 \"Hello\""]
        );
    }
}
