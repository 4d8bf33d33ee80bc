//! A generator of realistic orders in the Online Retail layout, deterministic by seed.
//!
//! The shape follows the real UCI data: a catalogue of a few thousand products with Zipf-like
//! popularity, a few thousand customers of whom most are in the United Kingdom, trading days from
//! December 2010 to December 2011 weighted by the real monthly volumes (November peak, no
//! Saturdays), multi-line invoices in time order, cancellation invoices (`C…`, negative quantities)
//! following some orders (about 2% of lines), guest invoices without a customer id (about 25% of
//! lines), and a few manual price outliers. `dirty` corrupts that fraction of rows in ways real
//! exports break (a word for a number, an impossible date, a missing code, a stray field).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use rand_pcg::Pcg64Mcg;

use crate::error::IngestError;

/// Output formats of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenFormat {
    /// CSV with the Online Retail header.
    Csv,
    /// An Excel workbook with date cells (a new sheet every million rows).
    Xlsx,
    /// JSON Lines with the Online Retail keys.
    Jsonl,
}

/// The Online Retail column names, in order.
pub const ONLINE_RETAIL_HEADER: [&str; 8] = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
];

const ADJECTIVES: [&str; 16] = [
    "WHITE", "RED", "PINK", "BLUE", "GREEN", "IVORY", "VINTAGE", "RETRO", "JUMBO", "SMALL",
    "LARGE", "HEART", "REGENCY", "POLKADOT", "GLASS", "WOODEN",
];
const THEMES: [&str; 12] = [
    "HANGING",
    "METAL",
    "CERAMIC",
    "PAISLEY",
    "SPACEBOY",
    "DOLLY GIRL",
    "CHRISTMAS",
    "FLORAL",
    "STRIPE",
    "BIRD",
    "ROSE",
    "LANTERN",
];
const ITEMS: [&str; 20] = [
    "T-LIGHT HOLDER",
    "LANTERN",
    "COAT HANGER",
    "HOT WATER BOTTLE",
    "BAG",
    "LUNCH BOX",
    "TEACUP AND SAUCER",
    "CAKE STAND",
    "SIGN",
    "BUNTING",
    "CANDLE",
    "MUG",
    "NOTEBOOK",
    "PURSE",
    "CLOCK",
    "DOORSTOP",
    "TISSUES",
    "PARTY BAG",
    "PHOTO FRAME",
    "CUSHION COVER",
];
/// Countries and their share of customers, roughly as in the real data.
const COUNTRIES: [(&str, f64); 24] = [
    ("United Kingdom", 88.0),
    ("Germany", 2.2),
    ("France", 2.0),
    ("EIRE", 1.0),
    ("Spain", 0.7),
    ("Netherlands", 0.5),
    ("Belgium", 0.6),
    ("Switzerland", 0.5),
    ("Portugal", 0.5),
    ("Australia", 0.3),
    ("Norway", 0.3),
    ("Italy", 0.4),
    ("Channel Islands", 0.2),
    ("Finland", 0.3),
    ("Cyprus", 0.2),
    ("Sweden", 0.2),
    ("Austria", 0.2),
    ("Denmark", 0.2),
    ("Japan", 0.2),
    ("Poland", 0.2),
    ("USA", 0.1),
    ("Israel", 0.1),
    ("Singapore", 0.1),
    ("Unspecified", 0.1),
];
/// Lines per month in the real data, December 2010 to December 2011 (the last month has 9 days).
const MONTH_WEIGHTS: [f64; 13] = [
    42.5, 35.1, 27.7, 36.7, 29.9, 37.0, 36.7, 39.5, 35.3, 50.2, 60.7, 84.7, 25.5,
];
const QUANTITIES: [(i64, f64); 14] = [
    (1, 24.0),
    (2, 16.0),
    (3, 7.0),
    (4, 7.0),
    (6, 10.0),
    (8, 3.0),
    (10, 4.0),
    (12, 15.0),
    (24, 6.0),
    (36, 1.5),
    (48, 2.0),
    (72, 0.8),
    (96, 0.5),
    (144, 0.4),
];

struct Product {
    code: String,
    description: String,
    price: f64,
}

/// One generated line, rendered as the eight Online Retail fields.
#[derive(Debug, Clone, PartialEq)]
pub struct GenRow {
    /// Field texts in [`ONLINE_RETAIL_HEADER`] order.
    pub fields: [String; 8],
    /// The invoice date (for Excel date cells); `None` when the row was made dirty in its date.
    pub date: Option<NaiveDateTime>,
    /// A dirty row with one field too many (delimited output only).
    pub extra_field: bool,
}

