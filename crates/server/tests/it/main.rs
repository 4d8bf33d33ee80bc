//! The push endpoint over real HTTP: formats, errors, idempotency, auth, body limits and back-pressure.

mod deploy;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shopstream_engine::stream::topic_load::LoadProgress;
use shopstream_log::{Embedded, Log, PartitionConfig};
use shopstream_server::{AppState, OnBackpressure, ServerConfig, bind, router};

struct Server {
    url: String,
    log: Arc<Log>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

/// Serves `state` on a free port for the rest of the test.
fn serve_forever(state: Arc<AppState>) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (listener, addr) = rt.block_on(bind("127.0.0.1:0")).unwrap();
    rt.spawn(shopstream_server::serve(
        listener,
        router(state),
        std::future::pending(),
    ));
    (rt, addr)
}

fn start(config: ServerConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    log.create_topic("orders", 2, PartitionConfig::default())
        .unwrap();
    // No load runs here: every accepted record counts as lag, which the back-pressure test relies on.
    let progress = Arc::new(LoadProgress::default());
    let state = AppState::new(
        Embedded::shared(log.clone()),
        config,
        HashMap::from([("orders".to_string(), progress)]),
        None,
        Vec::new(),
    );
    let (rt, addr) = serve_forever(state);
    Server {
        url: format!("http://{addr}"),
        log,
        _dir: dir,
        _rt: rt,
    }
}

/// The status of a GET without credentials.
fn anonymous_get(url: &str) -> u16 {
    ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap()
        .status()
        .as_u16()
}

