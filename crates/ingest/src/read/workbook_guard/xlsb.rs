//! `.xlsb` checks: the binary parts calamine reads, walked record by record as calamine walks them.
//!
//! A record is a type (1-2 bytes), a length (1-4 bytes, up to 256 MiB) and its data; calamine grows
//! a buffer to the declared length before reading the data, so every length calamine will read is
//! checked against [`Limits::xlsb_record_bytes`]. Sheets, shared strings and the workbook part are
//! read record after record; styles are read by a loop that skips unknown record types without
//! their data, which [`check_styles`] follows byte for byte. Every part a sheet relationship may
//! point to is checked, so which sheet calamine reads needs no name matching.

use std::io::{BufReader, ErrorKind, Read};

use super::{
    Limits, Parts, Refusal, Refused, Relationships, check_memory, refusal_of,
    shared_strings_estimate, xml_scan,
};

/// Shared-string items (`BrtSSTItem`).
const SST_ITEM: u16 = 0x0013;
/// Defined names (`BrtName`), kept by calamine.
const NAME: u16 = 0x0027;

/// Checks an `.xlsb`: every part a sheet may be read from, so any sheet may then be read.
pub(super) fn check(parts: &mut Parts<'_>) -> Result<(), Refused> {
    let limits = parts.limits();
    let sst = parts.resolve("xl/sharedStrings.bin");
    walk_part(parts, &sst, limits.shared_strings_memory, |walk| {
        let estimate = shared_strings_estimate(0, walk.count(SST_ITEM), walk.bytes);
        check_memory(estimate, limits.shared_strings_memory)
    })
    .map_err(|r| Refused::new(format!("the shared strings ({sst})"), r))?;

    let styles = parts.resolve("xl/styles.bin");
    check_styles(parts, &styles).map_err(|r| Refused::new(format!("part {styles}"), r))?;

    let mut rels = Relationships::new(limits.metadata_elements);
    let rels_name = "xl/_rels/workbook.bin.rels";
    let xml = parts.xml_limits(&[]);
    parts
        .scan_xml(rels_name, limits.metadata_bytes, xml, &mut rels)
        .map_err(|r| Refused::new(format!("part {rels_name}"), r))?;

    let workbook = parts.resolve("xl/workbook.bin");
    walk_part(parts, &workbook, limits.metadata_bytes, |walk| {
        too_many(walk.count(NAME), "defined names", limits.metadata_elements)
    })
    .map_err(|r| Refused::new(format!("part {workbook}"), r))?;

    for (target, _) in rels.map.values() {
        let path = format!("xl/{}", xml_scan::unescape(target.as_bytes()));
        let folder = path.split('/').nth(1).unwrap_or_default();
        if !matches!(folder, "worksheets" | "chartsheets" | "dialogsheets") {
            continue;
        }
        let name = parts.resolve(&path);
        walk_part(parts, &name, limits.sheet_bytes, |_| Ok(()))
            .map_err(|r| Refused::new(format!("sheet part {name}"), r))?;
    }
    Ok(())
}

fn too_many(count: u64, what: &'static str, limit: u64) -> Result<(), Refusal> {
    if count > limit {
        return Err(Refusal::TooMany { what, limit });
    }
    Ok(())
}

/// Reads records from a part, as calamine's record iterator does.
struct Records<R: Read> {
    r: R,
    limit: u64,
    /// calamine's record buffer: it only grows, and keeps old bytes past a shorter record.
    buf: Vec<u8>,
}

impl<R: Read> Records<R> {
    /// The next byte; `None` at the end (or any read error calamine would stop on).
    fn byte(&mut self) -> Result<Option<u8>, Refusal> {
        let mut b = [0u8];
        match self.r.read_exact(&mut b) {
            Ok(()) => Ok(Some(b[0])),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(refusal_of(e)),
        }
    }

    /// A record type (calamine's `read_type`).
    fn typ(&mut self) -> Result<Option<u16>, Refusal> {
        let Some(b) = self.byte()? else {
            return Ok(None);
        };
        if b & 0x80 == 0 {
            return Ok(Some(u16::from(b)));
        }
        let Some(high) = self.byte()? else {
            return Ok(None);
        };
        Ok(Some(u16::from(b & 0x7F) + (u16::from(high & 0x7F) << 7)))
    }

    /// A record's length and data (calamine's `fill_buffer`), refusing a length over the limit
    /// before reading it. `None` at the end.
    fn data(&mut self, keep: bool) -> Result<Option<usize>, Refusal> {
        let Some(mut b) = self.byte()? else {
            return Ok(None);
        };
        let mut len = u64::from(b & 0x7F);
        for i in 1..4 {
            if b & 0x80 == 0 {
                break;
            }
            let Some(next) = self.byte()? else {
                return Ok(None);
            };
            b = next;
            len += u64::from(b & 0x7F) << (7 * i);
        }
        if len > self.limit {
            return Err(Refusal::TooMany {
                what: "bytes in one record",
                limit: self.limit,
            });
        }
        let len = len as usize;
        if !keep {
            let copied = std::io::copy(&mut (&mut self.r).take(len as u64), &mut std::io::sink())
                .map_err(refusal_of)?;
            return Ok((copied == len as u64).then_some(len));
        }
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        match self.r.read_exact(&mut self.buf[..len]) {
            Ok(()) => Ok(Some(len)),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(refusal_of(e)),
        }
    }

