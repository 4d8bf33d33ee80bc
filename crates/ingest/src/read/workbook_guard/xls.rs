//! `.xls` checks: calamine reads the whole compound file, copies its workbook stream, then parses
//! every sheet into dense ranges at open. This module caps the file size, follows the compound
//! file's sector chains as calamine does (a chain that loops would make it grow a buffer forever),
//! then walks the BIFF records of the workbook stream as calamine's parser does and estimates what
//! it builds: the shared strings, each sheet's cell list (sized up front by the declared
//! `DIMENSIONS` record), and the dense value and formula ranges spanning each sheet's cells.
//!
//! Formula text is estimated from its token bytes; calamine expands defined names and sheet names
//! in formulas, so a crafted file can still make that text larger than estimated (within the file
//! cap).

use std::fs::File;
use std::io::Read;

use super::{Limits, Refusal, Refused, check_memory};

const RESERVED_SECTORS: u32 = 0xFFFF_FFFA;
const DIFSECT: u32 = 0xFFFF_FFFC;
const ENDOFCHAIN: u32 = 0xFFFF_FFFE;

/// Checks an `.xls` file.
pub(super) fn check(mut file: File, limits: &Limits) -> Result<(), Refused> {
    let whole = |r| Refused::new("the workbook", r);
    let size = file
        .metadata()
        .map_err(|e| whole(Refusal::Inflate(e.to_string())))?;
    if size.len() > limits.xls_file_bytes {
        return Err(whole(Refusal::FileTooLarge {
            size: size.len(),
            limit: limits.xls_file_bytes,
        }));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| whole(Refusal::Inflate(e.to_string())))?;
    let cfb = Cfb::parse(&bytes).map_err(|r| Refused::new("the compound file", r))?;
    let Some(cfb) = cfb else {
        return Ok(());
    };
    let stream = cfb
        .stream(&bytes)
        .map_err(|r| Refused::new("the compound file", r))?;
    let Some(stream) = stream else {
        return Ok(());
    };
    let mut book = Book::new(limits.table_memory);
    book.check(&stream)
        .map_err(|r| Refused::new(book.part(), r))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u32s(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
}

/// The compound file's allocation tables, as calamine's reader builds them.
struct Cfb {
    header: usize,
    sector: usize,
    /// Highest sector id calamine accepts.
    max_id: u32,
    fats: Vec<u32>,
    dirs: Vec<(String, u32, u64)>,
    ministream: Vec<u8>,
    mini_fats: Vec<u32>,
}

fn looping(what: &str) -> Refusal {
    Refusal::Malformed(format!("has a {what} chain that loops back on itself"))
}

impl Cfb {
    /// `None` when calamine would reject the file itself (not a compound file, bad header).
    fn parse(bytes: &[u8]) -> Result<Option<Cfb>, Refusal> {
        const SIGNATURE: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";
        if bytes.len() < 512 || &bytes[..8] != SIGNATURE || u16_at(bytes, 32) != Some(6) {
            return Ok(None);
        }
        let sector = match u16_at(bytes, 30) {
            Some(9) => 512,
            Some(12) => 4096,
            _ => return Ok(None),
        };
        let field = |at| u32_at(bytes, at).unwrap_or(0);
        let mut cfb = Cfb {
            header: sector,
            sector,
            max_id: u32::try_from(bytes.len() / sector).unwrap_or(u32::MAX),
            fats: Vec::new(),
            dirs: Vec::new(),
            ministream: Vec::new(),
            mini_fats: Vec::new(),
        };
        let Some(fats) = cfb.fat_sectors(bytes, field(68))? else {
            return Ok(None);
        };
        for id in fats {
            cfb.fats.extend(u32s(cfb.get(bytes, id)));
        }
        let dirs = cfb.chain(bytes, field(48), u64::MAX, "directory")?;
        cfb.dirs = dirs.chunks_exact(128).map(directory(sector)).collect();
        let Some(&(_, root_start, root_len)) = cfb.dirs.first() else {
            return Ok(None);
        };
        if field(64) > 0 {
            cfb.ministream = cfb.chain(bytes, root_start, root_len, "mini stream")?;
            let len = u64::from(field(64)) * sector as u64;
            let minifat = cfb.chain(bytes, field(60), len, "mini allocation table")?;
            cfb.mini_fats = u32s(&minifat).collect();
        }
        Ok(Some(cfb))
    }

    /// The sector's bytes (shorter at the end of the file); empty beyond calamine's bound.
    fn get<'b>(&self, bytes: &'b [u8], id: u32) -> &'b [u8] {
        if id > self.max_id {
            return &[];
        }
        let start = (self.header + id as usize * self.sector).min(bytes.len());
        &bytes[start..(start + self.sector).min(bytes.len())]
    }

    /// The FAT sector ids listed by the header and the DIFAT chain. Refuses more than the file
    /// could need: calamine would concatenate them all into its table.
    fn fat_sectors(&self, bytes: &[u8], mut next: u32) -> Result<Option<Vec<u32>>, Refusal> {
        let sectors = u64::from(self.max_id) + 1;
        let per_sector = (self.sector / 4) as u64;
        let allowed = 2 * sectors.div_ceil(per_sector) + 109;
        let mut difat: Vec<u32> = u32s(&bytes[76..512]).collect();
        let mut hops = 0u64;
        while next < RESERVED_SECTORS {
            hops += 1;
            if hops > sectors || next > self.max_id {
                return Ok(None);
            }
            difat.extend(u32s(self.get(bytes, next)));
            let Some(last) = difat.pop() else {
                return Ok(None);
            };
            next = last;
            if difat.iter().filter(|&&id| id < DIFSECT).count() as u64 > allowed {
                return Err(Refusal::TooMany {
                    what: "allocation-table sectors for the file's size",
                    limit: allowed,
                });
            }
        }
        Ok(Some(difat.into_iter().filter(|&id| id < DIFSECT).collect()))
    }

    /// Follows a chain from `start` through the FAT, up to `len` bytes (calamine's `get_chain`).
    fn chain(&self, bytes: &[u8], start: u32, len: u64, what: &str) -> Result<Vec<u8>, Refusal> {
        let mut out = Vec::new();
        let mut id = start;
        let mut hops = 0u64;
        while id != ENDOFCHAIN {
            hops += 1;
            if hops > u64::from(self.max_id) + 2 {
                return Err(looping(what));
            }
            if id > self.max_id {
                break;
            }
            let sector = self.get(bytes, id);
            let take = sector
                .len()
                .min(len.saturating_sub(out.len() as u64) as usize);
            out.extend_from_slice(&sector[..take]);
            if out.len() as u64 >= len {
                break;
            }
            match self.fats.get(id as usize) {
                Some(&n) => id = n,
                None => break,
            }
        }
        Ok(out)
    }

    /// The `Workbook` (or `Book`) stream calamine parses, if any.
    fn stream(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>, Refusal> {
        let found = ["Workbook", "Book"].iter().find_map(|want| {
            self.dirs
                .iter()
                .find(|(name, ..)| name.eq_ignore_ascii_case(want))
        });
        let Some(&(_, start, len)) = found else {
            return Ok(None);
        };
        if len >= 4096 {
            return self.chain(bytes, start, len, "workbook stream").map(Some);
        }
        // A small stream lives in 64-byte mini sectors.
        let mut out = Vec::new();
        let mut id = start;
        while id != ENDOFCHAIN && (out.len() as u64) < len {
            let at = id as usize * 64;
            let Some(sector) = self.ministream.get(at..at + 64) else {
                return Err(Refusal::Malformed(
                    "has a workbook stream outside its mini stream".to_string(),
                ));
            };
            out.extend_from_slice(&sector[..64.min(len as usize - out.len())]);
            id = *self.mini_fats.get(id as usize).unwrap_or(&ENDOFCHAIN);
        }
        Ok(Some(out))
    }
}

