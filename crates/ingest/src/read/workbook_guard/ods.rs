//! `.ods` checks: calamine parses every table of `content.xml` at open into dense ranges (values
//! and formulas), expanding `number-rows-repeated` and `number-columns-repeated` as it goes, and
//! keeps them all. A few bytes can declare a million repeated rows of 16,384 repeated cells, so
//! this module follows calamine's table reader over the tags (which cells count as empty, how
//! repeats are capped, which rows the final range spans) and estimates the memory of its cell
//! lists and ranges, refusing the workbook before calamine builds more than
//! [`Limits::table_memory`](super::Limits::table_memory).

use super::{
    EXCEL_COLUMNS, EXCEL_ROWS, Parts, Refusal, Refused, XmlVisitor, attr, check_memory, parse_u64,
    xml_scan::{self, NoVisitor},
};

/// Bytes of one cell in calamine's lists and ranges: a value (`Data`, 32 bytes) and a formula
/// (`String`, 24).
const CELL_BYTES: u64 = 56;

/// Checks the parts calamine reads from an `.ods`.
pub(super) fn check(parts: &mut Parts<'_>) -> Result<(), Refused> {
    let limits = parts.limits();
    // calamine gathers the manifest after its first entry into one buffer.
    let manifest = "META-INF/manifest.xml";
    let xml = parts.xml_limits(&[]);
    parts
        .scan_xml(manifest, limits.metadata_bytes, xml, &mut NoVisitor)
        .map_err(|r| Refused::new(format!("part {manifest}"), r))?;

    let xml = parts.xml_limits(&["table-cell", "covered-table-cell", "annotation"]);
    let mut tables = Tables::new(limits.table_memory);
    let scanned = parts.scan_xml("content.xml", limits.ods_content_bytes, xml, &mut tables);
    scanned
        .and_then(|_| tables.finish())
        .map_err(|r| Refused::new(tables.part(), r))
}

/// Follows calamine's `read_table`, `read_row` and `get_range` over the tags of `content.xml`.
struct Tables {
    limit: u64,
    /// Ranges of the tables read so far: calamine keeps them all.
    held: u64,
    /// The largest data range: reading a sheet copies it.
    largest: u64,
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    name: String,
    /// Sum of the row repeats, capped at Excel's rows as calamine caps them.
    rows: u64,
    /// Sum of repeats before the first row with a cell (the range's first row).
    rows_before_first: Option<u64>,
    /// Sum of repeats through the last row with a cell.
    rows_through_last: u64,
    col_min: u64,
    col_max: u64,
    /// Text cloned into the range: each repeated row copies its cells' text.
    range_text: u64,
    /// calamine's cell lists for this table (dropped once its range is built).
    lists: u64,
    row: Option<Row>,
    cell: Option<Cell>,
}

#[derive(Default)]
struct Row {
    repeats: u64,
    /// Cells pushed so far (calamine stops at 16,384).
    pushed: u64,
    /// Empty cells not pushed yet: calamine pushes them only if a later cell follows.
    pending_empty: u64,
    first: Option<u64>,
    last: u64,
    text: u64,
}

struct Cell {
    start: u64,
    repeats: u64,
    /// Whether calamine keeps the cell (a value, a string or a formula), else it is empty.
    kept: bool,
    /// Text taken from attributes (string, date or time value, formula).
    attr_text: u64,
    /// Whether the text is the content (a string cell without a value attribute).
    content_text: bool,
    spaces: u64,
}

impl Tables {
    fn new(limit: u64) -> Self {
        Tables {
            limit,
            held: 0,
            largest: 0,
            table: None,
        }
    }

    /// The part (and sheet) a refusal concerns.
    fn part(&self) -> String {
        match &self.table {
            Some(t) => format!("sheet `{}` (content.xml)", t.name),
            None => "part content.xml".to_string(),
        }
    }

    fn finish(&self) -> Result<(), Refusal> {
        check_memory(self.held.saturating_add(self.largest), self.limit)
    }

    fn start_table(&mut self, attrs: &[u8]) {
        if self.table.is_none()
            && let Some(name) = attr(attrs, b"table:name")
        {
            self.table = Some(Table {
                name: xml_scan::unescape(name),
                col_min: u64::MAX,
                ..Table::default()
            });
        }
    }

