//! A user dataset fed by every live source of a real `shopstream serve` (HTTP push to its topic, a flow, an
//! API poller, its landing subfolder), and a dataset created by `ingest` while the server runs, listed by
//! the server's catalog without a restart.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::live::start;
use crate::run;

/// A paginated JSON API on loopback: page 1 holds two customers, later pages none.
fn customers_api() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let _ = BufReader::new(&stream).read_line(&mut request);
            let body = if request.contains("page=1&") || request.contains("page=1 ") {
                r#"{"data":[{"customer_id":"C-API-1","name":"Ann","signup":"2011-02-01","credit":"5.25"},{"customer_id":"C-API-2","name":"Bo","signup":"2011-02-02","credit":"1"}]}"#
            } else {
                r#"{"data":[]}"#
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn sql(url: &str, q: &str) -> String {
    ureq::get(format!("{url}/api/sql"))
        .query("q", q)
        .query("format", "csv")
        .call()
        .map(|mut r| r.body_mut().read_to_string().unwrap())
        .unwrap_or_else(|e| format!("error: {e}"))
}

fn post(url: &str, path: &str, body: &str) {
    let r = ureq::post(format!("{url}{path}"))
        .header("Content-Type", "application/x-ndjson")
        .send(body)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(r.status(), 200, "{path}");
}

/// Waits until `q` answers `expected` (the live load commits every fraction of a second).
fn wait_for(url: &str, q: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sql(url, q);
        if got == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{q}: got {got:?}, want {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts `serve` in `dir` with `backbone` (lines for `[live]`) and `extra` config, feeds the `customers`
/// dataset from every live source (HTTP push, a flow, a poller, the landing folder) and checks what the
/// lake holds: each row once, with where it came from, and the one dead letter.
fn every_live_source_feeds_customers(
    dir: &Path,
    backbone: &str,
    extra: &str,
) -> (KillOnDrop, String) {
    let port = customers_api();
    let config = dir.join("shopstream.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[lake]
[live]
{backbone}
landing_poll_ms = 100
compact_every_s = 0

[[datasets]]
name = "customers"
columns = ["customer_id text not null", "name text", "signup date", "credit decimal"]
key = ["customer_id"]

[[live.flows]]
name = "crm"
topic = "customers"
steps = [{{ rename = {{ id = "customer_id" }} }}]

[[live.pollers]]
name = "crm-api"
url = "http://127.0.0.1:{port}/customers"
style = "page"
page_size = 2
topic = "customers"
interval_ms = 200
{extra}
"#
        ),
    )
    .unwrap();
    let (server, url) = start(dir, Some(&config));
    let server = KillOnDrop(server);

    post(
        &url,
        "/v1/topics/customers/records",
        "{\"customer_id\":\"C-HTTP-1\",\"name\":\"Cy\",\"signup\":\"2011-01-05\",\"credit\":\"10.50\"}\n\
         {\"name\":\"no key\",\"signup\":\"2011-01-06\"}\n",
    );
    post(
        &url,
        "/v1/flows/crm/records",
        "{\"id\":\"C-FLOW-1\",\"name\":\"Di\",\"signup\":\"2011-03-01\",\"credit\":\"2\"}\n",
    );
    let landing = dir.join("landing/customers");
    assert!(landing.is_dir(), "the dataset's landing subfolder exists");
    std::fs::write(
        landing.join("crm-export.csv"),
        "Customer ID,Name,Signup,Credit\nC-FILE-1,Ed,2011-04-01,3.50\nC-FILE-2,Flo,2011-04-02,\n",
    )
    .unwrap();

    wait_for(&url, "SELECT count(*) AS n FROM customers", "n\n6\n");
    let by_source = sql(
        &url,
        "SELECT customer_id, credit, split_part(source_file, ':', 1) AS via FROM customers ORDER BY customer_id",
    );
    assert_eq!(
        by_source,
        "customer_id,credit,via\nC-API-1,5.2500,api\nC-API-2,1.0000,api\n\
         C-FILE-1,3.5000,crm-export.csv\nC-FILE-2,,crm-export.csv\n\
         C-FLOW-1,2.0000,http\nC-HTTP-1,10.5000,http\n"
            .replace(
                "crm-export.csv",
                &landing.join("crm-export.csv").display().to_string()
            ),
        "{by_source}"
    );
    wait_for(
        &url,
        "SELECT dataset, field, reason FROM dead_letters",
        "dataset,field,reason\ncustomers,customer_id,\"missing value (the record's fields are: name, signup)\"\n",
    );
    assert!(landing.join("processed/crm-export.csv").is_file());

    (server, url)
}

#[test]
fn every_live_source_feeds_a_user_dataset_and_new_datasets_appear_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = every_live_source_feeds_customers(dir.path(), "", "");

    // A dataset created by `ingest` while the server runs: the server's catalog lists it at once.
    let products = dir.path().join("products.csv");
    std::fs::write(&products, "sku,price\nP1,2.55\nP2,10.00\n").unwrap();
    let o = run(
        dir.path(),
        &[
            "ingest",
            "--dataset",
            "products",
            &products.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    wait_for(
        &url,
        "SELECT count(*) AS n, sum(price) AS total FROM products",
        "n,total\n2,12.5500\n",
    );
    // The table evolves under the running server (a file with a new column); the server's topic load of
    // the dataset follows, and a record with the new field loads.
    let segments = dir.path().join("segments.csv");
    std::fs::write(&segments, "customer_id,name,segment\nC-FILE-3,Gus,gold\n").unwrap();
    let o = run(
        dir.path(),
        &[
            "ingest",
            "--dataset",
            "customers",
            &segments.display().to_string(),
        ],
    );
    assert!(
        crate::stdout(&o).contains("added column `segment` text"),
        "{}",
        crate::stdout(&o)
    );
    post(
        &url,
        "/v1/topics/customers/records",
        "{\"customer_id\":\"C-HTTP-2\",\"name\":\"Hal\",\"segment\":\"silver\"}\n",
    );
    wait_for(
        &url,
        "SELECT customer_id, segment FROM customers WHERE segment IS NOT NULL ORDER BY 1",
        "customer_id,segment\nC-FILE-3,gold\nC-HTTP-2,silver\n",
    );

    let tables = sql(
        &url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    );
    assert!(
        tables.contains("\ncustomers\n") && tables.contains("\nproducts\n"),
        "{tables}"
    );
}

/// Stops the server when the test ends, also when an assertion fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dry_run_prints_the_inferred_columns_and_creates_nothing_then_describe_shows_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Kunden Export.csv");
    std::fs::write(
        &file,
        "Kunden-Nr;PLZ;Angelegt am;Umsatz\n10001;01067;31.01.2011;1.234,50\n10002;80331;13.02.2011;12,00\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let o = run(
        dir.path(),
        &["ingest", "--dataset", "kunden", "--dry-run", &path],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let out = crate::stdout(&o);
    for expected in [
        "dataset `kunden` would be created",
        "kunden_nr                bigint",
        "plz                      text",
        "angelegt_am              date           (from `Angelegt am`, %d.%m.%Y)",
        "umsatz                   decimal(18,4)  (from `Umsatz`, decimal comma)",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    assert!(
        !dir.path().join("lake/kunden").exists(),
        "a dry run creates no table"
    );
    let o = run(dir.path(), &["describe", "kunden"]);
    assert_eq!(o.status.code(), Some(1), "{}", crate::stdout(&o));
    assert!(crate::stderr(&o).contains("no dataset `kunden`"));

    let o = run(dir.path(), &["ingest", "--dataset", "kunden", &path]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let o = run(dir.path(), &["describe", "kunden"]);
    let out = crate::stdout(&o);
    assert!(
        out.contains("umsatz                   decimal(18,4)")
            && out.contains("source_file")
            && out.contains("2 rows in 1 files"),
        "{out}"
    );
    let o = run(dir.path(), &["tables"]);
    assert!(
        crate::stdout(&o).contains("kunden"),
        "{}",
        crate::stdout(&o)
    );
}

#[test]
fn serve_refuses_a_flow_whose_topic_nothing_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shopstream.toml");
    std::fs::write(
        &config,
        "[lake]\n[[live.flows]]\nname = \"crm\"\ntopic = \"nowhere\"\nsteps = []\n",
    )
    .unwrap();
    let o = run(
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pg-listen",
            "off",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = crate::stderr(&o);
    assert!(
        err.contains("flow `crm` writes topic `nowhere`, which nothing loads"),
        "{err}"
    );
}

#[test]
fn every_live_source_feeds_a_user_dataset_on_kafka_too() {
    let broker = shopstream_kafka::loopback::Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let kafka = format!(
        "[kafka]\nbrokers = \"{}\"\nreplication_factor = 1\ntimeout_ms = 10000\n",
        broker.address
    );
    every_live_source_feeds_customers(dir.path(), "backbone = \"kafka\"", &kafka);
}
