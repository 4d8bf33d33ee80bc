//! The hostile half of the bad-input corpus: files too large to commit (hundreds of MB of text, workbooks
//! whose XML inflates past 1 GiB from a few MB), and binary files (workbooks, Parquet) built here so the
//! repository holds no opaque blobs. Each is written just before its run and deleted after it.
//!
//! Big files are written as one repeated buffer, so generating them costs about what the disk takes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{Case, Count, Expect, LOADS, loads};

type Io = std::io::Result<()>;

const MIB: usize = 1 << 20;
/// "Hundreds of MB": big enough that holding it twice breaks the 512 MiB bound.
const HUGE: usize = 300 * MIB;

pub fn cases() -> Vec<Case> {
    let some_rows_load = |n| Expect::Loads {
        loaded: Count::AtLeast(n),
        rejected: Count::Any,
    };
    vec![
        // Text.
        Case::generated("one-huge-line.txt", Expect::Either, one_huge_line),
        Case::generated(
            "unclosed-quote-huge.csv",
            Expect::Either,
            unclosed_quote_huge,
        ),
        Case::generated("aligned-long-lines.txt", Expect::Either, aligned_long_lines),
        Case::generated("many-columns.csv", Expect::Either, many_columns),
        // JSON.
        Case::generated("giant-line.jsonl", some_rows_load(6), giant_line_jsonl),
        Case::generated("many-elements.json", loads(200_000, 0), many_elements_json),
        Case::generated("giant-element.json", some_rows_load(3), giant_element_json),
        Case::generated("deep-nesting.json", Expect::Either, deep_nesting_json),
        // Workbooks. `good.xlsx` is the control: the hand-built workbook layout the others share loads.
        Case::generated("good.xlsx", loads(3, 0), good_xlsx),
        Case::generated(
            "odd-cells.xlsx",
            Expect::Loads {
                loaded: Count::AtLeast(1),
                rejected: Count::AtLeast(2),
            },
            odd_cells_xlsx,
        ),
        Case::generated("zip-not-workbook.xlsx", Expect::Refused, zip_not_workbook),
        Case::generated(
            "missing-sheet-part.xlsx",
            Expect::Refused,
            missing_sheet_part,
        ),
        Case::generated(
            "stray-cell-xfd1048576.xlsx",
            Expect::Either,
            stray_cell_xlsx,
        ),
        Case::generated("whitespace-bomb.xlsx", Expect::Either, whitespace_bomb_xlsx),
        Case::generated("rows-bomb.xlsx", Expect::Either, rows_bomb_xlsx),
        Case::generated(
            "shared-strings-bomb.xlsx",
            Expect::Either,
            shared_strings_bomb_xlsx,
        ),
        // Parquet.
        Case::generated(
            "utc-timestamps.parquet",
            loads(3, 0),
            utc_timestamps_parquet,
        ),
        Case::generated("truncated.parquet", Expect::Refused, truncated_parquet),
        Case::generated("nested-types.parquet", Expect::Either, nested_types_parquet),
        Case::generated("huge-strings.parquet", Expect::Either, huge_strings_parquet),
        Case::generated("empty-rows.parquet", LOADS, empty_rows_parquet),
    ]
}

const HEADER: &str =
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country";
const ROW: &str = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom";

/// Writes `unit` repeated until `total` bytes (rounded down to whole units).
fn repeat(w: &mut impl Write, unit: &[u8], total: usize) -> Io {
    let per_buffer = (MIB / unit.len()).max(1);
    let buffer = unit.repeat(per_buffer);
    let mut left = total / unit.len();
    while left > 0 {
        let n = left.min(per_buffer);
        w.write_all(&buffer[..n * unit.len()])?;
        left -= n;
    }
    Ok(())
}

fn create(path: &Path) -> std::io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(MIB, File::create(path)?))
}

fn one_huge_line(path: &Path) -> Io {
    let mut w = create(path)?;
    repeat(&mut w, b"abc def ghi ", HUGE)?;
    w.flush()
}

fn unclosed_quote_huge(path: &Path) -> Io {
    let mut w = create(path)?;
    writeln!(w, "{HEADER}\n{ROW}")?;
    writeln!(
        w,
        "536365,71053,\"WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom"
    )?;
    repeat(&mut w, format!("{ROW}\n").as_bytes(), HUGE)?;
    w.flush()
}

