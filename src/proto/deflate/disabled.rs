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

/// Stands in for the codec of a build with the feature: holds nothing,
/// compresses nothing.
#[derive(Debug)]
pub struct PerMessageDeflate;

impl PerMessageDeflate {
    /// Off, as it always is here.
    pub fn off() -> Self {
        Self
    }

    /// Off, whatever was agreed: this build cannot compress.
    pub fn new(_role: Role, _params: Option<&DeflateParams>, _config: &Config) -> Self {
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
    pub fn compress_message(&mut self, payload: Bytes) -> Result<(Bytes, bool), Error> {
        Ok((payload, false))
    }

    /// The payload as it is, RSV1 clear.
    pub fn compress_fragment(
        &mut self,
        payload: Bytes,
        _first: bool,
        _fin: bool,
    ) -> Result<(Bytes, bool), Error> {
        Ok((payload, false))
    }

    /// Refuses: a compressed frame cannot have been negotiated (§5.2).
    pub fn inflate(
        &mut self,
        _payload: &[u8],
        _out: &mut BytesMut,
        _fin: bool,
        _limit: usize,
    ) -> Result<(), ProtocolError> {
        Err(ProtocolError::ReservedBitsSet)
    }

    /// Never: a shared frame goes out in its plain form.
    pub fn take_prepared(&mut self, _bits: u8) -> bool {
        false
    }
}

/// Nothing to compress with: a prepared frame keeps only its plain form.
pub fn compress_once(_data: &[u8], _config: &DeflateConfig) -> Option<(Bytes, u8)> {
    None
}
