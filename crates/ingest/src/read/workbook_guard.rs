//! Checks a workbook before calamine opens it, so a hostile or broken file is refused with an error
//! instead of aborting the process on a failed allocation.
//!
//! calamine reads some parts of a workbook whole: the shared strings and styles of `.xlsx`/`.xlsb`
//! at open, and for `.xls` and `.ods` every sheet, expanded into dense ranges. Only the sheets of
//! `.xlsx`/`.xlsb` stream. So this module inflates, through counting readers, exactly the parts
//! calamine will read, and refuses a workbook when one of them passes a limit: its declared or
//! actual inflated size, its compression ratio, the longest XML event or cell text quick-xml would
//! buffer, cell positions beyond Excel's 1,048,576 rows and 16,384 columns, or the memory calamine
//! would take for what it keeps (shared strings, style records, `.xls`/`.ods` ranges), estimated
//! from counts. A declared `<dimension>` is only checked against Excel's limits, never used to size
//! anything. The limits are in [`LIMITS`], each with the reason for its value.
//!
//! A refusal names the file, the sheet (or the part) and the limit. The checks cost one extra pass
//! over the inflated parts; they do not validate the content, which calamine still does.

mod ods;
mod xls;
mod xlsb;
mod xml_scan;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use zip::ZipArchive;
use zip::result::ZipError;

use crate::error::IngestError;

pub(super) use xml_scan::{XmlLimits, XmlScan, XmlVisitor, attr, attrs, local_name, parse_u64};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Excel's sheet size: rows and columns.
pub(super) const EXCEL_ROWS: u64 = 1_048_576;
pub(super) const EXCEL_COLUMNS: u64 = 16_384;

/// What one workbook may hold. [`LIMITS`] holds the values used; tests use smaller ones.
#[derive(Debug, Clone)]
pub(super) struct Limits {
    /// Entries in the zip's central directory (the zip crate keeps one record per entry).
    pub zip_entries: u64,
    /// Inflated size of one `.xlsx`/`.xlsb` sheet part.
    pub sheet_bytes: u64,
    /// Inflated size of a part calamine reads whole at open (relationships, workbook, styles).
    pub metadata_bytes: u64,
    /// Memory calamine's shared-string table may take (estimated from the strings' count and size).
    pub shared_strings_memory: u64,
    /// Compression ratio allowed for a part above `ratio_floor` inflated bytes.
    pub max_ratio: u64,
    /// Parts smaller than this may compress better than `max_ratio` (empty rows, tiny files).
    pub ratio_floor: u64,
    /// Longest XML event (text run, tag, comment): quick-xml buffers each one whole.
    pub xml_token_bytes: u64,
    /// Longest content of one element calamine gathers into one string (`<t>`, `<si>`, a cell).
    pub cell_text_bytes: u64,
    /// Deepest XML nesting (quick-xml keeps a stack of open element names).
    pub xml_depth: u32,
    /// Records calamine keeps from one metadata part (relationships, sheets and names, styles).
    pub metadata_elements: u64,
    /// Size of an `.xls` file: calamine reads it whole, then copies its workbook stream.
    pub xls_file_bytes: u64,
    /// Memory the ranges calamine builds for `.xls` and `.ods` may take, all sheets together.
    pub table_memory: u64,
    /// Inflated size of an `.ods` `content.xml`.
    pub ods_content_bytes: u64,
    /// One `.xlsb` record: calamine sizes a buffer by the record's declared length.
    pub xlsb_record_bytes: u64,
}

/// The limits shopstream applies. Together they keep the Excel reader well under 200 MiB, whatever
/// the file; none refuses a genuine sheet of up to Excel's 1,048,576 rows.
pub(super) const LIMITS: Limits = Limits {
    // Real workbooks hold tens to a few hundred parts.
    zip_entries: 10_000,
    // Sheets stream, so this bounds time, not memory: a full sheet (1,048,576 rows of ~15 cells
    // with inline strings) is about 1.5 GiB of XML. Rows beyond Excel's limit are refused anyway.
    sheet_bytes: 2 * GIB,
    // Excel's largest styles.xml (64,000 cell formats) is about 10 MiB; the others are far smaller.
    metadata_bytes: 32 * MIB,
    // A million distinct 20-character strings take about 60 MiB; the estimate counts 56 bytes of
    // overhead per string, more than the allocator really uses.
    shared_strings_memory: 128 * MIB,
    // Sheet XML compresses 5 to 20 times; deflate's maximum is about 1,000. Whitespace or
    // repeated-row bombs compress hundreds of times.
    max_ratio: 100,
    ratio_floor: 8 * MIB,
    // A cell holds at most 32,767 characters (under 200 KiB escaped); formulas are shorter.
    xml_token_bytes: MIB,
    // The longest legitimate cell, rich text with a run per character, is about 5 MiB of XML.
    // calamine may hold a few copies of it (raw, decoded, final).
    cell_text_bytes: 8 * MIB,
    // Sheet XML nests about 7 deep, OpenDocument about 15.
    xml_depth: 256,
    // Excel allows 64,000 cell formats; calamine keeps about 200 bytes per style record.
    metadata_elements: 262_144,
    // The .xls format caps a sheet at 65,536 rows and 256 columns: real files stay far below this.
    xls_file_bytes: 32 * MIB,
    // Dense ranges take 56 bytes a cell (value and formula): this is about 3 million cells.
    table_memory: 160 * MIB,
    // OpenDocument XML takes 100-200 bytes a cell; memory is bounded by `table_memory`.
    ods_content_bytes: 512 * MIB,
    // Records hold one string (32,767 characters) or one formula at most.
    xlsb_record_bytes: MIB,
};