/// A deterministic stream of order lines.
pub struct Generator {
    rng: Pcg64Mcg,
    products: Vec<Product>,
    product_pick: Zipf<f64>,
    customers: Vec<(i64, &'static str)>,
    customer_pick: Zipf<f64>,
    days: Vec<(NaiveDate, f64)>,
    rows_total: u64,
    rows_done: u64,
    day: usize,
    day_budget: f64,
    clock: NaiveDateTime,
    invoice: u64,
    pending: std::collections::VecDeque<GenRow>,
    dirty: f64,
}

fn pick_weighted<T: Copy>(rng: &mut Pcg64Mcg, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn price_text(p: f64) -> String {
    let s = format!("{p:.2}");
    let s = s.trim_end_matches('0');
    if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    }
}

impl Generator {
    /// A generator of `rows` lines seeded by `seed`, corrupting a `dirty` fraction (0..1) of them.
    pub fn new(rows: u64, seed: u64, dirty: f64) -> Generator {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let price_dist = LogNormal::new(0.9, 0.8).expect("valid lognormal");
        let mut products: Vec<Product> = (0..3800)
            .map(|i| {
                let code = if i % 3 == 0 {
                    format!(
                        "{}{}",
                        20000 + i * 17 % 70000,
                        ['A', 'B', 'C', 'D', 'E', 'F'][i % 6]
                    )
                } else {
                    format!("{}", 20000 + i * 17 % 70000)
                };
                let description = format!(
                    "{} {} {}",
                    ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                    THEMES[rng.random_range(0..THEMES.len())],
                    ITEMS[rng.random_range(0..ITEMS.len())]
                );
                let price: f64 = price_dist.sample(&mut rng);
                Product {
                    code,
                    description,
                    price: (price.clamp(0.1, 60.0) * 20.0).round() / 20.0 + 0.05,
                }
            })
            .collect();
        products.push(Product {
            code: "POST".into(),
            description: "POSTAGE".into(),
            price: 18.0,
        });
        let mut countries: Vec<(&'static str, f64)> = COUNTRIES.to_vec();
        countries.sort_by(|a, b| b.1.total_cmp(&a.1));
        let customers = (0..4300)
            .map(|i| (12346 + i, pick_weighted(&mut rng, &countries)))
            .collect();
        let first = NaiveDate::from_ymd_opt(2010, 12, 1).expect("valid date");
        let last = NaiveDate::from_ymd_opt(2011, 12, 9).expect("valid date");
        let mut days = Vec::new();
        let mut d = first;
        while d <= last {
            if d.weekday() != Weekday::Sat {
                let month_index = ((d.year() - 2010) * 12 + d.month() as i32 - 12) as usize;
                let days_in_month = if month_index == 12 { 8.0 } else { 26.0 };
                days.push((d, MONTH_WEIGHTS[month_index] / days_in_month));
            }
            d += Duration::days(1);
        }
        let total: f64 = days.iter().map(|(_, w)| w).sum();
        for (_, w) in &mut days {
            *w = *w / total * rows as f64;
        }
        let clock = days[0].0.and_hms_opt(8, 0, 0).expect("valid time");
        Generator {
            rng,
            product_pick: Zipf::new(products.len() as f64 - 1.0, 1.05).expect("valid zipf"),
            products,
            customers,
            customer_pick: Zipf::new(4300.0, 0.7).expect("valid zipf"),
            day_budget: days[0].1,
            days,
            rows_total: rows,
            rows_done: 0,
            day: 0,
            clock,
            invoice: 536365,
            pending: Default::default(),
            dirty: dirty.clamp(0.0, 1.0),
        }
    }

    fn advance_clock(&mut self) {
        // Spread a day's invoices over opening hours; move to the next trading day when its budget is spent.
        while self.day_budget <= 0.0 && self.day + 1 < self.days.len() {
            self.day += 1;
            self.day_budget += self.days[self.day].1;
            self.clock = self.days[self.day]
                .0
                .and_hms_opt(7, 45, 0)
                .expect("valid time");
        }
        let minutes = (self.rng.random::<f64>() * 12.0 * 60.0 * 21.0
            / self.days[self.day].1.max(21.0)) as i64;
        let next = self.clock + Duration::minutes(minutes.max(0));
        let closing = self.days[self.day]
            .0
            .and_hms_opt(20, 0, 0)
            .expect("valid time");
        self.clock = next.min(closing);
    }

    fn line(
        &mut self,
        invoice: &str,
        product: usize,
        quantity: i64,
        customer: Option<(i64, &str)>,
    ) -> GenRow {
        let p = &self.products[product];
        let mut price = p.price;
        if self.rng.random::<f64>() < 0.15 {
            price = (price * 0.85 * 100.0).round() / 100.0; // bulk price
        }
        let (code, description) = if self.rng.random::<f64>() < 0.0008 {
            price = (LogNormal::<f64>::new(4.5, 1.2)
                .expect("valid lognormal")
                .sample(&mut self.rng)
                * 100.0)
                .round()
                / 100.0;
            ("M".to_string(), "Manual".to_string())
        } else {
            (p.code.clone(), p.description.clone())
        };
        let country = customer.map_or_else(|| "United Kingdom".to_string(), |(_, c)| c.to_string());
        GenRow {
            fields: [
                invoice.to_string(),
                code,
                description,
                quantity.to_string(),
                self.clock.format("%Y-%m-%d %H:%M:%S").to_string(),
                price_text(price),
                customer.map_or_else(String::new, |(id, _)| format!("{id}.0")),
                country,
            ],
            date: Some(self.clock),
            extra_field: false,
        }
    }

    fn make_invoice(&mut self) {
        self.advance_clock();
        let customer = if self.rng.random::<f64>() < 0.22 {
            None
        } else {
            let i = self.customer_pick.sample(&mut self.rng) as usize - 1;
            Some(self.customers[i])
        };
        let number = self.invoice;
        self.invoice += 1;
        let invoice = number.to_string();
        let lines = 1 + (-(self.rng.random::<f64>().max(1e-12)).ln() * 20.0) as usize;
        let mut bought = Vec::with_capacity(lines);
        for _ in 0..lines {
            let product = self.product_pick.sample(&mut self.rng) as usize - 1;
            let mut quantity = pick_weighted(&mut self.rng, &QUANTITIES);
            if self.rng.random::<f64>() < 0.0005 {
                quantity *= 100; // a wholesale order
            }
            let row = self.line(&invoice, product, quantity, customer);
            bought.push((product, quantity));
            self.pending.push_back(row);
        }
        if let (Some(c), true) = (customer, self.rng.random::<f64>() < 0.2) {
            let cancelled = format!("C{}", self.invoice);
            self.invoice += 1;
            self.clock += Duration::minutes(3);
            for _ in 0..(1 + self.rng.random_range(0..3)).min(bought.len()) {
                let (product, quantity) = bought[self.rng.random_range(0..bought.len())];
                let row = self.line(&cancelled, product, -quantity, Some(c));
                self.pending.push_back(row);
            }
        }
        self.day_budget -= self.pending.len() as f64;
    }

    fn dirty_row(&mut self, mut row: GenRow) -> GenRow {
        match self.rng.random_range(0..5) {
            0 => {
                row.fields[3] =
                    ["lots", "", "1O", "twelve"][self.rng.random_range(0..4)].to_string()
            }
            1 => {
                row.fields[4] = "2011-02-30 10:00:00".to_string();
                row.date = None;
            }
            2 => row.fields[5] = ["N/A", "£2.55", "1.2.3"][self.rng.random_range(0..3)].to_string(),
            3 => row.fields[1] = String::new(),
            _ => row.extra_field = true,
        }
        row
    }
}

impl Iterator for Generator {
    type Item = GenRow;