    fn end_table(&mut self) -> Result<(), Refusal> {
        let Some(t) = self.table.as_ref() else {
            return Ok(());
        };
        let range = t.range_bytes();
        // While calamine builds the range, the table's cell lists are still alive.
        let peak = self.held.saturating_add(t.lists).saturating_add(range);
        check_memory(peak, self.limit)?;
        self.table = None;
        self.held = self.held.saturating_add(range);
        self.largest = self.largest.max(range);
        Ok(())
    }

    fn check_lists(&self) -> Result<(), Refusal> {
        let lists = self.table.as_ref().map_or(0, |t| t.lists);
        check_memory(self.held.saturating_add(lists), self.limit)
    }
}

impl Table {
    /// The dense ranges calamine builds: the rows from the first to the last with a cell (with
    /// their repeats) times the columns from the leftmost to the rightmost cell, plus the text.
    fn range_bytes(&self) -> u64 {
        let Some(before) = self.rows_before_first else {
            return 0;
        };
        let rows = self.rows_through_last.saturating_sub(before);
        let cols = self.col_max.saturating_add(1).saturating_sub(self.col_min);
        rows.saturating_mul(cols)
            .saturating_mul(CELL_BYTES)
            .saturating_add(self.range_text)
    }

    fn start_row(&mut self, attrs: &[u8]) {
        let repeats = attr(attrs, b"table:number-rows-repeated")
            .and_then(parse_u64)
            .unwrap_or(1);
        let capped = repeats.min(EXCEL_ROWS.saturating_sub(self.rows));
        self.rows += capped;
        self.row = Some(Row {
            repeats: capped,
            ..Row::default()
        });
    }

    fn end_row(&mut self) {
        let Some(row) = self.row.take() else {
            return;
        };
        let before = self.rows - row.repeats;
        if let Some(first) = row.first {
            self.rows_before_first.get_or_insert(before);
            self.rows_through_last = self.rows;
            self.col_min = self.col_min.min(first);
            self.col_max = self.col_max.max(row.last);
            self.range_text = self
                .range_text
                .saturating_add(row.repeats.saturating_mul(row.text));
        }
    }

    fn start_cell(&mut self, attrs: &[u8], at: u64) {
        if self.row.is_none() || self.cell.is_some() {
            return;
        }
        let len = |key: &[u8]| attr(attrs, key).map(|v| v.len() as u64);
        let numeric = len(b"office:value").or(len(b"office:boolean-value"));
        let textual = [
            &b"office:string-value"[..],
            b"office:date-value",
            b"office:time-value",
        ]
        .iter()
        .filter_map(|k| len(k))
        .max();
        let has_value = numeric.is_some() || textual.is_some();
        // A string cell without a value attribute takes its text from its content.
        let content_text = !has_value && attr(attrs, b"office:value-type") == Some(b"string");
        let formula = len(b"table:formula").unwrap_or(0);
        self.cell = Some(Cell {
            start: at,
            repeats: attr(attrs, b"table:number-columns-repeated")
                .and_then(parse_u64)
                .unwrap_or(1),
            kept: has_value || content_text || formula > 0,
            attr_text: textual.unwrap_or(0) + formula,
            content_text,
            spaces: 0,
        });
    }

    /// A cell ends: push it as calamine's `read_row` does.
    fn end_cell(&mut self, at: u64) {
        let (Some(cell), Some(row)) = (self.cell.take(), self.row.as_mut()) else {
            return;
        };
        let room = |row: &Row| EXCEL_COLUMNS.saturating_sub(row.pushed);
        let empties = row.pending_empty.min(room(row));
        row.pending_empty = 0;
        row.pushed += empties;
        let repeats = cell.repeats.min(room(row));
        let mut lists = empties.saturating_mul(CELL_BYTES);
        if !cell.kept {
            row.pending_empty = repeats;
        } else if repeats > 0 {
            // Each repeat clones the value and formula text (an allocation of at least 32 bytes).
            let content = if cell.content_text {
                (at - cell.start).saturating_add(cell.spaces)
            } else {
                0
            };
            let text = match cell.attr_text.saturating_add(content) {
                0 => 0,
                n => n.saturating_add(32),
            };
            row.first.get_or_insert(row.pushed);
            row.pushed += repeats;
            row.last = row.pushed - 1;
            row.text = row.text.saturating_add(repeats.saturating_mul(text));
            lists = lists.saturating_add(repeats.saturating_mul(CELL_BYTES.saturating_add(text)));
        }
        self.lists = self.lists.saturating_add(lists);
    }
}

