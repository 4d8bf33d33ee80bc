//! The on-disk record batch: what one append writes, checksummed as a unit.
//!
//! A batch is a 40-byte header followed by its records, all little-endian:
//!
//! ```text
//!  0 magic        u32  "SSL1"
//!  4 length       u32  bytes of the whole batch, header included
//!  8 crc32c       u32  CRC32C of bytes 12..length
//! 12 base_offset  u64  offset of the first record
//! 20 count        u32  records in the batch (offsets base_offset .. base_offset + count)
//! 24 first_ts     i64  timestamp of the first record, ms since the epoch
//! 32 max_ts       i64  largest timestamp in the batch
//! 40 records      count × [timestamp i64][key length i32, -1 = no key][key][value length u32][value]
//! ```
//!
//! The checksum covers everything after itself, so a torn write (a batch cut short by a crash) and a flipped
//! bit both fail [`decode_header`]'s or [`check_body`]'s checks; recovery truncates the segment there.

/// Bytes of a batch header.
pub const HEADER_LEN: usize = 40;
const MAGIC: u32 = u32::from_le_bytes(*b"SSL1");
/// Largest batch accepted on read; anything longer is a corrupt length field.
pub const MAX_BATCH_LEN: usize = 256 * 1024 * 1024;

/// A record to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// Event time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// Optional key (partitioning, idempotency, compaction later).
    pub key: Option<Vec<u8>>,
    /// The payload.
    pub value: Vec<u8>,
}

impl NewRecord {
    /// A keyless record.
    pub fn new(timestamp_ms: i64, value: impl Into<Vec<u8>>) -> NewRecord {
        NewRecord {
            timestamp_ms,
            key: None,
            value: value.into(),
        }
    }
}

/// A record read back, with its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the partition, dense from 0.
    pub offset: u64,
    /// Event time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The payload.
    pub value: Vec<u8>,
}

/// The decoded header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Whole batch length in bytes.
    pub length: u32,
    /// Checksum of bytes 12..length.
    pub crc: u32,
    /// First offset.
    pub base_offset: u64,
    /// Number of records.
    pub count: u32,
    /// First record's timestamp.
    pub first_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
}

