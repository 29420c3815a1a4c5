//! permessage-deflate in a build without the `deflate` feature: a
//! zero-sized [`PerMessageDeflate`] that is never enabled, so that the
//! connection is written once for both builds.
//!
//! No handshake of such a build offers or accepts permessage-deflate
//! ([`configured`](super::configured) is `None`), so no agreement reaches
//! [`PerMessageDeflate::new`], and a frame with RSV1 set is refused before
//! it gets here (RFC 6455 §5.2: "MUST be 0 unless an extension is
//! negotiated").

use bytes::{Bytes, BytesMut};

use super::DeflateParams;
use crate::proto::config::{Config, DeflateConfig};
use crate::proto::error::{Error, ProtocolError};
use crate::proto::role::Role;

/// A payload as it goes on the wire, and its RSV1.
type BytesAndRsv1 = Result<(Bytes, bool), Error>;
/// Inflating's outcome.
type Inflated = Result<(), ProtocolError>;

/// Stands in for the codec of a build with the feature: holds nothing,
/// compresses nothing.
#[derive(Debug)]
pub struct PerMessageDeflate;

impl PerMessageDeflate {
    /// Off, whatever was agreed: this build cannot compress.
    pub fn new(_: Role, _: Option<&DeflateParams>, _: &Config) -> Self {
        Self
    }

    /// The sending side of a split connection: off, as this one is.
    pub fn split_sender(&mut self) -> Self {
        Self
    }

    /// Never: RSV1 keeps no meaning, and is refused.
    pub fn is_enabled(&self) -> bool {
        false
    }

    /// Nothing is ever allocated: `(false, false)`.
    pub fn is_allocated(&self) -> (bool, bool) {
        (false, false)
    }

    /// The payload as it is, RSV1 clear.
    pub fn compress_message(&mut self, payload: Bytes) -> BytesAndRsv1 {
        Ok((payload, false))
    }

    /// The payload as it is, RSV1 clear.
    pub fn compress_fragment(&mut self, payload: Bytes, _: bool, _: bool) -> BytesAndRsv1 {
        Ok((payload, false))
    }

    /// Refuses: a compressed frame cannot have been negotiated (§5.2).
    pub fn inflate(&mut self, _: &[u8], _: &mut BytesMut, _: bool, _: usize) -> Inflated {
        Err(ProtocolError::ReservedBitsSet)
    }

    /// Never: a shared frame goes out in its plain form.
    pub fn take_prepared(&mut self, _: u8) -> bool {
        false
    }
}

/// Nothing to compress with: a prepared frame keeps only its plain form.
pub fn compress_once(_: &[u8], _: &DeflateConfig) -> Option<(Bytes, u8)> {
    None
}