/// Posts and returns (status, body), whatever the status.
fn post(s: &Server, content_type: &str, body: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = ureq::post(format!("{}/v1/topics/orders/records", s.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", content_type);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = req.send(body).unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap(),
    )
}

fn metrics(s: &Server) -> String {
    ureq::get(format!("{}/metrics", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

fn stored(s: &Server) -> u64 {
    let t = s.log.topic("orders").unwrap();
    t.partitions().iter().map(|p| p.end_offset()).sum()
}

#[test]
fn json_ndjson_and_csv_are_stored_durably_and_retries_are_not() {
    let s = start(ServerConfig::default());
    let (code, body) = post(
        &s,
        "application/json",
        r#"[{"InvoiceNo":"1"},{"InvoiceNo":"2"}]"#,
        &[],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""accepted":2"#), "{body}");
    let (code, _) = post(&s, "application/x-ndjson", "{\"InvoiceNo\":\"3\"}\n", &[]);
    assert_eq!(code, 200);
    let (code, _) = post(&s, "text/csv", "InvoiceNo,Quantity\n4,1\n5,2\n", &[]);
    assert_eq!(code, 200);
    assert_eq!(stored(&s), 5, "acknowledged records are in the log");

    let key = [("Idempotency-Key", "order-batch-7")];
    let (_, first) = post(&s, "text/csv", "InvoiceNo\n6\n7\n", &key);
    let (code, again) = post(&s, "text/csv", "InvoiceNo\n6\n7\n", &key);
    assert_eq!(code, 200);
    assert!(again.contains(r#""duplicate":true"#), "{again}");
    let offsets =
        |b: &str| serde_json::from_str::<serde_json::Value>(b).unwrap()["offsets"].clone();
    assert_eq!(
        offsets(&first),
        offsets(&again),
        "a retry gets the original offsets"
    );
    assert_eq!(stored(&s), 7, "the retry stored nothing");
}

#[test]
fn idempotency_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let (log, _) = Log::open(dir.path()).unwrap();
        log.create_topic("orders", 2, PartitionConfig::default())
            .unwrap();
        AppState::new(
            Embedded::shared(log),
            ServerConfig::default(),
            HashMap::new(),
            None,
            Vec::new(),
        )
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut url = String::new();
    for round in 0..2 {
        let state = open();
        let (listener, addr) = rt.block_on(bind("127.0.0.1:0")).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(shopstream_server::serve(listener, router(state), async {
            let _ = rx.await;
        }));
        url = format!("http://{addr}");
        let mut resp = ureq::post(format!("{url}/v1/topics/orders/records"))
            .header("Content-Type", "text/csv")
            .header("Idempotency-Key", "k1")
            .send("InvoiceNo\n1\n2\n3\n")
            .unwrap();
        let body = resp.body_mut().read_to_string().unwrap();
        assert_eq!(
            body.contains(r#""duplicate":true"#),
            round == 1,
            "round {round}: {body}"
        );
        let _ = tx.send(());
        rt.block_on(server).unwrap().unwrap();
    }
    assert!(!url.is_empty());
    let (log, _) = Log::open(dir.path()).unwrap();
    let t = log.topic("orders").unwrap();
    assert_eq!(
        t.partitions().iter().map(|p| p.end_offset()).sum::<u64>(),
        3
    );
}

#[test]
fn bad_bodies_are_refused_whole_with_the_line() {
    let s = start(ServerConfig::default());
    let (code, body) = post(
        &s,
        "application/x-ndjson",
        "{\"InvoiceNo\":\"1\"}\nnot json\n",
        &[],
    );
    assert_eq!(code, 400);
    assert!(body.contains("line 2"), "{body}");
    let (code, _) = post(&s, "application/xml", "<a/>", &[]);
    assert_eq!(code, 415);
    let (code, _) = post(&s, "application/json", "[]", &[]);
    assert_eq!(code, 400);
    assert_eq!(stored(&s), 0, "nothing of a refused request is stored");
    let mut resp = ureq::post(format!("{}/v1/topics/nope/records", s.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "application/json")
        .send("{}")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let _ = resp.body_mut().read_to_string();
}

#[test]
fn a_token_guards_every_route_but_health() {
    let s = start(ServerConfig {
        token: "s3cret".into(),
        ..ServerConfig::default()
    });
    let (code, _) = post(&s, "application/json", r#"{"InvoiceNo":"1"}"#, &[]);
    assert_eq!(code, 401);
    let big = format!("InvoiceNo\n{}", "1234567\n".repeat(200_000));
    let (code, _) = post(&s, "text/csv", &big, &[]);
    assert_eq!(
        code, 401,
        "a client that writes its whole body first still gets the answer"
    );
    let (code, _) = post(
        &s,
        "application/json",
        r#"{"InvoiceNo":"1"}"#,
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(code, 401);
    let (code, _) = post(
        &s,
        "application/json",
        r#"{"InvoiceNo":"1"}"#,
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(code, 200);
    for path in ["/metrics", "/v1/status"] {
        assert_eq!(anonymous_get(&format!("{}{path}", s.url)), 401, "{path}");
    }
    let health = ureq::get(format!("{}/health", s.url))
        .call()
        .unwrap()
        .status();
    assert_eq!(health.as_u16(), 200);
    assert_eq!(stored(&s), 1);
}

#[test]
fn bodies_over_the_limit_get_413() {
    let s = start(ServerConfig {
        max_body_mb: 1,
        ..ServerConfig::default()
    });
    // 1.6 MB: the client writes it all before it reads, so the server reads and drops the rest before it answers.
    let big = format!("InvoiceNo\n{}", "1234567\n".repeat(200_000));
    let (code, body) = post(&s, "text/csv", &big, &[]);
    assert_eq!(code, 413);
    assert!(body.contains("max_body_mb"), "{body}");
    // The same body sent chunked, with no length to refuse it by.
    let mut resp = ureq::post(format!("{}/v1/topics/orders/records", s.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "text/csv")
        .send(ureq::SendBody::from_reader(&mut big.as_bytes()))
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert!(
        resp.body_mut()
            .read_to_string()
            .unwrap()
            .contains("max_body_mb")
    );
    // A body declared far too large to drain is refused at once, before any of it is sent.
    assert_eq!(raw_status(&s, "Content-Length: 10000000000\r\n"), 413);
    // So is one whose client waits for `100 Continue`.
    assert_eq!(
        raw_status(&s, "Content-Length: 2000000\r\nExpect: 100-continue\r\n"),
        413
    );
    let (code, _) = post(&s, "text/csv", "InvoiceNo\n1\n", &[]);
    assert_eq!(code, 200, "the server still takes bodies under the limit");
    assert_eq!(stored(&s), 1);
    let metrics = metrics(&s);
    assert!(
        metrics.contains("shopstream_http_rejected_requests_total 4"),
        "{metrics}"
    );
}

/// Sends a record POST's head only, with `extra` headers, and returns the status of the answer.
fn raw_status(s: &Server, extra: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = s.url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let head = format!(
        "POST /v1/topics/orders/records HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/csv\r\n{extra}\r\n"
    );
    conn.write_all(head.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    conn.read_exact(&mut answer).unwrap();
    let line = String::from_utf8_lossy(&answer).to_string();
    line[9..12].parse().unwrap_or_else(|_| panic!("{line}"))
}

#[test]
fn back_pressure_answers_429_with_retry_after_or_holds() {
    let s = start(ServerConfig {
        backpressure_records: 3,
        ..ServerConfig::default()
    });
    let (code, _) = post(&s, "text/csv", "InvoiceNo\n1\n2\n3\n", &[]);
    assert_eq!(code, 200, "under the threshold");
    let resp = ureq::post(format!("{}/v1/topics/orders/records", s.url))
        .config()
        .http_status_as_error(false)
        .build()
        .header("Content-Type", "text/csv")
        .send("InvoiceNo\n4\n")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(resp.headers().get("retry-after").unwrap(), "1");
    let metrics = metrics(&s);
    assert!(
        metrics.contains("shopstream_http_throttled_requests_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shopstream_consumer_lag_records{topic=\"orders\""),
        "{metrics}"
    );

    // "wait": the request is held while the load is behind (here it never catches up: 429 after the hold).
    let held = start(ServerConfig {
        backpressure_records: 0,
        on_backpressure: OnBackpressure::Wait,
        ..ServerConfig::default()
    });
    let started = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let url = held.url.clone();
    std::thread::spawn(move || {
        let r = ureq::post(format!("{url}/v1/topics/orders/records"))
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "text/csv")
            .send("InvoiceNo\n1\n");
        let _ = tx.send(r.map(|r| r.status().as_u16()));
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the request is held, not answered"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[test]
fn a_flow_renames_casts_filters_and_dead_letters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path()).unwrap();
    log.create_topic("orders", 2, PartitionConfig::default())
        .unwrap();
    log.create_topic("shop.dead", 1, PartitionConfig::default())
        .unwrap();
    let flow: shopstream_ingest::sources::flow::FlowConfig = toml::from_str(
        r#"
        name = "shop"
        steps = [
          { rename = { order_id = "InvoiceNo", qty = "Quantity" } },
          { cast = { field = "Quantity", to = "integer" } },
          { filter = { field = "Country", not_in = ["Test"] } },
        ]"#,
    )
    .unwrap();
    let state = AppState::new(
        Embedded::shared(log.clone()),
        ServerConfig::default(),
        HashMap::new(),
        None,
        vec![flow],
    );
    let (_rt, addr) = serve_forever(state);
    let body = "order_id,qty,Country\n1,6,France\n2,lots,France\n3,1,Test\n4,2.0,Spain\n";
    let mut resp = ureq::post(format!("http://{addr}/v1/flows/shop/records"))
        .header("Content-Type", "text/csv")
        .send(body)
        .unwrap();
    assert_eq!(
        resp.headers().get("x-shopstream-dead-lettered").unwrap(),
        "1"
    );
    assert_eq!(resp.headers().get("x-shopstream-filtered").unwrap(), "1");
    let answer = resp.body_mut().read_to_string().unwrap();
    assert!(answer.contains(r#""accepted":2"#), "{answer}");
    let orders = log.topic("orders").unwrap();
    let mut kept = Vec::new();
    for p in orders.partitions() {
        for r in p.read(0, usize::MAX, usize::MAX).unwrap() {
            let env: shopstream_ingest::sources::Envelope =
                serde_json::from_slice(&r.value).unwrap();
            kept.push((
                env.fields["InvoiceNo"].clone(),
                env.fields["Quantity"].clone(),
            ));
        }
    }
    assert_eq!(kept, vec![("1".into(), 6.into()), ("4".into(), 2.into())]);
    let dead = log
        .topic("shop.dead")
        .unwrap()
        .read(0, 0, usize::MAX)
        .unwrap();
    assert_eq!(dead.len(), 1);
    let env: shopstream_ingest::sources::Envelope = serde_json::from_slice(&dead[0].value).unwrap();
    assert_eq!(
        env.fields["order_id"], "2",
        "dead letters keep the record as received"
    );
    assert_eq!(env.index, 2);
    assert!(env.reason.unwrap().contains("`lots` is not a whole number"));
}

#[test]
fn the_query_api_answers_sql_and_reports_in_json_csv_and_arrow() {
    let dir = tempfile::tempdir().unwrap();
    let lake = shopstream_engine::Lake::local(&dir.path().join("lake")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let load_file = |file: std::path::PathBuf| {
        rt.block_on(shopstream_engine::load::load_files(
            &lake,
            &[file],
            &shopstream_ingest::ReadOptions::default(),
            &shopstream_engine::load::WriteOptions::default(),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            &|_| {},
        ))
        .unwrap();
    };
    let load = |day: &str| {
        load_file(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("../../testdata/online-retail/{day}.csv")),
        )
    };
    load("2010-12-01");
    let (log, _) = Log::open(&dir.path().join("log")).unwrap();
    let config = ServerConfig {
        token: "t".into(),
        ..ServerConfig::default()
    };
    let state = AppState::new(
        Embedded::shared(log),
        config,
        HashMap::new(),
        None,
        Vec::new(),
    );
    let (listener, addr) = rt.block_on(bind("127.0.0.1:0")).unwrap();
    let catalog = rt
        .block_on(shopstream_server::postgres::open_catalog(
            lake.clone(),
            "shopstream",
        ))
        .unwrap();
    rt.spawn(shopstream_server::serve(
        listener,
        shopstream_server::app(state, Some(catalog)),
        std::future::pending(),
    ));
    let get = |path: &str| {
        let mut r = ureq::get(format!("http://{addr}{path}"))
            .config()
            .http_status_as_error(false)
            .build()
            .header("Authorization", "Bearer t")
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_vec().unwrap())
    };
    let (code, body) = get("/api/sql?q=SELECT%20COUNT(*)%20AS%20n%20FROM%20orders");
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8(body).unwrap().trim(), r#"[{"n":3108}]"#);
    let (code, body) = get("/api/reports/top_countries_by_quantity?n=2&format=csv");
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "country,units,lines\nUnited Kingdom,24092,2937\nNorway,1852,73\n"
    );
    let (code, body) = get("/api/sql?q=SELECT%20country%20FROM%20orders&format=arrow");
    assert_eq!(code, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3108);
    let (code, body) = get("/api/sql?q=DROP%20TABLE%20orders");
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    let (code, _) = get("/api/reports/nope");
    assert_eq!(code, 404);

    // Panels: a KPI equals the SQL answer; filters and grains apply; the previous period is compared.
    let json = |path: &str| -> serde_json::Value {
        let (code, body) = get(path);
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let revenue = json("/api/sql?q=SELECT%20ROUND(SUM(line_revenue),2)%20AS%20r%20FROM%20orders%20WHERE%20NOT%20is_cancellation")[0]["r"].clone();
    let kpis = json("/api/panels/kpis?from=2010-12-01&to=2010-12-02");
    let order: Vec<&str> = kpis
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "revenue",
            "orders",
            "average_order_value",
            "units",
            "customers",
            "repeat_customer_rate",
            "cancellation_rate"
        ],
        "KPIs in the cards' order (and so in CSV exports)"
    );
    let kpi = |m: &str| {
        kpis.as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .unwrap()
            .clone()
    };
    assert_eq!(kpi("revenue")["value"], revenue);
    assert_eq!(kpi("revenue")["previous"], 0.0, "nothing on the day before");
    assert_eq!(kpis.as_array().unwrap().len(), 7);
    assert!(kpi("cancellation_rate")["value"].as_f64().unwrap() > 0.0);
    let france = json("/api/panels/countries?country=France");
    assert_eq!(france.as_array().unwrap().len(), 1);
    assert_eq!(france[0]["country"], "France");
    assert_eq!(
        json("/api/panels/revenue_over_time?grain=month")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        json("/api/panels/top_products?n=3")
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let (code, _) = get("/api/panels/kpis?from=yesterday");
    assert_eq!(code, 400);
    let segments = json("/api/panels/rfm_segments");
    let customers: u64 = segments
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["customers"].as_u64().unwrap())
        .sum();
    let identified = json("/api/sql?q=SELECT%20COUNT(DISTINCT%20customer_id)%20AS%20c%20FROM%20orders%20WHERE%20NOT%20is_cancellation")[0]["c"].as_u64().unwrap();
    assert_eq!(
        customers, identified,
        "every identified customer is in one segment"
    );
    let nvr = json("/api/panels/new_vs_returning");
    assert_eq!(
        nvr[0]["customers"], "new",
        "one day of data: every customer is new"
    );
    assert_eq!(nvr[0]["count"].as_u64().unwrap(), identified);
    let basket = json("/api/panels/basket_size");
    assert_eq!(
        basket[0]["orders"],
        kpi("orders")["value"].as_f64().unwrap() as u64
    );

    // Every route the OpenAPI description lists is served.
    let spec = json("/api/openapi.json");
    for (path, ops) in spec["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{topic}", "orders")
            .replace("{flow}", "none")
            .replace("{name}", "kpis");
        for method in ops.as_object().unwrap().keys() {
            let req = ureq::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(format!("http://{addr}{concrete}"))
                .header("Authorization", "Bearer t")
                .header("Content-Type", "application/json")
                .body(String::from("{}"))
                .unwrap();
            let mut resp = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent()
                .run(req)
                .unwrap();
            let status = resp.status();
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            // The application's own 404s (no such topic, flow or report) say so in JSON; a missing route is empty.
            let served = status.as_u16() != 404 || body.contains("\"error\"");
            assert!(served, "{method} {concrete}: {status}");
        }
    }
    assert_eq!(
        anonymous_get(&format!("http://{addr}/api/sql?q=SELECT%201")),
        401,
        "the token guards the query API too"
    );

    // Drill-down: a customer's invoices, as many as the SQL answer has.
    let customer = json("/api/panels/top_customers?n=1")[0]["customer_id"].clone();
    let invoices = json(&format!("/api/panels/invoices?customer={customer}&n=1000"));
    let distinct = json(&format!(
        "/api/sql?q=SELECT%20COUNT(DISTINCT%20invoice_no)%20AS%20c%20FROM%20orders%20WHERE%20customer_id={customer}"
    ))[0]["c"]
        .clone();
    assert_eq!(
        invoices.as_array().unwrap().len() as u64,
        distinct.as_u64().unwrap()
    );
    assert!(
        invoices
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["customer_id"] == customer)
    );
    let (code, _) = get("/api/panels/invoices?customer=abc");
    assert_eq!(code, 400, "a customer id is a number");
    let span = json("/api/panels/date_range");
    assert_eq!(span[0]["first_day"], "2010-12-01");

    // The catalog is long-lived and follows new commits: a second load shows without a restart.
    load("2011-11-14");
    let after = json("/api/sql?q=SELECT%20COUNT(*)%20AS%20n%20FROM%20orders")[0]["n"]
        .as_u64()
        .unwrap();
    assert!(after > 3108, "the new load is visible: {after}");

    // Panels read aggregates kept in memory, rebuilt after that load: each answers what its statement
    // over the order lines answers (sums to the cent; the lines statement through /api/sql).
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        match (a, b) {
            (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
            }
            (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() <= 0.011
            }
            _ => a == b,
        }
    }
    let panels_equal_lines = || {
        let mut compared = 0;
        for panel in shopstream_server::panels::PANELS {
            for filter in [
                "",
                "from=2011-11-14&to=2011-11-15",
                "country=France",
                "from=2010-12-01&to=2011-12-01&grain=week",
                "country=United%20Kingdom&grain=month&n=5",
                "customer=17850&from=2010-12-01&to=2010-12-02",
                "country=Atlantis",
            ] {
                let q: HashMap<String, String> = filter
                    .split('&')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (k.to_string(), v.replace("%20", " "))
                    })
                    .collect();
                let params = shopstream_server::panels::PanelParams::parse(&q).unwrap();
                let sql = shopstream_server::panels::sql(panel, &params).unwrap();
                let (code, text) = get(&format!("/api/panels/{panel}?{filter}&format=sql"));
                assert_eq!((code, String::from_utf8(text).unwrap()), (200, sql.clone()));
                let from_lines = json(&format!("/api/sql?q={}", encode(&sql)));
                let from_panel = json(&format!("/api/panels/{panel}?{filter}"));
                assert!(
                    same(&from_panel, &from_lines),
                    "{panel}?{filter}: panel {from_panel} vs lines {from_lines}"
                );
                compared += from_lines.as_array().unwrap().len();
            }
        }
        assert!(compared > 100, "{compared} rows compared");
    };
    panels_equal_lines();

    // An invoice whose lines arrive in two commits: its lines of 2011-11-14 again, in a file of their
    // own. The aggregates get a second row for it (only the added file is aggregated); the panels add
    // the rows up and still answer what the lines answer.
    let day = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/online-retail/2011-11-14.csv"),
    )
    .unwrap();
    let part: Vec<&str> = day.lines().take(6).collect();
    let split = dir.path().join("2011-11-14-late-lines.csv");
    std::fs::write(&split, part.join("\n") + "\n").unwrap();
    load_file(split);
    panels_equal_lines();

    // A compaction rewrites the files…
    let compacted = rt
        .block_on(shopstream_engine::compact::compact(
            &lake,
            &shopstream_engine::Table::orders(),
            &shopstream_engine::load::WriteOptions::default(),
        ))
        .unwrap();
    assert!(compacted.files_removed > 1, "{compacted:?}");
    // …and a load after it, before the next panel request: the aggregates keep what the compaction
    // rewrote and add the new rows.
    let later = dir.path().join("2011-11-14-later-lines.csv");
    let rows: Vec<&str> = day.lines().skip(6).take(6).collect();
    std::fs::write(&later, format!("{}\n{}\n", part[0], rows.join("\n"))).unwrap();
    load_file(later);
    panels_equal_lines();

    // The PostgreSQL-shaped information_schema the BI tools read.
    let cols = json(
        "/api/sql?q=SELECT%20column_name,data_type,udt_name%20FROM%20information_schema.columns%20WHERE%20table_name='orders'%20AND%20column_name='quantity'",
    );
    assert_eq!(cols[0]["data_type"], "bigint");
    assert_eq!(cols[0]["udt_name"], "int8");

    // The dashboard's pages and assets are embedded and served without the token; nothing else is.
    for (path, kind) in [
        ("/", "text/html"),
        ("/explorer", "text/html"),
        ("/assets/echarts.min.js", "text/javascript"),
        ("/assets/world.json", "application/json"),
    ] {
        let mut r = ureq::get(format!("http://{addr}{path}")).call().unwrap();
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(
            r.body_mut().read_to_vec().unwrap().len() > 1000,
            "{path} has content"
        );
    }
    assert_eq!(
        anonymous_get(&format!("http://{addr}/assets/..%2FCargo.toml")),
        404
    );
    assert_eq!(anonymous_get(&format!("http://{addr}/assets/nope.js")), 404);
}

#[test]
fn metrics_and_status_report_the_same_figures() {
    let s = start(ServerConfig::default());
    let (code, _) = post(
        &s,
        "text/csv",
        "InvoiceNo\n1\n2\n",
        &[("Idempotency-Key", "m1")],
    );
    assert_eq!(code, 200);
    let (code, _) = post(
        &s,
        "text/csv",
        "InvoiceNo\n1\n2\n",
        &[("Idempotency-Key", "m1")],
    );
    assert_eq!(code, 200);
    let get = |path: &str| {
        ureq::get(format!("{}{path}", s.url))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    let status: shopstream_server::Status = serde_json::from_str(&get("/v1/status")).unwrap();
    assert_eq!(
        (status.http_accepted_records, status.http_duplicate_requests),
        (2, 1)
    );
    let metrics = get("/metrics");
    for c in status.counters() {
        assert!(
            metrics.contains(&format!("\n{} {}\n", c.metric, c.value)),
            "{} = {} in /v1/status: {metrics}",
            c.metric,
            c.value
        );
    }
    // The per-partition families: each under its declared type, one line per partition of /v1/status.
    assert!(!status.partitions.is_empty());
    for m in shopstream_server::PartitionStatus::METRICS {
        let header = format!("# TYPE {} {}\n", m.metric, m.kind.name());
        assert!(metrics.contains(&header), "{header}: {metrics}");
        for p in &status.partitions {
            let line = format!(
                "\n{}{{topic=\"{}\",partition=\"{}\"}} {}\n",
                m.metric,
                p.topic,
                p.partition,
                (m.value)(p)
            );
            assert!(metrics.contains(&line), "{line}: {metrics}");
        }
    }
}