impl BatchHeader {
    /// One past the last offset of the batch.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Fewer bytes than the header or the length field says (a torn write).
    Truncated,
    /// Magic, length, checksum or record layout is wrong (corruption).
    Corrupt(&'static str),
}

/// Encodes `records` as one batch starting at `base_offset`, appending it to `out`.
pub fn encode_batch(base_offset: u64, records: &[NewRecord], out: &mut Vec<u8>) -> BatchHeader {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let first_ts = records.first().map_or(0, |r| r.timestamp_ms);
    let mut max_ts = i64::MIN;
    for r in records {
        max_ts = max_ts.max(r.timestamp_ms);
        out.extend_from_slice(&r.timestamp_ms.to_le_bytes());
        match &r.key {
            Some(k) => {
                out.extend_from_slice(&(k.len() as i32).to_le_bytes());
                out.extend_from_slice(k);
            }
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
        out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.value);
    }
    if records.is_empty() {
        max_ts = 0;
    }
    let length = (out.len() - start) as u32;
    let h = &mut out[start..start + HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&length.to_le_bytes());
    h[12..20].copy_from_slice(&base_offset.to_le_bytes());
    h[20..24].copy_from_slice(&(records.len() as u32).to_le_bytes());
    h[24..32].copy_from_slice(&first_ts.to_le_bytes());
    h[32..40].copy_from_slice(&max_ts.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 12..]);
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    BatchHeader {
        length,
        crc,
        base_offset,
        count: records.len() as u32,
        first_ts,
        max_ts,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes a header from the first [`HEADER_LEN`] bytes of `buf` (the checksum is checked later, over the body).
pub fn decode_header(buf: &[u8]) -> Result<BatchHeader, Invalid> {
    if buf.len() < HEADER_LEN {
        return Err(Invalid::Truncated);
    }
    if u32_at(buf, 0) != MAGIC {
        return Err(Invalid::Corrupt("bad magic"));
    }
    let length = u32_at(buf, 4);
    if (length as usize) < HEADER_LEN || length as usize > MAX_BATCH_LEN {
        return Err(Invalid::Corrupt("impossible batch length"));
    }
    Ok(BatchHeader {
        length,
        crc: u32_at(buf, 8),
        base_offset: u64_at(buf, 12),
        count: u32_at(buf, 20),
        first_ts: u64_at(buf, 24) as i64,
        max_ts: u64_at(buf, 32) as i64,
    })
}

/// Checks a whole batch (`batch` is `header.length` bytes, header included): checksum and record layout.
pub fn check_body(header: &BatchHeader, batch: &[u8]) -> Result<(), Invalid> {
    if batch.len() < header.length as usize {
        return Err(Invalid::Truncated);
    }
    let batch = &batch[..header.length as usize];
    if crc32c::crc32c(&batch[12..]) != header.crc {
        return Err(Invalid::Corrupt("checksum mismatch"));
    }
    let mut n = 0;
    for r in RecordIter::new(header, batch) {
        r?;
        n += 1;
    }
    if n != header.count {
        return Err(Invalid::Corrupt("record count mismatch"));
    }
    Ok(())
}

/// Iterates the records of a checked batch.
pub struct RecordIter<'a> {
    batch: &'a [u8],
    pos: usize,
    next_offset: u64,
    left: u32,
}

impl<'a> RecordIter<'a> {
    /// Records of `batch` (header included).
    pub fn new(header: &BatchHeader, batch: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            batch: &batch[..header.length as usize],
            pos: HEADER_LEN,
            next_offset: header.base_offset,
            left: header.count,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.batch.len())
            .ok_or(Invalid::Corrupt("record runs past its batch"))?;
        let s = &self.batch[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<Record, Invalid>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut one = || -> Result<Record, Invalid> {
            let ts = i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"));
            let key_len = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
            let key = match key_len {
                -1 => None,
                n if n >= 0 => Some(self.take(n as usize)?.to_vec()),
                _ => return Err(Invalid::Corrupt("negative key length")),
            };
            let value_len = u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
            let value = self.take(value_len as usize)?.to_vec();
            let offset = self.next_offset;
            self.next_offset += 1;
            Ok(Record {
                offset,
                timestamp_ms: ts,
                key,
                value,
            })
        };
        Some(one())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<NewRecord> {
        vec![
            NewRecord::new(10, "a"),
            NewRecord {
                timestamp_ms: 5,
                key: Some(b"k".to_vec()),
                value: vec![],
            },
        ]
    }

    #[test]
    fn batches_round_trip() {
        let mut buf = Vec::new();
        let h = encode_batch(7, &sample(), &mut buf);
        assert_eq!(h.length as usize, buf.len());
        assert_eq!((h.first_ts, h.max_ts, h.end_offset()), (10, 10, 9));
        let d = decode_header(&buf).unwrap();
        assert_eq!(d, h);
        check_body(&d, &buf).unwrap();
        let rs: Vec<Record> = RecordIter::new(&d, &buf).map(Result::unwrap).collect();
        assert_eq!(rs[1].offset, 8);
        assert_eq!(rs[1].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(rs[0].value, b"a");
    }

    #[test]
    fn torn_and_flipped_batches_are_rejected() {
        let mut buf = Vec::new();
        let h = encode_batch(0, &sample(), &mut buf);
        assert_eq!(decode_header(&buf[..20]), Err(Invalid::Truncated));
        assert_eq!(
            check_body(&h, &buf[..buf.len() - 1]),
            Err(Invalid::Truncated)
        );
        for i in 12..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let rejected = match decode_header(&bad) {
                Err(_) => true,
                Ok(h2) => check_body(&h2, &bad).is_err(),
            };
            assert!(rejected, "a flip at byte {i} went unnoticed");
        }
    }
}