/// A directory entry: name, first sector, length.
fn directory(sector: usize) -> impl Fn(&[u8]) -> (String, u32, u64) {
    move |d| {
        let units: Vec<u16> = d[..64]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let len = if sector == 512 {
            u64::from(u32_at(d, 120).unwrap_or(0))
        } else {
            u64::from_le_bytes(d[120..128].try_into().expect("8 bytes"))
        };
        (
            String::from_utf16_lossy(&units),
            u32_at(d, 116).unwrap_or(0),
            len,
        )
    }
}

/// A BIFF record and the `CONTINUE` records after it.
struct Record<'a> {
    typ: u16,
    data: &'a [u8],
    cont: std::collections::VecDeque<&'a [u8]>,
}

impl Record<'_> {
    fn next_continue(&mut self) -> bool {
        match self.cont.pop_front() {
            Some(c) => {
                self.data = c;
                true
            }
            None => false,
        }
    }

    /// Skips `len` bytes across continues; false where calamine fails.
    fn skip(&mut self, mut len: u64) -> bool {
        while len > 0 {
            if self.data.is_empty() && !self.next_continue() {
                return false;
            }
            let l = len.min(self.data.len() as u64);
            self.data = &self.data[l as usize..];
            len -= l;
        }
        true
    }
}

/// calamine's record iterator: stops (as calamine fails) at a record running past the stream.
fn records(mut stream: &[u8]) -> impl Iterator<Item = Record<'_>> {
    std::iter::from_fn(move || {
        let typ = u16_at(stream, 0)?;
        let len = usize::from(u16_at(stream, 2)?);
        let data = stream.get(4..4 + len)?;
        stream = &stream[4 + len..];
        let mut cont = std::collections::VecDeque::new();
        while stream.len() > 4 && u16_at(stream, 0) == Some(0x003C) {
            let len = usize::from(u16_at(stream, 2)?);
            cont.push_back(stream.get(4..4 + len)?);
            stream = &stream[4 + len..];
        }
        Some(Record { typ, data, cont })
    })
}

