//! Inspect: what an envelope says about itself, without any key.

use crate::error::Result;
use crate::header::Header;
use crate::layout::Layout;

/// A parsed header plus, when the bytes include the payload, its geometry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The header (unauthenticated: nothing here is trusted before a DEK verifies it).
    pub header: Header,
    /// Payload bytes present after the header.
    pub payload_len: u64,
    /// Chunk count and plaintext length, when `payload_len` is one a complete
    /// envelope can have; `None` for a bare header or a truncated or padded file.
    pub layout: Option<Layout>,
}

/// Inspects a bare header or a whole envelope.
pub fn inspect(bytes: &[u8]) -> Result<Inspection> {
    let header = Header::parse(bytes)?;
    let payload_len = (bytes.len() - header.header_len()) as u64;
    let layout = if payload_len == 0 {
        None
    } else {
        Layout::new(&header, bytes.len() as u64).ok()
    };
    Ok(Inspection {
        header,
        payload_len,
        layout,
    })
}