    /// The `u32` at the start of the buffer (calamine's `read_usize(&buf)`).
    fn leading_u32(&self) -> Option<u64> {
        let b = self.buf.get(..4)?;
        Some(u64::from(u32::from_le_bytes(b.try_into().ok()?)))
    }

    /// Skips records until one of type `want` (calamine's `next_skip_blocks` with no bounds).
    fn skip_to(&mut self, want: u16) -> Result<bool, Refusal> {
        loop {
            let Some(typ) = self.typ()? else {
                return Ok(false);
            };
            if self.data(false)?.is_none() {
                return Ok(false);
            }
            if typ == want {
                return Ok(true);
            }
        }
    }
}

/// What a sequential walk has seen so far.
struct Walk {
    /// Records by type, for the few types counted.
    sst_items: u64,
    names: u64,
    /// Bytes inflated.
    bytes: u64,
}

impl Walk {
    fn count(&self, typ: u16) -> u64 {
        match typ {
            SST_ITEM => self.sst_items,
            NAME => self.names,
            _ => 0,
        }
    }
}

/// Walks every record of part `name` in order, calling `check` after each.
fn walk_part(
    parts: &mut Parts<'_>,
    name: &str,
    max_bytes: u64,
    mut check: impl FnMut(&Walk) -> Result<(), Refusal>,
) -> Result<(), Refusal> {
    let limit = parts.limits().xlsb_record_bytes;
    let Some(part) = parts.open(name, max_bytes)? else {
        return Ok(());
    };
    let mut records = Records {
        r: BufReader::new(part),
        limit,
        buf: Vec::new(),
    };
    let mut walk = Walk {
        sst_items: 0,
        names: 0,
        bytes: 0,
    };
    while let Some(typ) = records.typ()? {
        if records.data(false)?.is_none() {
            break;
        }
        match typ {
            SST_ITEM => walk.sst_items += 1,
            NAME => walk.names += 1,
            _ => {}
        }
        walk.bytes = records.r.get_ref().total;
        check(&walk)?;
    }
    Ok(())
}

/// Follows calamine's styles loop: it reads only types until a number-format or cell-format list
/// begins, then that list's records.
fn check_styles(parts: &mut Parts<'_>, name: &str) -> Result<(), Refusal> {
    const BEGIN_FMTS: u16 = 0x0267;
    const FMT: u16 = 0x002C;
    const BEGIN_CELL_XFS: u16 = 0x0269;
    const XF: u16 = 0x002F;
    let limits: &Limits = parts.limits();
    let Some(part) = parts.open(name, limits.metadata_bytes)? else {
        return Ok(());
    };
    let mut records = Records {
        r: BufReader::new(part),
        limit: limits.xlsb_record_bytes,
        buf: Vec::new(),
    };
    while let Some(typ) = records.typ()? {
        let (item, last) = match typ {
            BEGIN_FMTS => (FMT, false),
            BEGIN_CELL_XFS => (XF, true),
            _ => continue,
        };
        if records.data(true)?.is_none() {
            return Ok(());
        }
        let Some(count) = records.leading_u32() else {
            return Ok(());
        };
        for _ in 0..count {
            if !records.skip_to(item)? {
                return Ok(());
            }
        }
        if last {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(bytes: &[u8], limit: u64) -> Records<&[u8]> {
        Records {
            r: bytes,
            limit,
            buf: Vec::new(),
        }
    }

    #[test]
    fn types_and_lengths_decode_as_calamine_reads_them() {
        // Type 0x0267 is two bytes (0xE7 0x04); length 200 is two bytes (0xC8 0x01).
        let mut bytes = vec![0xE7, 0x04, 0xC8, 0x01];
        bytes.extend([7u8; 200]);
        bytes.extend([0x13, 0x00]);
        let mut r = records(&bytes, 1000);
        assert_eq!(r.typ().unwrap(), Some(0x0267));
        assert_eq!(r.data(true).unwrap(), Some(200));
        assert_eq!(r.typ().unwrap(), Some(0x13));
        assert_eq!(r.data(false).unwrap(), Some(0));
        assert_eq!(r.typ().unwrap(), None);
    }

    #[test]
    fn a_record_longer_than_the_limit_is_refused_before_its_data() {
        // Length 0x0FFFFFFF (256 MiB) declared by four bytes, with no data behind it.
        let bytes = [0x01, 0xFF, 0xFF, 0xFF, 0x7F];
        let mut r = records(&bytes, 1 << 20);
        r.typ().unwrap();
        assert!(matches!(r.data(false), Err(Refusal::TooMany { .. })));
    }
}