/// What calamine builds from the workbook stream, and how it is counted.
struct Book {
    limit: u64,
    /// Estimated heap bytes of each shared string (calamine clones one per `LABELSST` cell).
    strings: Vec<u32>,
    /// Memory calamine keeps: shared strings, then every sheet's ranges.
    held: u64,
    /// The largest data range: reading a sheet copies it.
    largest: u64,
    sheet: Option<String>,
}

/// Bytes calamine keeps per cell: `Cell<Data>` in the list, `Data` and `String` in the ranges.
const LIST_CELL: u64 = 40;
const LIST_FORMULA: u64 = 32;
const RANGE_CELL: u64 = 32;
const RANGE_FORMULA: u64 = 24;
/// Formula text per token byte (estimate: references and functions expand a few times).
const FORMULA_TEXT_PER_BYTE: u64 = 8;

/// Heap bytes of a string of `cch` characters: up to 3 UTF-8 bytes each, plus the allocation.
fn text_bytes(cch: u64) -> u64 {
    if cch == 0 { 0 } else { 3 * cch + 32 }
}

/// The positions and sizes of one sheet's cells.
#[derive(Default)]
struct Cells {
    count: u64,
    reserved: u64,
    text: u64,
    bounds: Option<(u32, u32, u32, u32)>,
}

impl Cells {
    fn push(&mut self, row: u32, col: u32, text: u64) {
        self.count += 1;
        self.text = self.text.saturating_add(text);
        let b = self.bounds.get_or_insert((row, row, col, col));
        *b = (b.0.min(row), b.1.max(row), b.2.min(col), b.3.max(col));
    }

    /// The dense range `Range::from_sparse` allocates: every cell of the bounding box.
    fn area(&self) -> u64 {
        self.bounds.map_or(0, |(r0, r1, c0, c1)| {
            u64::from(r1 - r0 + 1) * u64::from(c1 - c0 + 1)
        })
    }

    /// The list's capacity: the reservation, or twice the count as it grows by doubling.
    fn capacity(&self) -> u64 {
        self.reserved.max(self.count.saturating_mul(2))
    }
}