fn aligned_long_lines(path: &Path) -> Io {
    let mut w = create(path)?;
    writeln!(
        w,
        "InvoiceNo  StockCode  Quantity  InvoiceDate          UnitPrice  Country"
    )?;
    for i in 0..300 {
        write!(
            w,
            "{:<9}  85123A            6  2010-12-01 08:26:00       2.55  ",
            536365 + i
        )?;
        repeat(&mut w, b"UNITEDKINGDOM", MIB)?;
        writeln!(w)?;
    }
    w.flush()
}

fn many_columns(path: &Path) -> Io {
    let mut w = create(path)?;
    write!(w, "{HEADER}")?;
    for i in 0..200_000 {
        write!(w, ",extra_{i}")?;
    }
    writeln!(w)?;
    for _ in 0..3 {
        write!(w, "{ROW}")?;
        repeat(&mut w, b",", 200_000)?;
        writeln!(w)?;
    }
    w.flush()
}

/// One order as a JSON object; `description` is written as given (already escaped).
fn order_json(w: &mut impl Write, invoice: u64, description: &[u8]) -> Io {
    write!(
        w,
        "{{\"InvoiceNo\":\"{invoice}\",\"StockCode\":\"85123A\",\"Description\":\""
    )?;
    w.write_all(description)?;
    write!(
        w,
        "\",\"Quantity\":6,\"InvoiceDate\":\"2010-12-01 08:26:00\",\"UnitPrice\":2.55,\"CustomerID\":17850.0,\"Country\":\"United Kingdom\"}}"
    )
}

const DESCRIPTION: &[u8] = b"WHITE HANGING HEART T-LIGHT HOLDER";

fn giant_line_jsonl(path: &Path) -> Io {
    let mut w = create(path)?;
    for i in 0..3 {
        order_json(&mut w, 536365 + i, DESCRIPTION)?;
        writeln!(w)?;
    }
    write!(
        w,
        "{{\"InvoiceNo\":\"536400\",\"StockCode\":\"85123A\",\"Description\":\""
    )?;
    repeat(&mut w, b"HEART ", HUGE)?;
    writeln!(
        w,
        "\",\"Quantity\":6,\"InvoiceDate\":\"2010-12-01 08:26:00\",\"UnitPrice\":2.55,\"CustomerID\":17850.0,\"Country\":\"United Kingdom\"}}"
    )?;
    for i in 3..6 {
        order_json(&mut w, 536365 + i, DESCRIPTION)?;
        writeln!(w)?;
    }
    w.flush()
}

/// A minified array on one line (JSON.stringify's output): 200,000 orders, about 40 MB.
fn many_elements_json(path: &Path) -> Io {
    let mut w = create(path)?;
    w.write_all(b"[")?;
    for i in 0..200_000u64 {
        if i > 0 {
            w.write_all(b",")?;
        }
        order_json(&mut w, 500_000 + i, DESCRIPTION)?;
    }
    w.write_all(b"]")?;
    w.flush()
}

fn giant_element_json(path: &Path) -> Io {
    let mut w = create(path)?;
    w.write_all(b"[")?;
    order_json(&mut w, 536365, DESCRIPTION)?;
    w.write_all(b",")?;
    order_json(&mut w, 536366, DESCRIPTION)?;
    w.write_all(b",{\"InvoiceNo\":\"536367\",\"Description\":\"")?;
    repeat(&mut w, b"HEART ", HUGE)?;
    w.write_all(b"\",\"Quantity\":6},")?;
    order_json(&mut w, 536368, DESCRIPTION)?;
    w.write_all(b"]")?;
    w.flush()
}

fn deep_nesting_json(path: &Path) -> Io {
    let mut w = create(path)?;
    repeat(&mut w, b"[", 1_000_000)?;
    repeat(&mut w, b"]", 1_000_000)?;
    w.flush()
}

/// A zip written entry by entry (deflated, streaming: nothing is held whole).
struct Zip(zip::ZipWriter<File>);

impl Zip {
    fn create(path: &Path) -> std::io::Result<Zip> {
        Ok(Zip(zip::ZipWriter::new(File::create(path)?)))
    }

    fn part(&mut self, name: &str) -> std::io::Result<&mut zip::ZipWriter<File>> {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1));
        self.0.start_file(name, options)?;
        Ok(&mut self.0)
    }

    fn finish(self) -> Io {
        self.0.finish()?;
        Ok(())
    }
}