    fn next(&mut self) -> Option<GenRow> {
        if self.rows_done >= self.rows_total {
            return None;
        }
        if self.pending.is_empty() {
            self.make_invoice();
        }
        let row = self.pending.pop_front()?;
        self.rows_done += 1;
        Some(
            if self.dirty > 0.0 && self.rng.random::<f64>() < self.dirty {
                self.dirty_row(row)
            } else {
                row
            },
        )
    }
}

/// Writes `rows` generated lines to `out` in `format`, calling `progress` with the rows written so far.
pub fn write(
    out: &Path,
    format: GenFormat,
    generator: Generator,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, IngestError> {
    let werr = |e: &dyn std::fmt::Display| IngestError::Write {
        path: out.to_path_buf(),
        reason: e.to_string(),
    };
    let mut n = 0u64;
    match format {
        GenFormat::Csv => {
            let file = File::create(out).map_err(|e| IngestError::io(out, e))?;
            let mut csv = csv::WriterBuilder::new()
                .flexible(true)
                .buffer_capacity(1 << 20)
                .from_writer(file);
            csv.write_record(ONLINE_RETAIL_HEADER)
                .map_err(|e| werr(&e))?;
            for row in generator {
                // A dirty row may carry a stray field, as hand-edited exports do.
                let stray = row.extra_field.then_some("stray");
                csv.write_record(row.fields.iter().map(String::as_str).chain(stray))
                    .map_err(|e| werr(&e))?;
                n += 1;
                if n.is_multiple_of(65_536) {
                    progress(n);
                }
            }
            csv.flush().map_err(|e| IngestError::io(out, e))?;
        }
        GenFormat::Jsonl => {
            let file = File::create(out).map_err(|e| IngestError::io(out, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            for row in generator {
                if row.extra_field {
                    // A dirty JSON row is cut off, as a truncated export would be.
                    writeln!(w, "{{\"InvoiceNo\": \"{}\", broken", row.fields[0])
                        .map_err(|e| IngestError::io(out, e))?;
                } else {
                    let obj: serde_json::Map<String, serde_json::Value> = ONLINE_RETAIL_HEADER
                        .iter()
                        .zip(&row.fields)
                        .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
                        .collect();
                    serde_json::to_writer(&mut w, &obj).map_err(|e| werr(&e))?;
                    w.write_all(b"\n").map_err(|e| IngestError::io(out, e))?;
                }
                n += 1;
                if n.is_multiple_of(65_536) {
                    progress(n);
                }
            }
            w.flush().map_err(|e| IngestError::io(out, e))?;
        }
        GenFormat::Xlsx => {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let date_format = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd hh:mm");
            let mut sheet_rows = u32::MAX;
            let mut sheet_no = 0;
            let mut ws: Option<&mut rust_xlsxwriter::Worksheet> = None;
            for row in generator {
                if sheet_rows >= 1_000_000 {
                    sheet_no += 1;
                    let sheet = wb
                        .add_worksheet_with_constant_memory()
                        .map_err(|e| werr(&e))?;
                    sheet
                        .set_name(format!("Online Retail {sheet_no}"))
                        .map_err(|e| werr(&e))?;
                    for (c, h) in ONLINE_RETAIL_HEADER.iter().enumerate() {
                        sheet.write_string(0, c as u16, *h).map_err(|e| werr(&e))?;
                    }
                    sheet_rows = 0;
                    ws = Some(sheet);
                }
                let sheet = ws.as_mut().expect("a sheet was added");
                sheet_rows += 1;
                let r = sheet_rows;
                for (c, v) in row.fields.iter().enumerate() {
                    let c = c as u16;
                    let numeric = matches!(c, 3 | 5 | 6);
                    match (c, row.date, v.parse::<f64>()) {
                        (4, Some(d), _) => sheet
                            .write_datetime_with_format(r, c, d, &date_format)
                            .map(|_| ()),
                        (_, _, Ok(x)) if numeric => sheet.write_number(r, c, x).map(|_| ()),
                        _ if v.is_empty() => Ok(()),
                        _ => sheet.write_string(r, c, v).map(|_| ()),
                    }
                    .map_err(|e| werr(&e))?;
                }
                n += 1;
                if n.is_multiple_of(65_536) {
                    progress(n);
                }
            }
            wb.save(out).map_err(|e| werr(&e))?;
        }
    }
    progress(n);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows_and_exact_count() {
        let a: Vec<GenRow> = Generator::new(5000, 7, 0.0).collect();
        let b: Vec<GenRow> = Generator::new(5000, 7, 0.0).collect();
        assert_eq!(a.len(), 5000);
        assert_eq!(a, b);
        let c: Vec<GenRow> = Generator::new(5000, 8, 0.0).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn shaped_like_the_real_data() {
        let rows: Vec<GenRow> = Generator::new(200_000, 1, 0.0).collect();
        let n = rows.len() as f64;
        let cancelled = rows.iter().filter(|r| r.fields[0].starts_with('C')).count() as f64 / n;
        let guests = rows.iter().filter(|r| r.fields[6].is_empty()).count() as f64 / n;
        let uk = rows
            .iter()
            .filter(|r| r.fields[7] == "United Kingdom")
            .count() as f64
            / n;
        let november = rows
            .iter()
            .filter(|r| r.fields[4].starts_with("2011-11"))
            .count() as f64
            / n;
        let february = rows
            .iter()
            .filter(|r| r.fields[4].starts_with("2011-02"))
            .count() as f64
            / n;
        assert!(
            (0.01..0.04).contains(&cancelled),
            "cancellations {cancelled}"
        );
        assert!((0.15..0.35).contains(&guests), "missing customers {guests}");
        assert!(uk > 0.8, "UK share {uk}");
        assert!(
            november > 2.0 * february,
            "November {november} vs February {february}"
        );
        assert!(
            rows.windows(2).all(|w| w[0].fields[4] <= w[1].fields[4]),
            "dates in order"
        );
    }
}