impl Book {
    fn new(limit: u64) -> Self {
        Book {
            limit,
            strings: Vec::new(),
            held: 0,
            largest: 0,
            sheet: None,
        }
    }

    fn part(&self) -> String {
        match &self.sheet {
            Some(name) => format!("sheet `{name}`"),
            None => "the workbook stream".to_string(),
        }
    }

    fn check(&mut self, stream: &[u8]) -> Result<(), Refusal> {
        let mut sheets = Vec::new();
        for mut r in records(stream) {
            match r.typ {
                // Encrypted: calamine refuses it before reading further.
                0x002F if u16_at(r.data, 0) != Some(0) => return Ok(()),
                0x0085 => {
                    if let Some(pos) = u32_at(r.data, 0) {
                        sheets.push((pos as usize, sheet_name(r.data)));
                    }
                }
                0x00FC => self.shared_strings(&mut r)?,
                0x000A => break,
                _ => {}
            }
        }
        for (pos, name) in sheets {
            self.sheet = Some(name);
            let Some(sheet) = stream.get(pos..) else {
                return Ok(());
            };
            self.check_sheet(sheet)?;
        }
        self.sheet = None;
        check_memory(self.held.saturating_add(self.largest), self.limit)
    }

    /// Follows calamine's `parse_sst`, counting the strings and their sizes.
    fn shared_strings(&mut self, r: &mut Record<'_>) -> Result<(), Refusal> {
        let Some(rest) = r.data.get(8..) else {
            return Ok(());
        };
        r.data = rest;
        self.strings.clear();
        let mut memory = 0u64;
        while !r.data.is_empty() || r.next_continue() {
            let Some(cch) = rich_string(r) else {
                break;
            };
            let text = text_bytes(cch);
            self.strings.push(u32::try_from(text).unwrap_or(u32::MAX));
            // A slot of 24 bytes (48 while the vector doubles) and the text; an earlier table is
            // still alive while this one is read.
            memory = memory.saturating_add(48 + text);
            check_memory(self.held.saturating_add(memory), self.limit)?;
        }
        self.held = memory;
        Ok(())
    }

    /// Follows calamine's loop over one sheet's records.
    fn check_sheet(&mut self, sheet: &[u8]) -> Result<(), Refusal> {
        let mut cells = Cells::default();
        let mut formulas = Cells::default();
        let mut formula_at = (0u32, 0u32);
        let (mut seen_bof, mut depth) = (false, 0u32);
        for r in records(sheet) {
            let d = r.data;
            let pos = || Some((u32::from(u16_at(d, 0)?), u32::from(u16_at(d, 2)?)));
            if depth > 0 {
                match r.typ {
                    0x0809 => depth += 1,
                    0x000A => depth -= 1,
                    _ => {}
                }
                continue;
            }
            match r.typ {
                0x0809 if seen_bof => depth += 1,
                0x0809 => seen_bof = true,
                0x0200 => {
                    let n = dimensions_cells(d);
                    cells.reserved = cells.reserved.max(cells.count.saturating_add(n));
                }
                0x0203 | 0x0205 | 0x027E => {
                    if let Some((row, col)) = pos() {
                        cells.push(row, col, 0);
                    }
                }
                0x0204 | 0x00D6 => {
                    if let (Some((row, col)), Some(cch)) = (pos(), u16_at(d, 6)) {
                        cells.push(row, col, text_bytes(u64::from(cch)));
                    }
                }
                0x0207 => {
                    let cch = u16_at(d, 0).unwrap_or(0);
                    cells.push(formula_at.0, formula_at.1, text_bytes(u64::from(cch)));
                }
                0x00FD => {
                    let index = u32_at(d, 6).and_then(|i| self.strings.get(i as usize));
                    if let (Some((row, col)), Some(&text)) = (pos(), index) {
                        cells.push(row, col, u64::from(text));
                    }
                }
                0x00BD => mul_rk(d, &mut cells),
                0x0006 => {
                    if let Some((row, col)) = pos().filter(|_| d.len() >= 20) {
                        formula_at = (row, col);
                        cells.push(row, col, 0);
                        let text = (d.len() as u64 - 20) * FORMULA_TEXT_PER_BYTE + 64;
                        formulas.push(row, col, text);
                    }
                }
                0x000A => break,
                _ => {}
            }
            self.check_growth(&cells, &formulas)?;
        }
        self.add_sheet(&cells, &formulas)
    }

