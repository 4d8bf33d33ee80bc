//! The bad-input corpus: every file in `testdata/bad/` plus hostile files generated here (too large to
//! commit) is ingested by its own `shopstream ingest` process, and for each the promises of issue 10 are
//! checked from the outside:
//!
//! 1. the file is loaded (exit 0) or refused (exit 1, a stderr line naming it and `refused`, one
//!    `dead_letters` row with `field` NULL and a reason starting `file refused: `, nothing else of it);
//! 2. a loaded file's `loads` row has read = loaded + rejected, its `orders` rows number `rows_loaded` and
//!    its dead letters `rows_rejected`; no loaded number is NaN or infinite;
//! 3. every dead letter has a reason and its `record` is a JSON object of source column → text;
//! 4. no crash (a signal), no hang (300 s), peak RSS ≤ 512 MiB as GNU time measures it.
//!
//! Some cases also have a fixed outcome (`Expect`): the ones whose right answer the issue states.
//! The test runs every case, then fails once with a table of every broken check.

mod hostile;

use std::fmt::Write as _;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PEAK_LIMIT_KIB: u64 = 512 * 1024;
/// A run still going after this is a hang (debug build, a few hundred MB of input: well under a minute).
const HANG_AFTER: Duration = Duration::from_secs(300);
/// Past this RSS a run is killed at once: the machine is shared and the verdict is already known.
const RUNAWAY_KIB: u64 = 2 * 1024 * 1024;
const GNU_TIME: &str = "/usr/bin/time";

/// How many rows a loaded case must count.
#[derive(Debug, Clone, Copy)]
pub enum Count {
    Exactly(u64),
    AtLeast(u64),
    Any,
}

impl Count {
    fn holds(self, n: u64) -> bool {
        match self {
            Count::Exactly(e) => n == e,
            Count::AtLeast(e) => n >= e,
            Count::Any => true,
        }
    }
}

/// The outcome a case must have, beyond the checks every case gets.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// Loaded or refused: either is right as long as it is clean.
    Either,
    /// Nothing in it can be read as orders: the file must be refused.
    Refused,
    /// The file is readable: it must load, with these counts.
    Loads { loaded: Count, rejected: Count },
}

const fn loads(loaded: u64, rejected: u64) -> Expect {
    Expect::Loads {
        loaded: Count::Exactly(loaded),
        rejected: Count::Exactly(rejected),
    }
}

const LOADS: Expect = Expect::Loads {
    loaded: Count::Any,
    rejected: Count::Any,
};

/// The committed cases (`testdata/bad/`, described one per line in its README) and their outcomes.
const COMMITTED: &[(&str, Expect)] = &[
    // Delimited text.
    ("broken-rows.csv", LOADS),
    ("wrong-field-counts.csv", loads(2, 2)),
    ("unclosed-quote.csv", Expect::Either),
    ("bom.csv", loads(3, 0)),
    ("crlf.csv", loads(3, 0)),
    ("cr-only.csv", loads(3, 0)),
    ("bom-crlf.tsv", loads(3, 0)),
    ("mixed-delimiters.csv", loads(2, 3)),
    ("empty.csv", Expect::Either),
    ("header-only.csv", Expect::Either),
    ("only-newlines.csv", Expect::Either),
    ("binary-junk.csv", Expect::Either),
    ("nul-bytes.csv", Expect::Either),
    ("latin1.csv", Expect::Either),
    ("utf16le-excel-export.txt", Expect::Either),
    ("price-overflow.csv", loads(1, 3)),
    ("nan-inf.csv", loads(1, 5)),
    ("negative-zero-quantities.csv", LOADS),
    ("odd-dates.csv", LOADS),
    ("impossible-dates.csv", loads(1, 6)),
    ("offset-timestamps.csv", loads(4, 0)),
    ("missing-columns.csv", Expect::Refused),
    ("duplicate-columns.csv", Expect::Either),
    ("no-header.csv", Expect::Either),
    ("quotes.csv", LOADS),
    ("pipes.psv", loads(2, 1)),
    ("semicolon-decimal-comma.dat", Expect::Either),
    ("very-wide.csv", LOADS),
    ("trailing-garbage.csv", loads(2, 2)),
    // Aligned and whitespace-separated text.
    ("aligned-crossing.txt", Expect::Either),
    ("aligned-invalid-utf8.txt", loads(3, 1)),
    ("whitespace-misaligned.dat", Expect::Either),
    ("client-items-mapped.txt", loads(3, 0)),
    ("whitespace-only.txt", Expect::Either),
    ("tabs-and-spaces.txt", Expect::Either),
    // JSON and JSON Lines.
    ("invalid-utf8.jsonl", loads(3, 1)),
    ("truncated.json", Expect::Either),
    ("array.json", loads(3, 0)),
    ("wrapped.json", loads(3, 0)),
    ("jsonl-in-json.json", loads(3, 0)),
    ("scalars.jsonl", loads(1, 6)),
    ("scalar.json", Expect::Either),
    ("nested-arrays.json", Expect::Either),
    ("deep-nesting.jsonl", loads(2, 1)),
    ("huge-numbers.jsonl", loads(1, 4)),
    ("nan-literals.jsonl", loads(1, 2)),
    ("duplicate-keys.jsonl", Expect::Either),
    ("crlf-blank.ndjson", loads(3, 0)),
    ("bom.jsonl", Expect::Either),
    ("mixed-keys.jsonl", LOADS),
    ("empty-array.json", Expect::Either),
    ("wrong-types.jsonl", LOADS),
    // Workbooks and Parquet with the wrong content.
    ("not-a-zip.xlsx", Expect::Refused),
    ("html-table.xls", Expect::Either),
    ("empty.ods", Expect::Refused),
    ("not-parquet.parquet", Expect::Refused),
    ("parquet-magic-only.parquet", Expect::Refused),
];

