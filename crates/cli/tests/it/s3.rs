//! The binary on a lake in S3-compatible storage (moto on loopback): `ingest`, `sql`, `report`, `trace`,
//! `compact`, `tables`, `migrate` and `serve` (HTTP push loaded by the continuous load) with `[lake] url = "s3://…"` and `[lake.storage]`;
//! a second `serve` on the embedded log is refused by the first one's lease.

use std::path::Path;
use std::time::{Duration, Instant};

use shopstream_engine::storage::loopback::S3Server;

use crate::live::{batch, start};
use crate::{stderr, stdout};

fn config(dir: &Path, s3: &S3Server) -> std::path::PathBuf {
    let storage: String = s3
        .options()
        .iter()
        .map(|(k, v)| format!("{k} = \"{v}\"\n"))
        .collect();
    let path = dir.join("s3.toml");
    std::fs::write(
        &path,
        format!(
            "[lake]\nurl = \"{}\"\n[lake.storage]\n{storage}\n[live]\ncompact_every_s = 0\n",
            s3.url("shop/lake")
        ),
    )
    .unwrap();
    path
}

fn run(dir: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    let o = crate::shopstream(dir)
        .env("SHOPSTREAM_CONFIG", config)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    o
}

fn count(dir: &Path, config: &Path) -> String {
    let o = run(
        dir,
        config,
        &["sql", "--format", "csv", "SELECT COUNT(*) FROM orders"],
    );
    stdout(&o).lines().nth(1).unwrap().to_string()
}

#[test]
fn ingest_sql_migrate_and_serve_work_on_s3() {
    let s3 = S3Server::start("shop");
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &s3);
    let day =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/online-retail/2010-12-01.csv");
    run(dir.path(), &config, &["ingest", day.to_str().unwrap()]);
    assert_eq!(count(dir.path(), &config), "3108");
    // Known files are skipped, from the lake's `loads` table on S3.
    run(dir.path(), &config, &["ingest", day.to_str().unwrap()]);
    assert_eq!(count(dir.path(), &config), "3108");
    // Reports, `trace` and compaction read and write the same tables on S3.
    let reports = stdout(&run(dir.path(), &config, &["report", "all"]));
    assert!(reports.contains("United Kingdom"), "{reports}");
    let trace = stdout(&run(
        dir.path(),
        &config,
        &["trace", "--format", "csv", "536365"],
    ));
    assert!(trace.contains("2010-12-01.csv"), "{trace}");
    run(dir.path(), &config, &["compact"]);
    assert_eq!(count(dir.path(), &config), "3108");
    let tables = stdout(&run(dir.path(), &config, &["tables"]));
    assert!(
        tables.contains("orders") && tables.contains("dead_letters"),
        "{tables}"
    );
    run(dir.path(), &config, &["migrate"]);
    let (mut server, url) = start(&dir.path().join("serve"), Some(&config));
    // A second server on the embedded log is refused: the lake has no lock files, it has a lease.
    let second = crate::shopstream(&dir.path().join("other"))
        .env("SHOPSTREAM_CONFIG", &config)
        .args(["serve", "--listen", "127.0.0.1:0", "--pg-listen", "off"])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("another server on the embedded log holds this lake"),
        "{}",
        stderr(&second)
    );
    ureq::post(format!("{url}/v1/topics/orders/records"))
        .header("Content-Type", "application/x-ndjson")
        .send(batch("s3", 5))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(dir.path(), &config) != "3113" {
        assert!(Instant::now() < deadline, "the live load did not reach S3");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The dashboard's panels read the lake on S3 (aggregates that follow its Delta log): the same figures
    // as their statement over the lines.
    let get = |path: &str| {
        ureq::get(format!("{url}{path}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    let statement = get("/api/panels/kpis?format=sql");
    let from_lines: serde_json::Value = serde_json::from_str(
        &ureq::post(format!("{url}/api/sql"))
            .send(statement)
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let from_panel: serde_json::Value = serde_json::from_str(&get("/api/panels/kpis")).unwrap();
    let orders = |v: &serde_json::Value| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == "orders")
            .map(|m| m["value"].as_f64().unwrap())
    };
    assert!(
        orders(&from_panel).is_some_and(|n| n > 100.0),
        "{from_panel}"
    );
    assert_eq!(
        orders(&from_panel),
        orders(&from_lines),
        "{from_panel} {from_lines}"
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