    /// The lists grow cell by cell: refuse as soon as they pass the limit.
    fn check_growth(&self, cells: &Cells, formulas: &Cells) -> Result<(), Refusal> {
        let lists = cells.capacity().saturating_mul(LIST_CELL)
            + formulas.capacity().saturating_mul(LIST_FORMULA)
            + cells.text.saturating_add(formulas.text);
        check_memory(self.held.saturating_add(lists), self.limit)
    }

    /// calamine turns both lists into dense ranges (while the lists are alive), then keeps them.
    fn add_sheet(&mut self, cells: &Cells, formulas: &Cells) -> Result<(), Refusal> {
        let data_range = cells.area().saturating_mul(RANGE_CELL);
        let ranges = data_range
            .saturating_add(formulas.area().saturating_mul(RANGE_FORMULA))
            .saturating_add(cells.text)
            .saturating_add(formulas.text);
        let lists = cells.capacity().saturating_mul(LIST_CELL)
            + formulas.capacity().saturating_mul(LIST_FORMULA);
        check_memory(
            self.held.saturating_add(ranges).saturating_add(lists),
            self.limit,
        )?;
        self.held = self.held.saturating_add(ranges);
        self.largest = self.largest.max(data_range.saturating_add(cells.text));
        Ok(())
    }
}

/// Cells a `DIMENSIONS` record makes calamine reserve (its `u32` arithmetic wraps as in release).
fn dimensions_cells(d: &[u8]) -> u64 {
    let (rf, rl, mut cf, cl) = match d.len() {
        10 => (
            u32::from(u16_at(d, 0).unwrap_or(0)),
            u32::from(u16_at(d, 2).unwrap_or(0)),
            u32::from(u16_at(d, 4).unwrap_or(0)),
            u32::from(u16_at(d, 6).unwrap_or(0)),
        ),
        14 | 16 => (
            u32_at(d, 0).unwrap_or(0),
            u32_at(d, 4).unwrap_or(0),
            u32::from(u16_at(d, 8).unwrap_or(0)),
            u32::from(u16_at(d, 10).unwrap_or(0)),
        ),
        _ => return 0,
    };
    if 0xFF < cf || cl < cf {
        cf = 0;
    }
    if rl == 0 || cl == 0 {
        return 1;
    }
    let rows = u64::from((rl - 1).wrapping_sub(rf).wrapping_add(1));
    let cols = u64::from((cl - 1).wrapping_sub(cf).wrapping_add(1));
    rows.saturating_mul(cols)
}

/// `MULRK`: one row, consecutive columns.
fn mul_rk(d: &[u8], cells: &mut Cells) {
    let (Some(row), Some(first), Some(last)) = (
        u16_at(d, 0),
        u16_at(d, 2),
        u16_at(d, d.len().saturating_sub(2)),
    ) else {
        return;
    };
    let n = d.len().saturating_sub(6) / 6;
    if last < first || usize::from(last - first) + 1 != n {
        return;
    }
    for i in 0..n {
        cells.push(u32::from(row), u32::from(first) + i as u32, 0);
    }
}