/// One input of the corpus.
pub struct Case {
    pub name: String,
    pub expect: Expect,
    source: Source,
}

enum Source {
    Committed(PathBuf),
    /// Written into the given path just before its run, deleted after.
    Generated(fn(&Path) -> std::io::Result<()>),
}

impl Case {
    pub fn generated(name: &str, expect: Expect, write: fn(&Path) -> std::io::Result<()>) -> Case {
        Case {
            name: name.to_string(),
            expect,
            source: Source::Generated(write),
        }
    }
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .canonicalize()
        .unwrap()
}

fn committed_cases() -> Vec<Case> {
    let dir = testdata().join("bad");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".md") && !n.ends_with(".toml"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = COMMITTED.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "testdata/bad/ and the COMMITTED table disagree: give every case an expected outcome"
    );
    COMMITTED
        .iter()
        .map(|(name, expect)| Case {
            name: name.to_string(),
            expect: *expect,
            source: Source::Committed(dir.join(name)),
        })
        .collect()
}

/// How one `shopstream ingest` process ended.
#[derive(Debug)]
enum Ending {
    Exited(i32),
    Signal(i32),
    Hung,
    Runaway(u64),
}

struct Run {
    ending: Ending,
    peak_kib: Option<u64>,
    stderr: String,
    seconds: f64,
}

fn require_gnu_time() {
    assert!(
        Path::new(GNU_TIME).exists(),
        "{GNU_TIME} is missing: peak memory is measured with GNU time (Debian package `time`; .ci/run installs it)"
    );
}

