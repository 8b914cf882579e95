//! Big-endian readers and writers for the header's fields. Readers never panic: every
//! shortfall becomes a header error naming the field.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result};

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Error::MalformedHeader(field))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A `str16`: u16 length, then that many bytes of UTF-8 without NUL, whose length
    /// must lie in `min..=max`.
    pub(crate) fn str16(&mut self, min: usize, max: usize, field: &'static str) -> Result<String> {
        let len = usize::from(self.u16(field)?);
        if len < min || len > max {
            return Err(Error::MalformedHeader(field));
        }
        let raw = self.take(len, field)?;
        if raw.contains(&0) {
            return Err(Error::MalformedHeader(field));
        }
        let text = core::str::from_utf8(raw).map_err(|_| Error::MalformedHeader(field))?;
        Ok(String::from(text))
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a `str16`; the caller has already checked the length against the format's
/// limits, which are all far below `u16::MAX`.
pub(crate) fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    put_u16(out, len);
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}