const MAIN_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const REL_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_REL_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";

/// The parts of a one-sheet workbook around its sheet (`xl/worksheets/sheet1.xml`, written by the
/// caller, as is `xl/sharedStrings.xml` when `shared_strings`).
fn workbook_frame(path: &Path, shared_strings: bool) -> std::io::Result<Zip> {
    let mut zip = Zip::create(path)?;
    let ct = "application/vnd.openxmlformats-officedocument.spreadsheetml";
    let sst_override = if shared_strings {
        format!(
            "<Override PartName=\"/xl/sharedStrings.xml\" ContentType=\"{ct}.sharedStrings+xml\"/>"
        )
    } else {
        String::new()
    };
    write!(
        zip.part("[Content_Types].xml")?,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/xl/workbook.xml\" ContentType=\"{ct}.sheet.main+xml\"/>\
         <Override PartName=\"/xl/worksheets/sheet1.xml\" ContentType=\"{ct}.worksheet+xml\"/>\
         {sst_override}</Types>"
    )?;
    write!(
        zip.part("_rels/.rels")?,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <Relationships xmlns=\"{PKG_REL_NS}\"><Relationship Id=\"rId1\" \
         Type=\"{REL_NS}/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>"
    )?;
    write!(
        zip.part("xl/workbook.xml")?,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <workbook xmlns=\"{MAIN_NS}\" xmlns:r=\"{REL_NS}\"><sheets>\
         <sheet name=\"Orders\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
    )?;
    let sst_rel = if shared_strings {
        format!(
            "<Relationship Id=\"rId2\" Type=\"{REL_NS}/sharedStrings\" Target=\"sharedStrings.xml\"/>"
        )
    } else {
        String::new()
    };
    write!(
        zip.part("xl/_rels/workbook.xml.rels")?,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\
         <Relationships xmlns=\"{PKG_REL_NS}\"><Relationship Id=\"rId1\" \
         Type=\"{REL_NS}/worksheet\" Target=\"worksheets/sheet1.xml\"/>{sst_rel}</Relationships>"
    )?;
    Ok(zip)
}

const SHEET_START: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>";

fn sheet_open(w: &mut impl Write, dimension: Option<&str>) -> Io {
    write!(w, "{SHEET_START}<worksheet xmlns=\"{MAIN_NS}\">")?;
    if let Some(d) = dimension {
        write!(w, "<dimension ref=\"{d}\"/>")?;
    }
    write!(w, "<sheetData>")
}

fn sheet_close(w: &mut impl Write) -> Io {
    write!(w, "</sheetData></worksheet>")
}

/// A cell: numbers as numbers, everything else as an inline string.
enum Cell<'a> {
    Text(&'a str),
    Number(&'a str),
    /// A cell of another type (`e` error, `b` boolean, `s` shared-string index) with its value.
    Typed(&'a str, &'a str),
}

const COLUMNS: [&str; 9] = ["A", "B", "C", "D", "E", "F", "G", "H", "I"];

fn sheet_row(w: &mut impl Write, r: u64, cells: &[Cell]) -> Io {
    write!(w, "<row r=\"{r}\">")?;
    for (col, cell) in COLUMNS.iter().zip(cells) {
        match cell {
            Cell::Text(t) => write!(
                w,
                "<c r=\"{col}{r}\" t=\"inlineStr\"><is><t>{t}</t></is></c>"
            )?,
            Cell::Number(n) => write!(w, "<c r=\"{col}{r}\"><v>{n}</v></c>")?,
            Cell::Typed(t, v) => write!(w, "<c r=\"{col}{r}\" t=\"{t}\"><v>{v}</v></c>")?,
        }
    }
    write!(w, "</row>")
}

fn header_row(w: &mut impl Write) -> Io {
    let cells: Vec<Cell> = HEADER.split(',').map(Cell::Text).collect();
    sheet_row(w, 1, &cells)
}

/// A good order row; `description` replaces the description cell.
fn order_row(w: &mut impl Write, r: u64, description: Cell) -> Io {
    let invoice = (536364 + r).to_string();
    sheet_row(
        w,
        r,
        &[
            Cell::Text(&invoice),
            Cell::Text("85123A"),
            description,
            Cell::Number("6"),
            Cell::Text("2010-12-01 08:26:00"),
            Cell::Number("2.55"),
            Cell::Number("17850"),
            Cell::Text("United Kingdom"),
        ],
    )
}

fn good_xlsx(path: &Path) -> Io {
    let mut zip = workbook_frame(path, false)?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, Some("A1:H4"))?;
    header_row(w)?;
    for r in 2..=4 {
        order_row(w, r, Cell::Text("WHITE HANGING HEART T-LIGHT HOLDER"))?;
    }
    sheet_close(w)?;
    zip.finish()
}