impl XmlVisitor for Tables {
    fn start(&mut self, name: &[u8], attrs: &[u8], _: bool, at: u64) -> Result<(), Refusal> {
        match name {
            b"table:table" => self.start_table(attrs),
            _ => {
                let Some(t) = self.table.as_mut() else {
                    return Ok(());
                };
                match name {
                    b"table:table-row" if t.row.is_none() => t.start_row(attrs),
                    b"table:table-cell" | b"table:covered-table-cell" => t.start_cell(attrs, at),
                    // calamine appends `text:c` spaces to the cell's text, one at a time.
                    b"text:s" => {
                        if let Some(cell) = t.cell.as_mut() {
                            let count = attr(attrs, b"text:c").and_then(parse_u64).unwrap_or(1);
                            cell.spaces = cell.spaces.saturating_add(count);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.check_lists()
    }

    fn end(&mut self, name: &[u8], at: u64) -> Result<(), Refusal> {
        match name {
            b"table:table" => return self.end_table(),
            _ => {
                let Some(t) = self.table.as_mut() else {
                    return Ok(());
                };
                match name {
                    b"table:table-cell" | b"table:covered-table-cell" => t.end_cell(at),
                    b"table:table-row" if t.cell.is_none() => t.end_row(),
                    _ => {}
                }
            }
        }
        self.check_lists()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{XmlLimits, XmlScan};
    use super::*;

    fn estimate(content: &str, limit: u64) -> Result<u64, Refusal> {
        let xml = XmlLimits {
            token_bytes: 1 << 20,
            depth: 64,
            text_bytes: 1 << 20,
            text_elements: &["table-cell"],
        };
        let mut scan = XmlScan::new(xml);
        let mut tables = Tables::new(limit);
        scan.feed(content.as_bytes(), &mut tables)?;
        tables.finish()?;
        Ok(tables.held)
    }

    const CELL: &str = r#"<table:table-cell office:value-type="float" office:value="1"/>"#;

    #[test]
    fn trailing_empty_repeats_cost_nothing() {
        // LibreOffice ends every row and table with huge repeats of empty cells and rows.
        let content = format!(
            r#"<table:table table:name="S"><table:table-row>{CELL}{CELL}<table:table-cell table:number-columns-repeated="16382"/></table:table-row><table:table-row table:number-rows-repeated="1048575"><table:table-cell table:number-columns-repeated="16384"/></table:table-row></table:table>"#
        );
        assert_eq!(estimate(&content, 1 << 30).unwrap(), 2 * CELL_BYTES);
        let strings = content.replace(CELL, r#"<table:table-cell office:value-type="string"><text:p>abc</text:p></table:table-cell>"#);
        let held = estimate(&strings, 1 << 30).unwrap();
        assert!(
            (2 * (CELL_BYTES + 32)..2 * (CELL_BYTES + 80)).contains(&held),
            "{held}"
        );
    }

    #[test]
    fn repeated_values_are_counted_as_expanded() {
        let content = r#"<table:table table:name="Bomb"><table:table-row table:number-rows-repeated="1000000"><table:table-cell table:number-columns-repeated="1000" office:value-type="float" office:value="1"/></table:table-row></table:table>"#;
        let err = estimate(content, 160 << 20).unwrap_err();
        assert!(matches!(err, Refusal::Memory { .. }), "{err}");
    }

    #[test]
    fn empty_cells_between_values_are_pushed() {
        let content = format!(
            r#"<table:table table:name="S"><table:table-row>{CELL}<table:table-cell table:number-columns-repeated="100"/>{CELL}</table:table-row></table:table>"#
        );
        assert_eq!(estimate(&content, 1 << 30).unwrap(), 102 * CELL_BYTES);
    }
}