/// The workbook formats, by calamine reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WorkbookKind {
    /// `.xlsx`, `.xlsm`, `.xlam`: zipped XML, sheets stream.
    Xlsx,
    /// `.xlsb`: zipped binary records, sheets stream.
    Xlsb,
    /// `.xls`, `.xla`: BIFF records in a compound file, read whole.
    Xls,
    /// `.ods`: zipped OpenDocument XML, read whole.
    Ods,
}

impl WorkbookKind {
    /// The kind for a file name's extension (any case).
    pub(super) fn of(path: &Path) -> Option<WorkbookKind> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "xlsx" | "xlsm" | "xlam" => WorkbookKind::Xlsx,
            "xlsb" => WorkbookKind::Xlsb,
            "xls" | "xla" => WorkbookKind::Xls,
            "ods" => WorkbookKind::Ods,
            _ => return None,
        })
    }
}

/// Why a part of a workbook is refused; [`Refused`] adds which part.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error("declares {} inflated, over the limit of {}", Size(*.declared), Size(*.limit))]
    DeclaredTooLarge { declared: u64, limit: u64 },
    #[error("inflates to more than {}, the limit", Size(*.0))]
    InflatesTooLarge(u64),
    #[error(
        "inflates more than {limit} times ({} compressed, over {} inflated so far), \
         the limit for parts over {}: a zip bomb?",
        Size(*.compressed), Size(*.inflated), Size(*.floor)
    )]
    Ratio {
        compressed: u64,
        inflated: u64,
        limit: u64,
        floor: u64,
    },
    #[error("cannot be inflated: {0}")]
    Inflate(String),
    #[error("holds an XML text run or tag longer than {}, the limit", Size(*.0))]
    TokenTooLong(u64),
    #[error("holds a cell text longer than {}, the limit", Size(*.0))]
    TextTooLong(u64),
    #[error("nests XML elements deeper than {0} levels, the limit")]
    TooDeep(u32),
    #[error("holds a DOCTYPE declaration, which workbooks never use")]
    Doctype,
    #[error("holds malformed XML markup (`<!` starting neither a comment nor CDATA)")]
    BadMarkup,
    #[error("holds more than {limit} {what}, the limit")]
    TooMany { what: &'static str, limit: u64 },
    #[error(
        "would take about {} of memory to load, over the limit of {}",
        Size(*.estimate), Size(*.limit)
    )]
    Memory { estimate: u64, limit: u64 },
    #[error("places {0} beyond Excel's limits of 1,048,576 rows and 16,384 columns")]
    OutsideSheet(String),
    #[error(
        "is {}, over the limit of {} for this format, which is read whole",
        Size(*.size), Size(*.limit)
    )]
    FileTooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Malformed(String),
}

/// A refusal and the part it concerns (`sheet `Data` (xl/worksheets/sheet1.xml)`).
#[derive(Debug)]
pub(super) struct Refused {
    part: String,
    refusal: Refusal,
}

impl Refused {
    fn new(part: impl Into<String>, refusal: Refusal) -> Self {
        Refused {
            part: part.into(),
            refusal,
        }
    }

    fn into_ingest(self, path: &Path) -> IngestError {
        IngestError::malformed(
            path,
            format!(
                "{} {}; the workbook was refused before reading, to keep memory bounded",
                self.part, self.refusal
            ),
        )
    }
}

/// A byte count for people: `2 GiB`, `1.5 MiB`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit {
                let x = n as f64 / unit as f64;
                return if x.fract() == 0.0 {
                    write!(f, "{x} {name}")
                } else {
                    write!(f, "{x:.1} {name}")
                };
            }
        }
        write!(f, "{n} bytes")
    }
}

/// The sheets whose parts were checked (`None`: the whole file was, as for `.xls` and `.ods`).
#[derive(Debug, Clone)]
pub(super) struct Checked {
    sheets: Option<Vec<String>>,
}

impl Checked {
    /// Whether sheet `name` may be read.
    pub(super) fn allows(&self, name: &str) -> bool {
        self.sheets
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == name))
    }
}

/// Checks the workbook at `path` (only sheet `only_sheet` of it, when given) against [`LIMITS`].
pub(super) fn check_workbook(
    path: &Path,
    kind: WorkbookKind,
    only_sheet: Option<&str>,
) -> Result<Checked, IngestError> {
    check_with(path, kind, only_sheet, &LIMITS)
}

/// [`check_workbook`] with given limits.
pub(super) fn check_with(
    path: &Path,
    kind: WorkbookKind,
    only_sheet: Option<&str>,
    limits: &Limits,
) -> Result<Checked, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let result = match kind {
        WorkbookKind::Xls => xls::check(file, limits).map(|()| Checked { sheets: None }),
        WorkbookKind::Xlsx | WorkbookKind::Xlsb | WorkbookKind::Ods => {
            check_zip(file, kind, only_sheet, limits)
        }
    };
    result.map_err(|r| r.into_ingest(path))
}

