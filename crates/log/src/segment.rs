//! One segment file of a partition, with its sparse offset and time indexes.
//!
//! A segment is named after its first offset (`00000000000000000042.log`) and holds whole batches back to back.
//! The offset index maps an offset to the byte position of the batch holding it, one entry every
//! [`INDEX_INTERVAL_BYTES`]; the time index maps a timestamp to the first offset at or after it, one entry
//! whenever a batch raises the segment's largest timestamp past the interval. Both live in memory; a sealed
//! segment writes them next to itself (`.index`, `.timeindex`) so reopening does not rescan it. The active
//! segment is always rescanned on open: its tail is where a crash leaves torn or unsynced bytes, and
//! [`Segment::open`] cuts it back to the last batch whose checksum holds.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{LogError, Result};
use crate::record::{self, BatchHeader, HEADER_LEN, Invalid, NewRecord, Record, RecordIter};

/// Bytes of log between two offset index entries.
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
const INDEX_MAGIC: &[u8; 8] = b"SSLIDX01";

/// What recovery cut from a segment's tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position where the last good batch ends (the new file length).
    pub at: u64,
    /// Bytes removed.
    pub bytes: u64,
    /// Why the first removed batch was rejected.
    pub reason: String,
}

/// A segment: its file and what is known about its contents.
pub(crate) struct Segment {
    pub(crate) base_offset: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<File>,
    /// One past the last offset stored.
    pub(crate) end_offset: u64,
    /// Bytes of whole batches.
    pub(crate) size: u64,
    /// Largest record timestamp (`i64::MIN` when empty).
    pub(crate) max_timestamp: i64,
    /// (offset of a batch's first record, byte position of the batch), ascending.
    pub(crate) offset_index: Vec<(u64, u64)>,
    /// (timestamp, offset of the first record of the batch that reached it), both ascending.
    pub(crate) time_index: Vec<(i64, u64)>,
    bytes_since_index: u64,
}

pub(crate) fn segment_path(dir: &Path, base_offset: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}"))
}

impl Segment {
    /// Creates an empty segment file (synced with its directory entry).
    pub(crate) fn create(dir: &Path, base_offset: u64) -> Result<Segment> {
        let path = segment_path(dir, base_offset, "log");
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(LogError::io(&path))?;
        file.sync_all().map_err(LogError::io(&path))?;
        sync_dir(dir)?;
        Ok(Segment::empty(base_offset, path, file))
    }

    fn empty(base_offset: u64, path: PathBuf, file: File) -> Segment {
        Segment {
            base_offset,
            path,
            file: Arc::new(file),
            end_offset: base_offset,
            size: 0,
            max_timestamp: i64::MIN,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: 0,
        }
    }

    /// Opens a segment. A sealed segment with valid index files trusts them; otherwise the file is scanned,
    /// every batch verified, and a bad tail truncated (and reported).
    pub(crate) fn open(
        dir: &Path,
        base_offset: u64,
        sealed: bool,
    ) -> Result<(Segment, Option<Truncation>)> {
        let path = segment_path(dir, base_offset, "log");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(LogError::io(&path))?;
        let len = file.metadata().map_err(LogError::io(&path))?.len();
        let mut seg = Segment::empty(base_offset, path, file);
        if sealed && seg.load_indexes(dir, len) {
            return Ok((seg, None));
        }
        let truncation = seg.scan(len)?;
        Ok((seg, truncation))
    }

