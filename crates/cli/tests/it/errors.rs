//! Exit codes and error messages a user sees.

use crate::{run, stderr, stdout};

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        run(dir.path(), &["report", "rfm", "--format", "xml"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn bad_sql_exits_1_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["sql", "SELEC count(*) FROM orders"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("Line: 1, Column"), "{err}");
    let o = run(dir.path(), &["sql", "SELECT nope FROM orders"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn sql_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["sql", "DROP TABLE orders"]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(dir.path(), &["sql", "INSERT INTO loads VALUES ('x')"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn unknown_config_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("typo.toml");
    std::fs::write(&cfg, "[lake]\nurl = \"\"\n[ingest]\nmapings = []\n").unwrap();
    let o = run(dir.path(), &["--config", cfg.to_str().unwrap(), "tables"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("mapings") && err.contains("typo.toml"),
        "{err}"
    );
}

#[test]
fn csv_output_has_a_header_and_reports_take_params() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/online-retail/2010-12-01.csv");
    let o = run(
        dir.path(),
        &["ingest", "--no-progress", fixture.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("read 3108, loaded 3108, rejected 0"),
        "{}",
        stdout(&o)
    );
    let o = run(
        dir.path(),
        &[
            "report",
            "top_countries_by_quantity",
            "--format",
            "csv",
            "--param",
            "n=2",
        ],
    );
    assert_eq!(
        stdout(&o),
        "country,units,lines\nUnited Kingdom,24092,2937\nNorway,1852,73\n"
    );
    let o = run(
        dir.path(),
        &["report", "top_countries_by_quantity", "--param", "m=2"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no parameter `m`"));
    let o = run(dir.path(), &["tables"]);
    assert!(
        stdout(&o).contains("orders") && stdout(&o).contains("3108"),
        "{}",
        stdout(&o)
    );

    // `trace` tells where an invoice's rows came from.
    let o = run(dir.path(), &["trace", "536365", "--format", "csv"]);
    let t = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = t.lines().nth(1).unwrap_or_default();
    assert!(
        first.contains(",file,") && first.contains("2010-12-01.csv") && first.contains(",2,"),
        "{t}"
    );
    assert_eq!(
        t.lines().count(),
        8,
        "the invoice's 7 lines and a header: {t}"
    );

    // `report all` runs every report in one session: one file each, equal to the single report.
    let out = dir.path().join("all");
    let o = run(
        dir.path(),
        &[
            "report",
            "all",
            "--format",
            "csv",
            "--param",
            "n=2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&run(dir.path(), &["report", "list"]));
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        list.lines().count()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("top_countries_by_quantity.csv")).unwrap(),
        "country,units,lines\nUnited Kingdom,24092,2937\nNorway,1852,73\n"
    );
    let o = run(dir.path(), &["report", "all", "--format", "csv"]);
    assert_eq!(o.status.code(), Some(1), "csv to stdout needs a folder");
    let o = run(dir.path(), &["report", "all", "--param", "zzz=1"]);
    assert!(stderr(&o).contains("no report has a parameter `zzz`"));
}

#[test]
fn help_describes_serve_and_demo_each_with_its_own_text() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    let line = |cmd: &str| {
        help.lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no `{cmd}` in {help}"))
            .to_string()
    };
    assert!(line("serve").contains("live path"), "{help}");
    assert!(line("demo").contains("end to end"), "{help}");
}

#[test]
fn files_of_other_types_in_a_folder_are_named_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/online-retail/2010-12-01.csv");
    std::fs::copy(&fixture, folder.join("day.csv")).unwrap();
    std::fs::write(folder.join("notes.md"), "# not orders\n").unwrap();
    let o = run(
        dir.path(),
        &["ingest", "--no-progress", folder.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("loaded 3108"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("notes.md: skipped (not a file type"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn output_piped_into_a_reader_that_goes_ends_quietly() {
    // As `shopstream report list | head -0`: the reader is gone before anything is written.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["report", "list"][..],
        &["tables"][..],
        &["view", "list"][..],
    ] {
        let mut child = crate::shopstream(dir.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
}