fn check_zip(
    mut file: File,
    kind: WorkbookKind,
    only_sheet: Option<&str>,
    limits: &Limits,
) -> Result<Checked, Refused> {
    check_entry_counts(&mut file, limits.zip_entries)
        .map_err(|r| Refused::new("the zip archive", r))?;
    let Ok(zip) = ZipArchive::new(file) else {
        // Not a zip: calamine reports it.
        return Ok(Checked {
            sheets: Some(Vec::new()),
        });
    };
    let mut parts = Parts::new(zip, limits);
    let sheets = match kind {
        WorkbookKind::Xlsx => Some(check_xlsx(&mut parts, only_sheet)?),
        // Every part a sheet may be read from is checked.
        WorkbookKind::Xlsb => xlsb::check(&mut parts).map(|()| None)?,
        WorkbookKind::Ods => ods::check(&mut parts).map(|()| None)?,
        WorkbookKind::Xls => unreachable!("not a zip"),
    };
    Ok(Checked { sheets })
}

/// Refuses an archive whose end-of-central-directory records (every candidate the zip crate may
/// try, in the last 64 KiB) list more than `limit` entries, before the zip crate reads them.
fn check_entry_counts(file: &mut File, limit: u64) -> Result<(), Refusal> {
    let len = file.seek(SeekFrom::End(0)).map_err(inflate_err)?;
    let window = len.min(22 + 4 + 64 * KIB);
    let mut tail = vec![0u8; window as usize];
    file.seek(SeekFrom::Start(len - window))
        .map_err(inflate_err)?;
    file.read_exact(&mut tail).map_err(inflate_err)?;
    for at in (0..tail.len().saturating_sub(21)).rev() {
        if tail[at..at + 4] != [0x50, 0x4b, 0x05, 0x06] {
            continue;
        }
        let entries = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
        let mut count = u64::from(entries);
        if entries == u16::MAX {
            count = zip64_entries(file, len - window + at as u64)?.unwrap_or(0);
        }
        if count > limit {
            return Err(Refusal::TooMany {
                what: "entries",
                limit,
            });
        }
    }
    Ok(())
}

/// The entry count of the zip64 end record that the locator before `eocd` points to.
fn zip64_entries(file: &mut File, eocd: u64) -> Result<Option<u64>, Refusal> {
    let mut locator = [0u8; 20];
    let Some(at) = eocd.checked_sub(20) else {
        return Ok(None);
    };
    file.seek(SeekFrom::Start(at)).map_err(inflate_err)?;
    file.read_exact(&mut locator).map_err(inflate_err)?;
    if locator[..4] != [0x50, 0x4b, 0x06, 0x07] {
        return Ok(None);
    }
    let record = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
    let mut end = [0u8; 56];
    if file.seek(SeekFrom::Start(record)).is_err() || file.read_exact(&mut end).is_err() {
        return Ok(None);
    }
    if end[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        end[32..40].try_into().expect("8 bytes"),
    )))
}

fn inflate_err(e: impl fmt::Display) -> Refusal {
    Refusal::Inflate(e.to_string())
}

/// The archive, its entry names as calamine looks them up, and the limits.
pub(super) struct Parts<'l> {
    zip: ZipArchive<File>,
    /// Lower-case names to names, as calamine's path cache (it finds parts whatever their case).
    names: HashMap<String, String>,
    limits: &'l Limits,
}

impl<'l> Parts<'l> {
    fn new(zip: ZipArchive<File>, limits: &'l Limits) -> Self {
        let mut names = HashMap::new();
        for name in zip.file_names().flatten() {
            names.insert(
                name.replace('\\', "/").to_ascii_lowercase(),
                name.into_owned(),
            );
        }
        Parts { zip, names, limits }
    }

