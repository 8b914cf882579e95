//! The pipes around the OpenPGP encoder, which is blocking code on a thread of its
//! own: plaintext pieces in from the decrypting task, encoded pieces out to the task
//! that writes the destination, each channel bounded so neither side runs ahead.

use bytes::Bytes;
use tokio::sync::mpsc;

/// Plaintext pieces in flight between the decryption and the OpenPGP encoder, and
/// encoded pieces between it and the destination (each at most about 1 MiB).
pub(super) const PIPE_DEPTH: usize = 4;
/// Bytes of OpenPGP output gathered into one piece for the destination.
pub(super) const PIPE_PIECE: usize = 256 << 10;

/// The OpenPGP encoder's input: plaintext pieces from the decrypting task.
pub(super) struct PipeReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl PipeReader {
    pub(super) fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The OpenPGP encoder's output: pieces for the writing task.
pub(super) struct PipeWriter(pub(super) mpsc::Sender<Bytes>);

impl std::io::Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::other("the destination stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