fn odd_cells_xlsx(path: &Path) -> Io {
    let mut zip = workbook_frame(path, false)?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, None)?;
    header_row(w)?;
    order_row(w, 2, Cell::Text("GOOD ROW"))?;
    let odd: [[Cell; 8]; 4] = [
        // A formula error where the price should be.
        [
            Cell::Text("536366"),
            Cell::Text("22633"),
            Cell::Text("HAND WARMER"),
            Cell::Number("6"),
            Cell::Text("2010-12-01 08:28:00"),
            Cell::Typed("e", "#DIV/0!"),
            Cell::Number("17850"),
            Cell::Text("United Kingdom"),
        ],
        // A price whose line revenue overflows.
        [
            Cell::Text("536367"),
            Cell::Text("84879"),
            Cell::Text("BIRD ORNAMENT"),
            Cell::Number("6"),
            Cell::Text("2010-12-01 08:34:00"),
            Cell::Number("1.7E+308"),
            Cell::Number("13047"),
            Cell::Text("United Kingdom"),
        ],
        // A boolean quantity.
        [
            Cell::Text("536368"),
            Cell::Text("22960"),
            Cell::Text("JAM MAKING SET"),
            Cell::Typed("b", "1"),
            Cell::Text("2010-12-01 08:34:00"),
            Cell::Number("4.25"),
            Cell::Number("13047"),
            Cell::Text("United Kingdom"),
        ],
        // A bare date serial without a date style, and an empty stock code.
        [
            Cell::Text("536369"),
            Cell::Text(""),
            Cell::Text("BATH BUILDING BLOCK"),
            Cell::Number("3"),
            Cell::Number("40513.35"),
            Cell::Number("5.95"),
            Cell::Number("13047"),
            Cell::Text("United Kingdom"),
        ],
    ];
    for (i, row) in odd.iter().enumerate() {
        sheet_row(w, 3 + i as u64, row)?;
    }
    sheet_close(w)?;
    zip.finish()
}

fn zip_not_workbook(path: &Path) -> Io {
    let mut zip = Zip::create(path)?;
    writeln!(zip.part("readme.txt")?, "{HEADER}\n{ROW}")?;
    zip.finish()
}

fn missing_sheet_part(path: &Path) -> Io {
    workbook_frame(path, false)?.finish()
}

/// Two orders and one cell at the last address a sheet has, announced by the dimension.
fn stray_cell_xlsx(path: &Path) -> Io {
    let mut zip = workbook_frame(path, false)?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, Some("A1:XFD1048576"))?;
    header_row(w)?;
    order_row(w, 2, Cell::Text("WHITE HANGING HEART T-LIGHT HOLDER"))?;
    order_row(w, 3, Cell::Text("WHITE METAL LANTERN"))?;
    write!(
        w,
        "<row r=\"1048576\"><c r=\"XFD1048576\" t=\"inlineStr\"><is><t>stray</t></is></c></row>"
    )?;
    sheet_close(w)?;
    zip.finish()
}

/// 1.1 GiB of whitespace between two rows: about 1 MB deflated.
fn whitespace_bomb_xlsx(path: &Path) -> Io {
    let mut zip = workbook_frame(path, false)?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, None)?;
    header_row(w)?;
    repeat(w, b" ", 1100 * MIB)?;
    order_row(w, 2, Cell::Text("WHITE HANGING HEART T-LIGHT HOLDER"))?;
    sheet_close(w)?;
    zip.finish()
}