    pub(super) fn limits(&self) -> &'l Limits {
        self.limits
    }

    /// The entry calamine opens for `path` (xlsx and xlsb readers).
    pub(super) fn resolve(&self, path: &str) -> String {
        let key = path.to_ascii_lowercase();
        self.names
            .get(&key)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    }

    /// Opens entry `name` for reading through the size and ratio checks (`None`: no such entry).
    pub(super) fn open(
        &mut self,
        name: &str,
        max_bytes: u64,
    ) -> Result<Option<Counted<'_>>, Refusal> {
        let part = match self.zip.by_name(name) {
            Ok(p) => p,
            Err(ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(inflate_err(e)),
        };
        if part.size() > max_bytes {
            return Err(Refusal::DeclaredTooLarge {
                declared: part.size(),
                limit: max_bytes,
            });
        }
        let compressed = part.compressed_size();
        check_ratio(part.size(), compressed, self.limits)?;
        Ok(Some(Counted {
            part,
            compressed,
            total: 0,
            max_bytes,
            limits: self.limits,
        }))
    }

    /// Inflates entry `name` through `sink` (given each chunk and the bytes so far); refuses it as
    /// soon as it passes `max_bytes` or the ratio limit. Returns false when there is no such entry.
    pub(super) fn inflate(
        &mut self,
        name: &str,
        max_bytes: u64,
        mut sink: impl FnMut(&[u8], u64) -> Result<(), Refusal>,
    ) -> Result<bool, Refusal> {
        let Some(mut part) = self.open(name, max_bytes)? else {
            return Ok(false);
        };
        let mut buf = vec![0u8; 64 * KIB as usize];
        loop {
            let n = match part.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(refusal_of(e)),
            };
            sink(&buf[..n], part.total)?;
        }
    }

    /// Inflates XML entry `name` through a scanner with `xml` limits and `visitor`.
    pub(super) fn scan_xml(
        &mut self,
        name: &str,
        max_bytes: u64,
        xml: XmlLimits,
        visitor: &mut impl XmlVisitor,
    ) -> Result<bool, Refusal> {
        let mut scan = XmlScan::new(xml);
        self.inflate(name, max_bytes, |chunk, _| scan.feed(chunk, visitor))
    }

    /// XML limits with the given gathered elements.
    pub(super) fn xml_limits(&self, text_elements: &'static [&'static str]) -> XmlLimits {
        XmlLimits {
            token_bytes: self.limits.xml_token_bytes,
            depth: self.limits.xml_depth,
            text_bytes: self.limits.cell_text_bytes,
            text_elements,
        }
    }

    /// Scans metadata part `path` (resolved as calamine does) through `visitor`.
    pub(super) fn scan_metadata(
        &mut self,
        path: &str,
        text_elements: &'static [&'static str],
        visitor: &mut impl XmlVisitor,
    ) -> Result<bool, Refused> {
        let name = self.resolve(path);
        let xml = self.xml_limits(text_elements);
        self.scan_xml(&name, self.limits.metadata_bytes, xml, visitor)
            .map_err(|r| Refused::new(format!("part {name}"), r))
    }
}

/// An entry being inflated: its reads fail with a [`Refusal`] once past the size or ratio limit
/// (the declared size may lie; the zip crate also stops at it).
pub(super) struct Counted<'a> {
    part: zip::read::ZipFile<'a, File>,
    compressed: u64,
    /// Bytes inflated so far.
    pub total: u64,
    max_bytes: u64,
    limits: &'a Limits,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.part.read(buf)?;
        self.total += n as u64;
        if self.total > self.max_bytes {
            return Err(std::io::Error::other(Refusal::InflatesTooLarge(
                self.max_bytes,
            )));
        }
        check_ratio(self.total, self.compressed, self.limits).map_err(std::io::Error::other)?;
        Ok(n)
    }
}

/// The refusal a [`Counted`] read failed with, or the read error as one.
pub(super) fn refusal_of(e: std::io::Error) -> Refusal {
    match e.downcast::<Refusal>() {
        Ok(r) => r,
        Err(e) => inflate_err(e),
    }
}

fn check_ratio(inflated: u64, compressed: u64, limits: &Limits) -> Result<(), Refusal> {
    if inflated > limits.ratio_floor && inflated > compressed.saturating_mul(limits.max_ratio) {
        return Err(Refusal::Ratio {
            compressed,
            inflated,
            limit: limits.max_ratio,
            floor: limits.ratio_floor,
        });
    }
    Ok(())
}

/// Counts the start tags with given local names, refusing more than a limit.
pub(super) struct ElementCount {
    names: &'static [&'static str],
    what: &'static str,
    count: u64,
    limit: u64,
}

impl ElementCount {
    pub(super) fn new(names: &'static [&'static str], what: &'static str, limit: u64) -> Self {
        ElementCount {
            names,
            what,
            count: 0,
            limit,
        }
    }

    fn counts(&mut self, name: &[u8]) -> Result<bool, Refusal> {
        if !self.names.iter().any(|n| local_name(name) == n.as_bytes()) {
            return Ok(false);
        }
        self.count += 1;
        if self.count > self.limit {
            return Err(Refusal::TooMany {
                what: self.what,
                limit: self.limit,
            });
        }
        Ok(true)
    }
}

impl XmlVisitor for ElementCount {
    fn start(&mut self, name: &[u8], _: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        self.counts(name).map(|_| ())
    }
}

/// The relationships of a part: id to (target, type), raw as calamine keeps them.
pub(super) struct Relationships {
    pub map: HashMap<String, (String, String)>,
    /// The last `officeDocument` target, decoded (package relationships).
    pub office_document: Option<String>,
    count: ElementCount,
}

impl Relationships {
    pub(super) fn new(limit: u64) -> Self {
        Relationships {
            map: HashMap::new(),
            office_document: None,
            count: ElementCount::new(&["Relationship"], "relationships", limit),
        }
    }
}

impl XmlVisitor for Relationships {
    fn start(&mut self, name: &[u8], attrs: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        if !self.count.counts(name)? {
            return Ok(());
        }
        let text = |key: &[u8]| attr(attrs, key).map(|v| String::from_utf8_lossy(v).into_owned());
        let (target, typ) = (text(b"Target"), text(b"Type"));
        if typ
            .as_deref()
            .is_some_and(|t| t.ends_with("/relationships/officeDocument"))
            && let Some(t) = attr(attrs, b"Target")
        {
            self.office_document = Some(xml_scan::unescape(t));
        }
        if let Some(id) = text(b"Id") {
            self.map
                .insert(id, (target.unwrap_or_default(), typ.unwrap_or_default()));
        }
        Ok(())
    }
}