/// Follows calamine's `read_rich_extended_string`; the string's length in characters, or
/// `None` where calamine fails.
fn rich_string(r: &mut Record<'_>) -> Option<u64> {
    if r.data.is_empty() {
        return Some(0);
    }
    let cch = u64::from(u16_at(r.data, 0)?);
    let flags = *r.data.get(2)?;
    r.data = &r.data[3..];
    let mut runs = 0u64;
    if flags & 0x8 != 0 {
        runs = u64::from(u16_at(r.data, 0)?);
        r.data = &r.data[2..];
    }
    let mut ext = 0u64;
    if flags & 0x4 != 0 {
        ext = u64::from(u32_at(r.data, 0)?);
        r.data = &r.data[4..];
    }
    let mut wide = flags & 0x1 != 0;
    let mut left = cch;
    while left > 0 {
        let per = if wide { 2 } else { 1 };
        let l = left.min((r.data.len() / per) as u64);
        r.data = &r.data[l as usize * per..];
        left -= l;
        if left > 0 {
            if !r.next_continue() {
                return None;
            }
            wide = *r.data.first()? & 0x1 != 0;
            r.data = &r.data[1..];
        }
    }
    (r.skip(runs * 4) && r.skip(ext)).then_some(cch)
}

/// A `BOUNDSHEET` record's sheet name (for messages).
fn sheet_name(d: &[u8]) -> String {
    let cch = usize::from(d.get(6).copied().unwrap_or(0));
    let wide = d.get(7).is_some_and(|f| f & 1 != 0);
    let chars = d.get(8..).unwrap_or_default();
    if wide {
        let units: Vec<u16> = chars
            .chunks_exact(2)
            .take(cch)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        chars.iter().take(cch).map(|&b| char::from(b)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(typ: u16, data: &[u8]) -> Vec<u8> {
        let mut r = typ.to_le_bytes().to_vec();
        r.extend((data.len() as u16).to_le_bytes());
        r.extend(data);
        r
    }

    fn number(row: u16, col: u16) -> Vec<u8> {
        let mut d = row.to_le_bytes().to_vec();
        d.extend(col.to_le_bytes());
        d.extend([0u8; 10]);
        record(0x0203, &d)
    }

    /// A workbook stream: globals with one sheet, then the sheet's records.
    fn stream(sheet: &[Vec<u8>]) -> Vec<u8> {
        let bof = record(0x0809, &[0, 6, 0x10, 0, 0, 0, 0, 0]);
        let mut bound = Vec::new();
        let globals_len = bof.len() + 4 + 12 + 4;
        bound.extend((globals_len as u32).to_le_bytes());
        bound.extend([0, 0, 4, 0, b'D', b'a', b't', b'a']);
        let mut s = bof.clone();
        s.extend(record(0x0085, &bound));
        s.extend(record(0x000A, &[]));
        assert_eq!(s.len(), globals_len);
        s.extend(bof);
        for r in sheet {
            s.extend(r);
        }
        s.extend(record(0x000A, &[]));
        s
    }

    #[test]
    fn a_far_cell_makes_the_dense_range_too_large() {
        let far = stream(&[number(0, 0), number(65_535, 255)]);
        let err = Book::new(160 << 20).check(&far).unwrap_err();
        assert!(matches!(err, Refusal::Memory { .. }), "{err}");
        let near = stream(&[number(0, 0), number(999, 7)]);
        Book::new(160 << 20).check(&near).unwrap();
    }

    #[test]
    fn a_lying_dimensions_record_is_refused_before_calamine_reserves_it() {
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend(u32::MAX.to_le_bytes());
        dims.extend([0, 0, 0, 1, 0, 0]);
        let lie = stream(&[record(0x0200, &dims), number(0, 0)]);
        let mut book = Book::new(160 << 20);
        assert!(matches!(book.check(&lie), Err(Refusal::Memory { .. })));
        assert_eq!(book.part(), "sheet `Data`");
    }

    #[test]
    fn rich_strings_are_read_across_continue_records() {
        // Two strings: "ab" split over a CONTINUE (with its own flags byte), then "".
        let data = [2, 0, 0, b'a'];
        let cont = [0, b'b', 0, 0, 0];
        let mut r = Record {
            typ: 0x00FC,
            data: &data,
            cont: [&cont[..]].into_iter().collect(),
        };
        assert_eq!(rich_string(&mut r), Some(2));
        assert_eq!(rich_string(&mut r), Some(0));
        assert!(r.data.is_empty());
    }
}