    /// Reads every batch from the start, rebuilding the indexes; truncates at the first bad batch.
    fn scan(&mut self, len: u64) -> Result<Option<Truncation>> {
        let mut pos = 0u64;
        let file = self.file.clone();
        let mut reader = std::io::BufReader::with_capacity(1 << 20, &*file);
        let mut buf = Vec::new();
        let mut bad: Option<String> = None;
        while pos < len {
            buf.resize(HEADER_LEN, 0);
            if len - pos < HEADER_LEN as u64 || reader.read_exact(&mut buf).is_err() {
                bad = Some("torn batch header".into());
                break;
            }
            let header = match record::decode_header(&buf) {
                Ok(h) => h,
                Err(e) => {
                    bad = Some(describe(e));
                    break;
                }
            };
            if header.base_offset != self.end_offset {
                bad = Some(format!(
                    "batch starts at offset {} where {} was expected",
                    header.base_offset, self.end_offset
                ));
                break;
            }
            if pos + u64::from(header.length) > len {
                bad = Some("torn batch (shorter than its length)".into());
                break;
            }
            buf.resize(header.length as usize, 0);
            reader
                .read_exact(&mut buf[HEADER_LEN..])
                .map_err(LogError::io(&self.path))?;
            if let Err(e) = record::check_body(&header, &buf) {
                bad = Some(describe(e));
                break;
            }
            self.note_batch(&header, pos);
            pos += u64::from(header.length);
        }
        drop(reader);
        let Some(reason) = bad else {
            return Ok(None);
        };
        self.file.set_len(pos).map_err(LogError::io(&self.path))?;
        self.file.sync_all().map_err(LogError::io(&self.path))?;
        Ok(Some(Truncation {
            path: self.path.clone(),
            at: pos,
            bytes: len - pos,
            reason,
        }))
    }

    /// Records a batch written (or found) at byte `pos` in the indexes and counters.
    fn note_batch(&mut self, h: &BatchHeader, pos: u64) {
        if self.offset_index.is_empty() || self.bytes_since_index >= INDEX_INTERVAL_BYTES {
            self.offset_index.push((h.base_offset, pos));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += u64::from(h.length);
        if h.count > 0 && h.max_ts > self.max_timestamp {
            self.time_index.push((h.max_ts, h.base_offset));
            self.max_timestamp = h.max_ts;
        }
        self.end_offset = h.end_offset();
        self.size = pos + u64::from(h.length);
    }

    /// Appends an encoded batch (not synced: the partition's group commit syncs).
    pub(crate) fn append(&mut self, header: &BatchHeader, bytes: &[u8]) -> Result<()> {
        (&*self.file)
            .write_all(bytes)
            .map_err(LogError::io(&self.path))?;
        let pos = self.size;
        self.note_batch(header, pos);
        Ok(())
    }

    /// Byte position of the batch holding `offset` (or the last indexed batch before it).
    pub(crate) fn position_for(&self, offset: u64) -> u64 {
        match self.offset_index.partition_point(|&(o, _)| o <= offset) {
            0 => 0,
            i => self.offset_index[i - 1].1,
        }
    }

    /// The offset to start scanning from for the first record with timestamp ≥ `ts`.
    pub(crate) fn offset_for_time(&self, ts: i64) -> Option<u64> {
        let i = self.time_index.partition_point(|&(t, _)| t < ts);
        self.time_index.get(i).map(|&(_, o)| o)
    }

    /// Writes the index files of a segment that will not grow any more, and syncs the segment.
    pub(crate) fn seal(&self, dir: &Path) -> Result<()> {
        self.file.sync_all().map_err(LogError::io(&self.path))?;
        let mut idx = Vec::with_capacity(24 + self.offset_index.len() * 16);
        idx.extend_from_slice(INDEX_MAGIC);
        idx.extend_from_slice(&self.size.to_le_bytes());
        idx.extend_from_slice(&self.end_offset.to_le_bytes());
        for &(o, p) in &self.offset_index {
            idx.extend_from_slice(&o.to_le_bytes());
            idx.extend_from_slice(&p.to_le_bytes());
        }
        let mut tidx = Vec::with_capacity(self.time_index.len() * 16);
        for &(t, o) in &self.time_index {
            tidx.extend_from_slice(&t.to_le_bytes());
            tidx.extend_from_slice(&o.to_le_bytes());
        }
        // The checksum over both files' contents makes a half-written pair detectable.
        let crc = crc32c::crc32c_append(crc32c::crc32c(&idx), &tidx);
        idx.extend_from_slice(&crc.to_le_bytes());
        write_synced(&segment_path(dir, self.base_offset, "timeindex"), &tidx)?;
        write_synced(&segment_path(dir, self.base_offset, "index"), &idx)?;
        sync_dir(dir)
    }

    /// Loads index files written by [`seal`](Self::seal); false when missing or not matching the segment.
    fn load_indexes(&mut self, dir: &Path, len: u64) -> bool {
        let (Ok(idx), Ok(tidx)) = (
            std::fs::read(segment_path(dir, self.base_offset, "index")),
            std::fs::read(segment_path(dir, self.base_offset, "timeindex")),
        ) else {
            return false;
        };
        if idx.len() < 28 || &idx[..8] != INDEX_MAGIC || (idx.len() - 28) % 16 != 0 {
            return false;
        }
        let (body, crc) = idx.split_at(idx.len() - 4);
        if crc32c::crc32c_append(crc32c::crc32c(body), &tidx).to_le_bytes() != crc {
            return false;
        }
        let le = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let (size, end) = (le(&body[8..16]), le(&body[16..24]));
        if size != len || tidx.len() % 16 != 0 {
            return false;
        }
        self.size = size;
        self.end_offset = end;
        self.offset_index = body[24..]
            .chunks(16)
            .map(|c| (le(&c[..8]), le(&c[8..])))
            .collect();
        self.time_index = tidx
            .chunks(16)
            .map(|c| (le(&c[..8]) as i64, le(&c[8..])))
            .collect();
        self.max_timestamp = self.time_index.last().map_or(i64::MIN, |t| t.0);
        true
    }

    /// Deletes the segment's files.
    pub(crate) fn delete(&self, dir: &Path) -> Result<()> {
        for ext in ["index", "timeindex", "log"] {
            let p = segment_path(dir, self.base_offset, ext);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::Io { path: p, source: e }),
            }
        }
        Ok(())
    }
}