/// The sheets a workbook part lists, in order: name and relationship id.
pub(super) struct SheetList {
    pub sheets: Vec<(String, String)>,
    count: ElementCount,
}

impl SheetList {
    pub(super) fn new(limit: u64) -> Self {
        SheetList {
            sheets: Vec::new(),
            count: ElementCount::new(&["sheet", "definedName"], "sheets and names", limit),
        }
    }
}

impl XmlVisitor for SheetList {
    fn start(&mut self, name: &[u8], tag: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        if !self.count.counts(name)? || local_name(name) != b"sheet" {
            return Ok(());
        }
        let sheet = attr(tag, b"name")
            .map(xml_scan::unescape)
            .unwrap_or_default();
        // As calamine: the last attribute whose local name is `id` (`r:id`).
        let id = attrs(tag)
            .filter(|(k, _)| local_name(k) == b"id")
            .last()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        self.sheets.push((sheet, id));
        Ok(())
    }
}

/// Checks an `.xlsx`: the parts calamine reads at open, then the sheets to read (their names are
/// returned).
fn check_xlsx(parts: &mut Parts<'_>, only_sheet: Option<&str>) -> Result<Vec<String>, Refused> {
    let limit = parts.limits().metadata_elements;
    let mut package = Relationships::new(limit);
    parts.scan_metadata("_rels/.rels", &[], &mut package)?;
    let Some(target) = package.office_document else {
        // calamine refuses a package without a workbook.
        return Ok(Vec::new());
    };
    let (dir, file) = target.split_at(target.rfind('/').map_or(0, |i| i + 1));
    let xl = dir.strip_prefix('/').unwrap_or(dir).to_string();
    let workbook = if file.is_empty() {
        "workbook.xml"
    } else {
        file
    };

    check_shared_strings(parts, &format!("{xl}sharedStrings.xml"))?;
    const STYLES: &[&str] = &["xf", "font", "fill", "border", "numFmt"];
    let mut style_count = ElementCount::new(STYLES, "style records", limit);
    parts.scan_metadata(&format!("{xl}styles.xml"), &[], &mut style_count)?;
    parts.scan_metadata(
        &format!("{xl}theme/theme1.xml"),
        &[],
        &mut xml_scan::NoVisitor,
    )?;
    let mut rels = Relationships::new(limit);
    parts.scan_metadata(&format!("{xl}_rels/{workbook}.rels"), &[], &mut rels)?;
    let mut list = SheetList::new(limit);
    parts.scan_metadata(&format!("{xl}{workbook}"), &["definedName"], &mut list)?;

    let mut checked = Vec::new();
    for (name, id) in list.sheets {
        if only_sheet.is_some_and(|s| s != name) {
            continue;
        }
        let Some((target, _)) = rels.map.get(&id) else {
            continue;
        };
        let path = match target.strip_prefix('/') {
            Some(abs) => abs.to_string(),
            None => format!("{xl}{target}"),
        };
        check_sheet_part(parts, &name, &parts.resolve(&path))?;
        checked.push(name);
    }
    Ok(checked)
}

/// Checks the shared strings: calamine holds them all, so their estimated memory is capped.
fn check_shared_strings(parts: &mut Parts<'_>, path: &str) -> Result<(), Refused> {
    let name = parts.resolve(path);
    let limit = parts.limits().shared_strings_memory;
    let xml = parts.xml_limits(&["si", "t"]);
    let mut scan = XmlScan::new(xml);
    let mut strings = SharedStrings::default();
    parts
        .inflate(&name, limit, |chunk, total| {
            scan.feed(chunk, &mut strings)?;
            check_memory(strings.estimate(total), limit)
        })
        .map_err(|r| Refused::new(format!("the shared strings ({name})"), r))?;
    Ok(())
}

pub(super) fn check_memory(estimate: u64, limit: u64) -> Result<(), Refusal> {
    if estimate > limit {
        return Err(Refusal::Memory { estimate, limit });
    }
    Ok(())
}

/// Counts what calamine's shared-string table will hold.
#[derive(Default)]
struct SharedStrings {
    /// `uniqueCount`: calamine reserves this many slots up front.
    declared: u64,
    strings: u64,
}

impl SharedStrings {
    /// Memory for the table once `bytes` of the part are read: 24 bytes a slot (twice the count
    /// when the vector grows by doubling), 32 for each string's allocation, plus the text.
    fn estimate(&self, bytes: u64) -> u64 {
        shared_strings_estimate(self.declared, self.strings, bytes)
    }
}

/// See [`SharedStrings::estimate`]; shared with `.xlsb`.
pub(super) fn shared_strings_estimate(declared: u64, strings: u64, bytes: u64) -> u64 {
    let slots = if declared >= strings {
        declared
    } else {
        strings.saturating_mul(2)
    };
    slots
        .saturating_mul(24)
        .saturating_add(strings.saturating_mul(32))
        .saturating_add(bytes)
}