/// Reads at most 64 KiB of a file: enough for any message meant for a person.
fn head(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(64 * 1024).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// RSS (KiB) of the process GNU time started, read from /proc while it runs.
fn child_rss_kib(time_pid: u32) -> Option<u64> {
    let children =
        std::fs::read_to_string(format!("/proc/{time_pid}/task/{time_pid}/children")).ok()?;
    let pid = children.split_whitespace().next()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `shopstream ingest` on `inputs` under GNU time in its own process group.
fn ingest_measured(data: &Path, config: &Path, inputs: &[&Path], scratch: &Path) -> Run {
    ingest_measured_with(data, config, inputs, scratch, &[])
}

/// [`ingest_measured`] with more `ingest` arguments (`--dataset NAME`).
fn ingest_measured_with(
    data: &Path,
    config: &Path,
    inputs: &[&Path],
    scratch: &Path,
    extra: &[&str],
) -> Run {
    let peak_file = scratch.join("peak.txt");
    let out_file = scratch.join("stdout.txt");
    let err_file = scratch.join("stderr.txt");
    let _ = std::fs::remove_file(&peak_file);
    let started = Instant::now();
    let mut child = Command::new(GNU_TIME)
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&peak_file)
        .arg(env!("CARGO_BIN_EXE_shopstream"))
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["ingest", "--no-progress"])
        .args(extra)
        .args(inputs)
        .env_remove("SHOPSTREAM_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .process_group(0)
        .spawn()
        .expect("GNU time runs");
    let pid = child.id();
    let kill_group = || {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    };
    let mut seen_kib = 0;
    let ending = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break match status.code() {
                // GNU time exits 128 + n when the command died of signal n (and says so in its output).
                Some(code) if head(&peak_file).contains("terminated by signal") => {
                    Ending::Signal(code - 128)
                }
                Some(code) => Ending::Exited(code),
                None => Ending::Signal(-1),
            };
        }
        seen_kib = seen_kib.max(child_rss_kib(pid).unwrap_or(0));
        if seen_kib > RUNAWAY_KIB {
            kill_group();
            child.wait().unwrap();
            break Ending::Runaway(seen_kib);
        }
        if started.elapsed() > HANG_AFTER {
            kill_group();
            child.wait().unwrap();
            break Ending::Hung;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let peak_kib = head(&peak_file)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .or((seen_kib > 0).then_some(seen_kib));
    Run {
        ending,
        peak_kib,
        stderr: head(&err_file),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Runs one SQL statement on the lake; the rows as JSON objects.
fn query(data: &Path, sql: &str) -> Result<Vec<serde_json::Map<String, Value>>, String> {
    let o = crate::run(data, &["sql", "--format", "json", sql]);
    if !o.status.success() {
        return Err(crate::stderr(&o).lines().next().unwrap_or("").to_string());
    }
    let text = crate::stdout(&o);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .collect())
}

const REFUSED: &str = "file refused: ";

/// Per source file: what the lake holds of it.
#[derive(Debug, Default, Clone)]
struct Lake {
    /// (rows_read, rows_loaded, rows_rejected) of each `loads` row.
    loads: Vec<(u64, u64, u64)>,
    orders: u64,
    /// Orders whose unit price or line revenue is beyond the accepted magnitude (10^14; decimals hold no NaN).
    orders_not_finite: u64,
    dead: u64,
    refused: u64,
    refused_with_field: u64,
    dead_without_reason: u64,
    dead_record_not_object: u64,
}

/// What the lake holds, by source file, in one statement.
fn lake_by_file(data: &Path) -> Result<std::collections::BTreeMap<String, Lake>, String> {
    let sql = format!(
        "SELECT 'loads' AS kind, source_file, rows_read AS a, rows_loaded AS b, rows_rejected AS c, 0 AS d, 0 AS e FROM loads \
         UNION ALL SELECT 'orders', source_file, count(*), \
           sum(CASE WHEN abs(unit_price) < 100000000000000 AND abs(line_revenue) < 100000000000000 THEN 0 ELSE 1 END), 0, 0, 0 \
           FROM orders GROUP BY source_file \
         UNION ALL SELECT 'dead', source_file, count(*), \
           sum(CASE WHEN starts_with(reason, '{REFUSED}') THEN 1 ELSE 0 END), \
           sum(CASE WHEN starts_with(reason, '{REFUSED}') AND field IS NOT NULL THEN 1 ELSE 0 END), \
           sum(CASE WHEN reason IS NULL OR trim(reason) = '' THEN 1 ELSE 0 END), \
           sum(CASE WHEN starts_with(ltrim(record), '{{') AND ends_with(rtrim(record), '}}') THEN 0 ELSE 1 END) \
           FROM dead_letters GROUP BY source_file"
    );
    let mut out = std::collections::BTreeMap::<String, Lake>::new();
    for row in query(data, &sql)? {
        let n = |k: &str| row.get(k).and_then(Value::as_u64).unwrap_or(0);
        let file = row["source_file"].as_str().unwrap_or_default().to_string();
        let lake = out.entry(file).or_default();
        match row["kind"].as_str() {
            Some("loads") => lake.loads.push((n("a"), n("b"), n("c"))),
            Some("orders") => {
                lake.orders += n("a");
                lake.orders_not_finite += n("b");
            }
            _ => {
                lake.dead += n("a");
                lake.refused += n("b");
                lake.refused_with_field += n("c");
                lake.dead_without_reason += n("d");
                lake.dead_record_not_object += n("e");
            }
        }
    }
    Ok(out)
}

/// The first dead letter whose `record` is not a JSON object of texts (records up to 1 MiB are parsed;
/// larger ones were checked for their braces by `lake_by_file`).
fn first_bad_record(data: &Path) -> Result<Option<String>, String> {
    let rows = query(
        data,
        "SELECT source_file, source_line, CASE WHEN length(record) <= 1048576 THEN record END AS record \
         FROM dead_letters ORDER BY source_file, source_line LIMIT 2000",
    )?;
    for row in rows {
        let Some(text) = row.get("record").and_then(Value::as_str) else {
            continue;
        };
        let good = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => fields.values().all(Value::is_string),
            _ => false,
        };
        if !good {
            let line = row.get("source_line").cloned().unwrap_or(Value::Null);
            let shown: String = text.chars().take(60).collect();
            return Ok(Some(format!("line {line}: {shown:?}")));
        }
    }
    Ok(None)
}

/// One broken promise of one case.
struct Failure {
    case: String,
    check: &'static str,
    detail: String,
}

impl Failure {
    /// A failure whose detail is one short printable line, whatever bytes the input held.
    fn new(case: &str, check: &'static str, detail: &str) -> Failure {
        let mut shown: String = detail
            .chars()
            .map(|c| if c.is_control() { '·' } else { c })
            .take(200)
            .collect();
        if detail.chars().nth(200).is_some() {
            shown.push('…');
        }
        Failure {
            case: case.to_string(),
            check,
            detail: shown,
        }
    }
}

/// The checks of one file, from what the lake holds of it and what the command printed. `code` is the
/// exit status of a command that read only this file, `None` when it read others too.
fn check_file(
    file: &Path,
    expect: Expect,
    code: Option<i32>,
    stderr: &str,
    lake: &Lake,
    fail: &mut dyn FnMut(&'static str, String),
) {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let refused_line = stderr
        .lines()
        .any(|l| l.contains("refused") && l.contains(&name));
    let refused = lake.refused > 0;
    let loaded = !lake.loads.is_empty();
    if refused {
        if code == Some(0) {
            fail("1 refusal", "refused, but the command exited 0".into());
        }
        if !refused_line {
            fail(
                "1 refusal",
                "no stderr line naming the file and `refused`".into(),
            );
        }
        if lake.refused != 1 || lake.refused_with_field > 0 || lake.dead != 1 {
            fail(
                "1 refusal",
                format!(
                    "want one dead letter `{REFUSED}…` with field NULL and nothing else; found {} refusals ({} with a field), {} dead letters",
                    lake.refused, lake.refused_with_field, lake.dead
                ),
            );
        }
        if loaded || lake.orders > 0 {
            fail(
                "1 refusal",
                format!(
                    "refused but {} loads rows and {} orders rows",
                    lake.loads.len(),
                    lake.orders
                ),
            );
        }
    } else if loaded {
        if code == Some(1) {
            fail("1 refusal", "loaded, but the command exited 1".into());
        }
        match lake.loads.as_slice() {
            [(read, loaded, rejected)] => {
                if read != &(loaded + rejected) {
                    fail(
                        "2 counts",
                        format!("read {read} != loaded {loaded} + rejected {rejected}"),
                    );
                }
                if lake.orders != *loaded {
                    fail(
                        "2 counts",
                        format!("{} orders rows, loads says {loaded}", lake.orders),
                    );
                }
                if lake.dead != *rejected {
                    fail(
                        "2 counts",
                        format!("{} dead letters, loads says {rejected}", lake.dead),
                    );
                }
            }
            more => fail(
                "2 counts",
                format!("{} loads rows for the file", more.len()),
            ),
        }
    } else {
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        fail(
            "1 refusal",
            format!(
                "neither loaded (no loads row) nor refused (no `{REFUSED}` dead letter): {first}"
            ),
        );
    }
    if lake.orders_not_finite > 0 {
        fail(
            "2 counts",
            format!(
                "{} orders rows with a NaN or infinite price or revenue",
                lake.orders_not_finite
            ),
        );
    }
    if lake.dead_without_reason > 0 {
        fail(
            "3 reasons",
            format!("{} dead letters without a reason", lake.dead_without_reason),
        );
    }
    if lake.dead_record_not_object > 0 {
        fail(
            "3 reasons",
            format!(
                "{} dead letters whose record is not a JSON object",
                lake.dead_record_not_object
            ),
        );
    }
    let counts = lake.loads.first().map(|l| (l.1, l.2));
    match (expect, refused, counts) {
        (Expect::Refused, false, Some(_)) => {
            fail("outcome", "loaded, but nothing in it is an order".into())
        }
        (Expect::Loads { .. }, true, _) => fail(
            "outcome",
            "refused, but the file is readable and must load".into(),
        ),
        (
            Expect::Loads {
                loaded: want_l,
                rejected: want_r,
            },
            false,
            Some((l, r)),
        ) if !(want_l.holds(l) && want_r.holds(r)) => fail(
            "outcome",
            format!("loaded {l}, rejected {r}; want {want_l:?} loaded, {want_r:?} rejected"),
        ),
        _ => {}
    }
}

/// Runs one case in a fresh lake; returns its broken promises and a line saying how it went.
/// The promises every run keeps: it ends (0 or 1), within the time and memory bounds.
fn check_bounds(run: &Run, fail: &mut dyn FnMut(&'static str, String)) {
    match run.ending {
        Ending::Exited(0 | 1) => {}
        Ending::Exited(code) => fail("4 crash", format!("exit status {code}")),
        Ending::Signal(s) => fail("4 crash", format!("killed by signal {s}")),
        Ending::Hung => fail("4 hang", format!("still running after {HANG_AFTER:?}")),
        Ending::Runaway(kib) => fail("4 memory", format!("RSS {} MiB, killed", kib / 1024)),
    }
    if let Some(kib) = run.peak_kib
        && kib > PEAK_LIMIT_KIB
        && !matches!(run.ending, Ending::Runaway(_))
    {
        fail("4 memory", format!("peak RSS {} MiB > 512 MiB", kib / 1024));
    }
}

/// The input file of a case (written into `scratch` when generated).
fn case_input(case: &Case, scratch: &Path) -> std::path::PathBuf {
    match &case.source {
        Source::Committed(p) => p.clone(),
        Source::Generated(write) => {
            let p = scratch.join(&case.name);
            write(&p).unwrap_or_else(|e| panic!("generating {}: {e}", case.name));
            p
        }
    }
}

fn run_case(case: &Case, work: &Path, config: &Path) -> (Vec<Failure>, String) {
    let scratch = work.join("case");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let input = case_input(case, &scratch);
    let data = scratch.join("data");
    let run = ingest_measured(&data, config, &[&input], &scratch);
    let mut failures = Vec::new();
    let mut fail = |check: &'static str, detail: String| {
        failures.push(Failure::new(&case.name, check, &detail))
    };
    check_bounds(&run, &mut fail);
    let mut summary = String::new();
    if let Ending::Exited(code @ (0 | 1)) = run.ending {
        match lake_by_file(&data) {
            Err(e) => fail("lake", format!("cannot query the lake: {e}")),
            Ok(by_file) => {
                let key = input.to_string_lossy().into_owned();
                let lake = by_file.get(&key).cloned().unwrap_or_default();
                summary = match lake.loads.first() {
                    Some((read, loaded, rejected)) => {
                        format!("read {read}, loaded {loaded}, rejected {rejected}")
                    }
                    None => format!("{} `file refused` rows", lake.refused),
                };
                check_file(
                    &input,
                    case.expect,
                    Some(code),
                    &run.stderr,
                    &lake,
                    &mut fail,
                );
                for other in by_file.keys().filter(|k| **k != key) {
                    fail(
                        "2 counts",
                        format!("lake rows for another source_file {other:?}"),
                    );
                }
                // The count of records without braces is reported by `check_file`; this is the first
                // record that does not parse, as an example (or the only sign, for `{"a": 1}`).
                match first_bad_record(&data) {
                    Ok(Some(bad)) => fail("3 reasons", format!("e.g. {bad}")),
                    Ok(None) => {}
                    Err(e) => fail("lake", format!("cannot query dead letters: {e}")),
                }
            }
        }
    }
    let line = format!(
        "{:<32} {:?} peak {} MiB {:.1}s {} | {}",
        case.name,
        run.ending,
        run.peak_kib.map_or(0, |k| k / 1024),
        run.seconds,
        summary,
        run.stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(120)
            .collect::<String>()
    );
    let _ = std::fs::remove_dir_all(&scratch);
    (failures, line)
}

fn table(failures: &[Failure]) -> String {
    let mut t = format!("{:<32} {:<10} detail\n", "case", "check");
    for f in failures {
        let _ = writeln!(t, "{:<32} {:<10} {}", f.case, f.check, f.detail);
    }
    t
}

#[test]
fn bad_inputs_are_loaded_or_refused_within_bounds() {
    require_gnu_time();
    let work = tempfile::tempdir().unwrap();
    let config = testdata().join("bad/shopstream.toml");
    let mut cases = committed_cases();
    cases.extend(hostile::cases());
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &cases {
        let (broken, line) = run_case(case, work.path(), &config);
        eprintln!("{line}");
        failures.extend(broken);
    }
    let failing: std::collections::BTreeSet<&str> =
        failures.iter().map(|f| f.case.as_str()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases break a promise ({:.0}s):\n{}",
        failing.len(),
        cases.len(),
        started.elapsed().as_secs_f64(),
        table(&failures)
    );
}

/// Into a new dataset, each file is sampled and typed before it is read: every hostile file still ends
/// within the bounds (its rows load, are dead letters, or the file is refused).
#[test]
fn hostile_files_into_a_new_dataset_stay_within_bounds() {
    require_gnu_time();
    let work = tempfile::tempdir().unwrap();
    let config = testdata().join("bad/shopstream.toml");
    let mut failures = Vec::new();
    for case in hostile::cases() {
        let scratch = work.path().join("case");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).unwrap();
        let input = case_input(&case, &scratch);
        let data = scratch.join("data");
        let extra = ["--dataset", "hostile"];
        let run = ingest_measured_with(&data, &config, &[&input], &scratch, &extra);
        eprintln!(
            "{:<32} {:?} {} MiB {:.1}s",
            case.name,
            run.ending,
            run.peak_kib.unwrap_or(0) / 1024,
            run.seconds
        );
        check_bounds(&run, &mut |check, detail| {
            failures.push(Failure::new(&case.name, check, &detail))
        });
    }
    assert!(failures.is_empty(), "{}", table(&failures));
}

#[test]
fn a_folder_of_good_and_hostile_files_loads_the_good_and_refuses_the_rest() {
    require_gnu_time();
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("incoming");
    std::fs::create_dir(&folder).unwrap();
    let data = testdata();
    let good = [
        data.join("online-retail/2010-12-01.csv"),
        data.join("aligned/orders.txt"),
    ];
    let hostile = [
        data.join("bad/not-a-zip.xlsx"),
        data.join("bad/not-parquet.parquet"),
        data.join("bad/missing-columns.csv"),
    ];
    for f in good.iter().chain(&hostile) {
        std::fs::copy(f, folder.join(f.file_name().unwrap())).unwrap();
    }
    let lake_dir = work.path().join("data");
    let run = ingest_measured(
        &lake_dir,
        &data.join("bad/shopstream.toml"),
        &[&folder],
        work.path(),
    );
    let mut failures = Vec::new();
    let mut fail = |case: &str, check: &'static str, detail: String| {
        failures.push(Failure::new(case, check, &detail))
    };
    if !matches!(run.ending, Ending::Exited(1)) {
        fail(
            "(command)",
            "1 refusal",
            format!("want exit 1 (some files refused), got {:?}", run.ending),
        );
    }
    let by_file = lake_by_file(&lake_dir).unwrap_or_else(|e| {
        fail("(command)", "lake", format!("cannot query the lake: {e}"));
        Default::default()
    });
    let rows_read = [3108, 4];
    for (f, expected) in good.iter().zip(rows_read) {
        let path = folder.join(f.file_name().unwrap());
        let lake = by_file
            .get(path.to_string_lossy().as_ref())
            .cloned()
            .unwrap_or_default();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut f = |check, detail| fail(&name, check, detail);
        check_file(&path, LOADS, None, &run.stderr, &lake, &mut f);
        let read = lake.loads.first().map_or(0, |l| l.0);
        if read != expected {
            f("outcome", format!("{read} rows read, want {expected}"));
        }
    }
    for f in &hostile {
        let path = folder.join(f.file_name().unwrap());
        let lake = by_file
            .get(path.to_string_lossy().as_ref())
            .cloned()
            .unwrap_or_default();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        check_file(
            &path,
            Expect::Refused,
            None,
            &run.stderr,
            &lake,
            &mut |check, detail| fail(&name, check, detail),
        );
    }
    assert!(
        failures.is_empty(),
        "stderr:\n{}\n{}",
        run.stderr,
        table(&failures)
    );
}
