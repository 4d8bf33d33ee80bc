//! Plumbing shared by the text readers: byte counting for progress, and lines read with a length limit.
//!
//! Every text reader holds at most one record in memory, and a record is at most [`MAX_RECORD_BYTES`]:
//! a longer line is skipped without being buffered (the reader scans on to its end) and reported to the
//! caller with its length, so one enormous line costs a scan, not memory.

use std::io::{BufRead, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest record (line, JSON value, CSV record) a reader holds; a longer one is a dead letter.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// How much of a record too long to read is kept in its dead letter.
pub(super) const TOO_LONG_PREFIX: usize = 4096;

/// A reader that counts the bytes passing through it (for progress bars).
pub(super) struct Counting<R> {
    pub(super) inner: R,
    pub(super) count: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    pub(super) fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Counting {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One line of a [`BoundedLines`] reader.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The line's bytes, without its `\n` (or `\r\n`).
    Text(Vec<u8>),
    /// A line longer than the limit: its length in bytes and its first [`TOO_LONG_PREFIX`] bytes.
    TooLong { bytes: u64, prefix: Vec<u8> },
}

/// Lines of a byte stream, each at most `limit` bytes held; invalid UTF-8 is the caller's business.
pub(super) struct BoundedLines<R> {
    reader: R,
    limit: usize,
    /// Number of the line returned last (1-based).
    pub(super) line_no: u64,
}

impl<R: BufRead> BoundedLines<R> {
    pub(super) fn new(reader: R, limit: usize) -> Self {
        BoundedLines {
            reader,
            limit,
            line_no: 0,
        }
    }

    /// The next line, `None` at the end of the stream.
    pub(super) fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let mut total: u64 = 0;
        let mut seen_any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let room = self.limit.saturating_sub(buf.len()).min(take);
            buf.extend_from_slice(&chunk[..room]);
            total += take as u64;
            self.reader.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        self.line_no += 1;
        if buf.last() == Some(&b'\r') && total as usize == buf.len() {
            buf.pop();
            total -= 1;
        }
        if total as usize > self.limit {
            buf.truncate(TOO_LONG_PREFIX);
            return Ok(Some(Line::TooLong {
                bytes: total,
                prefix: buf,
            }));
        }
        Ok(Some(Line::Text(buf)))
    }
}

/// The reason given for a record longer than [`MAX_RECORD_BYTES`].
pub(super) fn too_long_reason(bytes: u64) -> String {
    format!(
        "record of {bytes} bytes is longer than the limit of {} MiB: not read",
        MAX_RECORD_BYTES / (1024 * 1024)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_over_the_limit_is_skipped_not_held() {
        let text = format!("ab\r\n{}\ncd", "x".repeat(100));
        let mut lines =
            BoundedLines::new(std::io::BufReader::with_capacity(8, text.as_bytes()), 10);
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"ab".to_vec())));
        match lines.next_line().unwrap() {
            Some(Line::TooLong { bytes, prefix }) => {
                assert_eq!(bytes, 100);
                assert_eq!(prefix.len(), 10, "only the limit was held");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(lines.next_line().unwrap(), Some(Line::Text(b"cd".to_vec())));
        assert_eq!(lines.line_no, 3);
        assert_eq!(lines.next_line().unwrap(), None);
    }
}