impl XmlVisitor for SharedStrings {
    fn start(&mut self, name: &[u8], attrs: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        match local_name(name) {
            b"sst" => {
                self.declared = attr(attrs, b"uniqueCount").and_then(parse_u64).unwrap_or(0);
            }
            b"si" => self.strings += 1,
            _ => {}
        }
        Ok(())
    }
}

/// Checks one sheet part: size, ratio, XML limits, and cell positions within Excel's sheet.
fn check_sheet_part(parts: &mut Parts<'_>, sheet: &str, name: &str) -> Result<(), Refused> {
    let xml = parts.xml_limits(&["t", "is", "v"]);
    let max = parts.limits().sheet_bytes;
    let mut cells = SheetCells::default();
    parts
        .scan_xml(name, max, xml, &mut cells)
        .map_err(|r| Refused::new(format!("sheet `{sheet}` ({name})"), r))?;
    Ok(())
}

/// Follows cell positions as calamine's cell reader does (`r` attributes, else counting), and
/// refuses any beyond Excel's sheet. The reader checks positions again while streaming.
#[derive(Default)]
struct SheetCells {
    /// 0-based row of the current or next `<row>`.
    row: u64,
    /// 0-based column of the next cell without `r`.
    col: u64,
}

impl XmlVisitor for SheetCells {
    fn start(&mut self, name: &[u8], attrs: &[u8], _: bool, _: u64) -> Result<(), Refusal> {
        match local_name(name) {
            b"dimension" => {
                let declared = attr(attrs, b"ref").unwrap_or_default();
                for corner in declared.split(|&b| b == b':') {
                    if !cell_ref(corner).is_some_and(within_excel) {
                        return Err(Refusal::OutsideSheet(format!(
                            "its declared dimension `{}`",
                            String::from_utf8_lossy(&declared[..declared.len().min(40)])
                        )));
                    }
                }
            }
            b"row" => {
                if let Some(r) = attr(attrs, b"r").and_then(parse_u64) {
                    self.row = r.saturating_sub(1);
                }
                self.col = 0;
                if self.row >= EXCEL_ROWS {
                    return Err(Refusal::OutsideSheet(format!("row {}", self.row + 1)));
                }
            }
            b"c" => {
                let (row, col) = match attr(attrs, b"r").and_then(cell_ref) {
                    Some((row, Some(col))) => (row.saturating_sub(1), col.saturating_sub(1)),
                    _ => (self.row, self.col),
                };
                self.col = col.saturating_add(1);
                if row >= EXCEL_ROWS || col >= EXCEL_COLUMNS {
                    return Err(Refusal::OutsideSheet(format!(
                        "a cell at {}",
                        cell_name(row, col)
                    )));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self, name: &[u8], _: u64) -> Result<(), Refusal> {
        if local_name(name) == b"row" {
            self.row = self.row.saturating_add(1);
            self.col = 0;
        }
        Ok(())
    }
}

/// `(row, column)` of a reference like `XFD1048576` (1-based; column `None` for a row alone).
fn cell_ref(raw: &[u8]) -> Option<(u64, Option<u64>)> {
    let digits = raw.iter().position(u8::is_ascii_digit)?;
    let (letters, number) = raw.split_at(digits);
    if !letters.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    let col = letters.iter().fold(0u64, |n, c| {
        n.saturating_mul(26)
            .saturating_add(u64::from(c.to_ascii_uppercase() - b'A') + 1)
    });
    Some((parse_u64(number)?, (!letters.is_empty()).then_some(col)))
}

fn within_excel((row, col): (u64, Option<u64>)) -> bool {
    (1..=EXCEL_ROWS).contains(&row) && col.is_none_or(|c| (1..=EXCEL_COLUMNS).contains(&c))
}

/// Excel's name of a 0-based position (`XFD1048576`); beyond Excel's columns, `R5C20000`.
pub(super) fn cell_name(row: u64, col: u64) -> String {
    if col >= EXCEL_COLUMNS {
        return format!("R{}C{}", row + 1, col + 1);
    }
    format!("{}{}", column_name(col), row + 1)
}

/// Excel's letters for a 0-based column (`A`, `AA`, `XFD`).
pub(super) fn column_name(col: u64) -> String {
    let mut letters = Vec::new();
    let mut n = col + 1;
    while n > 0 {
        letters.push(b'A' + ((n - 1) % 26) as u8);
        n = (n - 1) / 26;
    }
    letters.reverse();
    String::from_utf8_lossy(&letters).into_owned()
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use super::*;

    /// An Online Retail row as inline-string cells, at 1-based row `r`.
    pub(in crate::read) fn order_row(r: u64, cells: &[&str]) -> String {
        let mut row = format!("<row r=\"{r}\">");
        for (c, text) in cells.iter().enumerate() {
            let at = cell_name(r - 1, c as u64);
            row.push_str(&format!(
                "<c r=\"{at}\" t=\"inlineStr\"><is><t>{text}</t></is></c>"
            ));
        }
        row + "</row>"
    }

    /// An order's fields, in Online Retail order.
    pub(in crate::read) const ORDER: [&str; 8] = [
        "536365",
        "85123A",
        "HEART",
        "6",
        "2010-12-01 08:26:00",
        "2.55",
        "17850",
        "France",
    ];

    /// The header and `n` orders, as sheet rows.
    pub(in crate::read) fn order_rows(n: u64) -> String {
        let mut rows = order_row(1, &crate::generate::ONLINE_RETAIL_HEADER);
        for r in 2..n + 2 {
            let no = format!("{}", 536_000 + r);
            let mut cells = ORDER;
            cells[0] = &no;
            rows.push_str(&order_row(r, &cells));
        }
        rows
    }

    /// The start of a sheet part, with a declared dimension.
    pub(in crate::read) fn sheet_start(dimension: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>"#
        )
    }

    pub(in crate::read) const SHEET_END: &str = "</sheetData></worksheet>";

    fn deflated() -> SimpleFileOptions {
        SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
    }

    /// Writes the content of one part.
    pub(in crate::read) type PartWriter<'a> = &'a dyn Fn(&mut dyn Write);

    /// Writes a one-sheet `.xlsx` (sheet `Data`) whose sheet part `sheet` writes, with an optional
    /// shared-strings part written by `strings`.
    pub(in crate::read) fn write_xlsx(
        path: &Path,
        sheet: impl FnOnce(&mut dyn Write),
        strings: Option<PartWriter<'_>>,
    ) {
        const RELS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
        let mut zip = ZipWriter::new(File::create(path).unwrap());
        let part = |zip: &mut ZipWriter<File>, name: &str, text: String| {
            zip.start_file(name, deflated()).unwrap();
            zip.write_all(text.as_bytes()).unwrap();
        };
        part(
            &mut zip,
            "_rels/.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        );
        part(
            &mut zip,
            "xl/workbook.xml",
            format!(
                r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="{RELS}"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        );
        part(
            &mut zip,
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="{RELS}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        );
        zip.start_file("xl/worksheets/sheet1.xml", deflated())
            .unwrap();
        sheet(&mut zip);
        if let Some(strings) = strings {
            zip.start_file("xl/sharedStrings.xml", deflated()).unwrap();
            strings(&mut zip);
        }
        zip.finish().unwrap();
    }

    /// Makes the zip entry `name` declare `size` inflated bytes (local and central headers).
    pub(in crate::read) fn lie_about_size(path: &Path, name: &str, size: u32) {
        let mut bytes = std::fs::read(path).unwrap();
        let central = (0..bytes.len() - 46)
            .find(|&i| {
                bytes[i..i + 4] == [0x50, 0x4b, 0x01, 0x02]
                    && bytes[i + 46..].starts_with(name.as_bytes())
            })
            .expect("entry in the central directory");
        let local = u32::from_le_bytes(bytes[central + 42..central + 46].try_into().unwrap());
        bytes[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
        let local = local as usize;
        bytes[local + 22..local + 26].copy_from_slice(&size.to_le_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    fn check(path: &Path, limits: &Limits) -> Result<Checked, String> {
        check_with(path, WorkbookKind::Xlsx, None, limits).map_err(|e| e.to_string())
    }

    fn temp(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        (dir, path)
    }

    #[test]
    fn a_normal_workbook_passes_and_names_its_sheets() {
        let (_dir, path) = temp("ok.xlsx");
        write_xlsx(
            &path,
            |w| write!(w, "{}{}{SHEET_END}", sheet_start("A1:H11"), order_rows(10)).unwrap(),
            None,
        );
        let checked = check(&path, &LIMITS).unwrap();
        assert!(checked.allows("Data"));
        assert!(!checked.allows("Other"));
    }

    #[test]
    fn a_whitespace_bomb_sheet_is_refused_by_its_compression_ratio() {
        // 1.1 GiB of spaces between two rows: a few MiB compressed.
        let (_dir, path) = temp("bomb.xlsx");
        let write_bomb = |w: &mut dyn Write| {
            write!(w, "{}{}", sheet_start("A1:H2"), order_rows(1)).unwrap();
            let spaces = vec![b' '; 1 << 20];
            for _ in 0..1100 {
                w.write_all(&spaces).unwrap();
            }
            w.write_all(SHEET_END.as_bytes()).unwrap();
        };
        write_xlsx(&path, write_bomb, None);
        assert!(std::fs::metadata(&path).unwrap().len() < 4 << 20);
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(
            err.contains("sheet `Data` (xl/worksheets/sheet1.xml) inflates more than 100 times"),
            "{err}"
        );
        // Declaring a small size does not get it through: inflating is counted too.
        lie_about_size(&path, "xl/worksheets/sheet1.xml", 1 << 20);
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(
            err.contains("sheet `Data` (xl/worksheets/sheet1.xml) cannot be inflated"),
            "{err}"
        );
    }

    #[test]
    fn a_sheet_past_its_size_limit_is_refused_even_when_it_declares_less() {
        let limits = Limits {
            sheet_bytes: 1 << 20,
            ..LIMITS
        };
        let (_dir, path) = temp("big.xlsx");
        let rows = order_rows(5000);
        write_xlsx(
            &path,
            |w| write!(w, "{}{rows}{SHEET_END}", sheet_start("A1:H5001")).unwrap(),
            None,
        );
        let err = check(&path, &limits).unwrap_err();
        assert!(
            err.contains("declares 2.1 MiB inflated, over the limit of 1 MiB"),
            "{err}"
        );
        lie_about_size(&path, "xl/worksheets/sheet1.xml", 1000);
        let err = check(&path, &limits).unwrap_err();
        assert!(err.contains("cannot be inflated"), "{err}");
        // Under a limit above its size the same rows pass.
        let limits = Limits {
            sheet_bytes: 4 << 20,
            ..LIMITS
        };
        write_xlsx(
            &path,
            |w| write!(w, "{}{rows}{SHEET_END}", sheet_start("A1:H5001")).unwrap(),
            None,
        );
        check(&path, &limits).unwrap();
    }

    #[test]
    fn shared_strings_past_their_memory_limit_are_refused() {
        let (_dir, path) = temp("strings.xlsx");
        let sheet = |w: &mut dyn Write| {
            write!(w, "{}{}{SHEET_END}", sheet_start("A1"), order_rows(1)).unwrap()
        };
        // Three million distinct strings: about 200 MiB in calamine's table.
        let many = |w: &mut dyn Write| {
            write!(
                w,
                r#"<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#
            )
            .unwrap();
            for i in 0..3_000_000 {
                write!(w, "<si><t>{i}</t></si>").unwrap();
            }
            write!(w, "</sst>").unwrap();
        };
        write_xlsx(&path, sheet, Some(&many));
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(
            err.contains("the shared strings (xl/sharedStrings.xml) would take about"),
            "{err}"
        );
        assert!(err.contains("over the limit of 128 MiB"), "{err}");
        // calamine reserves `uniqueCount` slots up front: a lie there is refused too.
        let lie = |w: &mut dyn Write| {
            write!(
                w,
                r#"<sst uniqueCount="4000000000"><si><t>a</t></si></sst>"#
            )
            .unwrap()
        };
        write_xlsx(&path, sheet, Some(&lie));
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(err.contains("would take about 89.4 GiB of memory"), "{err}");
    }

    #[test]
    fn cells_beyond_excels_sheet_are_refused_before_reading() {
        let (_dir, path) = temp("rows.xlsx");
        let far = order_row(1_048_577, &["x"]);
        write_xlsx(
            &path,
            |w| write!(w, "{}{}{far}{SHEET_END}", sheet_start("A1"), order_rows(1)).unwrap(),
            None,
        );
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(
            err.contains("places row 1048577 beyond Excel's limits"),
            "{err}"
        );
        let wide = r#"<row r="3"><c r="XFE3"><v>1</v></c></row>"#;
        write_xlsx(
            &path,
            |w| write!(w, "{}{wide}{SHEET_END}", sheet_start("A1")).unwrap(),
            None,
        );
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(err.contains("places a cell at R3C16385 beyond"), "{err}");
        write_xlsx(
            &path,
            |w| write!(w, "{}{SHEET_END}", sheet_start("A1:XFE1")).unwrap(),
            None,
        );
        let err = check(&path, &LIMITS).unwrap_err();
        assert!(err.contains("its declared dimension `A1:XFE1`"), "{err}");
    }

    #[test]
    fn a_zip_listing_too_many_entries_is_refused_before_the_zip_crate_reads_them() {
        let (_dir, path) = temp("entries.xlsx");
        let mut zip = ZipWriter::new(File::create(&path).unwrap());
        for i in 0..12 {
            zip.start_file(format!("junk/{i}"), deflated()).unwrap();
        }
        zip.finish().unwrap();
        let limits = Limits {
            zip_entries: 10,
            ..LIMITS
        };
        let err = check(&path, &limits).unwrap_err();
        assert!(
            err.contains("the zip archive holds more than 10 entries"),
            "{err}"
        );
    }

    /// Writes an `.ods` whose `content.xml` holds `tables`.
    pub(in crate::read) fn write_ods(path: &Path, tables: &str) {
        let mut zip = ZipWriter::new(File::create(path).unwrap());
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        zip.start_file("mimetype", stored).unwrap();
        zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
            .unwrap();
        zip.start_file("META-INF/manifest.xml", deflated()).unwrap();
        zip.write_all(br#"<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/></manifest:manifest>"#).unwrap();
        zip.start_file("content.xml", deflated()).unwrap();
        write!(
            zip,
            r#"<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:spreadsheet>{tables}</office:spreadsheet></office:body></office:document-content>"#
        )
        .unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn an_ods_of_repeated_cells_is_refused_naming_its_sheet() {
        let (_dir, path) = temp("bomb.ods");
        let bomb = r#"<table:table table:name="Bomb"><table:table-row table:number-rows-repeated="1048576"><table:table-cell table:number-columns-repeated="16384" office:value-type="float" office:value="1"/></table:table-row></table:table>"#;
        write_ods(&path, bomb);
        let err = check_with(&path, WorkbookKind::Ods, None, &LIMITS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sheet `Bomb` (content.xml) would take about"),
            "{err}"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(Size(2 * GIB).to_string(), "2 GiB");
        assert_eq!(Size(3 * MIB / 2).to_string(), "1.5 MiB");
        assert_eq!(Size(100).to_string(), "100 bytes");
        assert_eq!(cell_name(1_048_575, 16_383), "XFD1048576");
        assert_eq!(cell_ref(b"XFD1048576"), Some((1_048_576, Some(16_384))));
    }
}