/// 65,536 orders each with a 16 KiB note in a ninth column: 1 GiB of sheet XML.
fn rows_bomb_xlsx(path: &Path) -> Io {
    let note = "N".repeat(16 * 1024);
    let mut zip = workbook_frame(path, false)?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, None)?;
    let mut header: Vec<Cell> = HEADER.split(',').map(Cell::Text).collect();
    header.push(Cell::Text("Notes"));
    sheet_row(w, 1, &header)?;
    for r in 2..=65_537u64 {
        let invoice = (536_000 + r).to_string();
        sheet_row(
            w,
            r,
            &[
                Cell::Text(&invoice),
                Cell::Text("85123A"),
                Cell::Text("WHITE HANGING HEART T-LIGHT HOLDER"),
                Cell::Number("6"),
                Cell::Text("2010-12-01 08:26:00"),
                Cell::Number("2.55"),
                Cell::Number("17850"),
                Cell::Text("United Kingdom"),
                Cell::Text(&note),
            ],
        )?;
    }
    sheet_close(w)?;
    zip.finish()
}

/// A three-row sheet whose shared-strings table holds 65,536 strings of 16 KiB: 1 GiB inflated.
fn shared_strings_bomb_xlsx(path: &Path) -> Io {
    let mut zip = workbook_frame(path, true)?;
    let w = zip.part("xl/sharedStrings.xml")?;
    write!(
        w,
        "{SHEET_START}<sst xmlns=\"{MAIN_NS}\" count=\"65536\" uniqueCount=\"65536\">"
    )?;
    let item = format!("<si><t>{}</t></si>", "S".repeat(16 * 1024));
    repeat(w, item.as_bytes(), item.len() * 65_536)?;
    write!(w, "</sst>")?;
    let w = zip.part("xl/worksheets/sheet1.xml")?;
    sheet_open(w, None)?;
    header_row(w)?;
    for r in 2..=4 {
        order_row(w, r, Cell::Typed("s", "0"))?;
    }
    sheet_close(w)?;
    zip.finish()
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Io {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let mut writer = ArrowWriter::try_new(File::create(path)?, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

/// Order columns with `n` rows; descriptions from `description`, dates as timestamp[us, UTC].
fn orders_batch(n: usize, description: impl Fn(usize) -> String) -> RecordBatch {
    let text = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values((0..n).map(f)))
    };
    // 2010-12-01 08:26:00 UTC, one minute apart.
    let dates: Vec<i64> = (0..n as i64)
        .map(|i| 1_291_191_960_000_000 + i * 60_000_000)
        .collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("InvoiceNo", text(&|i| (536365 + i).to_string())),
        ("StockCode", text(&|_| "85123A".to_string())),
        ("Description", text(&description)),
        ("Quantity", Arc::new(Int64Array::from(vec![6; n]))),
        (
            "InvoiceDate",
            Arc::new(TimestampMicrosecondArray::from(dates).with_timezone("UTC")),
        ),
        ("UnitPrice", Arc::new(Float64Array::from(vec![2.55; n]))),
        ("CustomerID", Arc::new(Float64Array::from(vec![17850.0; n]))),
        ("Country", text(&|_| "United Kingdom".to_string())),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

fn utc_timestamps_parquet(path: &Path) -> Io {
    write_parquet(path, &orders_batch(3, |_| "WHITE HANGING HEART".into()))
}

fn truncated_parquet(path: &Path) -> Io {
    write_parquet(path, &orders_batch(1000, |i| format!("ITEM {i}")))?;
    let len = std::fs::metadata(path)?.len();
    File::options().write(true).open(path)?.set_len(len / 2)
}

/// Orders plus a list and a struct column (which have no text form of their own).
fn nested_types_parquet(path: &Path) -> Io {
    let orders = orders_batch(2, |_| "WHITE HANGING HEART".into());
    let tags =
        ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), Some(2)]), None]);
    let meta = StructArray::from(vec![(
        Arc::new(Field::new("a", DataType::Int32, true)),
        Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
    )]);
    let mut fields: Vec<Field> = orders
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("Tags", tags.data_type().clone(), true));
    fields.push(Field::new("Meta", meta.data_type().clone(), true));
    let mut columns = orders.columns().to_vec();
    columns.push(Arc::new(tags));
    columns.push(Arc::new(meta));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    write_parquet(path, &batch)
}

/// Two ordinary rows and four with a 64 MiB description each.
fn huge_strings_parquet(path: &Path) -> Io {
    write_parquet(
        path,
        &orders_batch(6, |i| {
            if i < 2 {
                "WHITE HANGING HEART".into()
            } else {
                "H".repeat(64 * MIB)
            }
        }),
    )
}

fn empty_rows_parquet(path: &Path) -> Io {
    write_parquet(path, &orders_batch(0, |_| String::new()))
}