fn describe(e: Invalid) -> String {
    match e {
        Invalid::Truncated => "torn batch (shorter than its length)".into(),
        Invalid::Corrupt(why) => why.into(),
    }
}

/// The readable bytes of a segment at one moment: below `limit_pos` they never change.
pub(crate) struct SegmentSpan {
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    /// Where to start: the indexed batch at or before the first wanted offset.
    pub(crate) pos: u64,
    pub(crate) limit_pos: u64,
}

/// What a read wants.
pub(crate) struct ReadLimits {
    /// First offset wanted.
    pub(crate) offset: u64,
    /// Never return this offset or later (not yet durable).
    pub(crate) high_watermark: u64,
    pub(crate) max_records: usize,
    /// Stop after about this many batch bytes (at least one batch is read).
    pub(crate) max_bytes: usize,
}

impl SegmentSpan {
    /// Appends the span's records within `limits` to `out`, verifying each batch read.
    pub(crate) fn read_into(&self, limits: &ReadLimits, out: &mut Vec<Record>) -> Result<()> {
        let (file, path, limit_pos) = (&*self.file, self.path.as_path(), self.limit_pos);
        let ReadLimits {
            offset,
            high_watermark,
            max_records,
            max_bytes,
        } = *limits;
        let mut pos = self.pos;
        let mut header_buf = [0u8; HEADER_LEN];
        let mut buf = Vec::new();
        let mut bytes = 0usize;
        while pos < limit_pos && out.len() < max_records && (bytes == 0 || bytes < max_bytes) {
            file.read_exact_at(&mut header_buf, pos)
                .map_err(LogError::io(path))?;
            let header = record::decode_header(&header_buf).map_err(|e| LogError::Corrupt {
                path: path.to_path_buf(),
                position: pos,
                reason: describe(e),
            })?;
            if header.base_offset >= high_watermark {
                break;
            }
            let len = header.length as usize;
            if header.end_offset() > offset {
                buf.resize(len, 0);
                file.read_exact_at(&mut buf, pos)
                    .map_err(LogError::io(path))?;
                record::check_body(&header, &buf).map_err(|e| LogError::Corrupt {
                    path: path.to_path_buf(),
                    position: pos,
                    reason: describe(e),
                })?;
                for r in RecordIter::new(&header, &buf) {
                    let r = r.expect("checked batch");
                    if r.offset >= offset && r.offset < high_watermark && out.len() < max_records {
                        out.push(r);
                    }
                }
                bytes += len;
            }
            pos += len as u64;
        }
        Ok(())
    }
}

/// Encodes records for [`Segment::append`].
pub(crate) fn encode(base_offset: u64, records: &[NewRecord], buf: &mut Vec<u8>) -> BatchHeader {
    buf.clear();
    record::encode_batch(base_offset, records, buf)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(LogError::io(path))?;
    f.write_all(bytes).map_err(LogError::io(path))?;
    f.sync_all().map_err(LogError::io(path))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(LogError::io(dir))
}
