//! An S3 server on loopback for tests and benchmarks: moto (`moto[server]` from PyPI, `$MOTO_SERVER` or the
//! tool cache's venv, which `.ci/test` makes) on a free port with a bucket, stopped when dropped. It honours
//! `If-None-Match: *` on PUT (a second create gets 412), which Delta commits rely on. moto checks that
//! condition and then writes, without a lock, so two racing creates could both win; S3 makes them atomic.
//! So moto's app is served here with one request at a time ([`SERIALIZED`]), as atomic as S3.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server with one bucket.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created.
    pub bucket: String,
}

/// The moto_server executable.
fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/shopstream/tools/py/bin/moto_server");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("moto_server")
}

/// moto's WSGI app served with a lock around each request (`python -c SERIALIZED HOST PORT`).
const SERIALIZED: &str = r#"
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
os.environ.setdefault("MOTO_PORT", sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialized(environ, start_response):
    with lock:
        body = app(environ, start_response)
        try:
            return list(body)
        finally:
            if hasattr(body, "close"):
                body.close()
run_simple(sys.argv[1], int(sys.argv[2]), serialized, threaded=True, request_handler=MotoRequestHandler)
"#;

/// The Python moto is installed in: the venv's beside `moto_server`, or the one its script names on its
/// first line.
fn moto_python() -> PathBuf {
    let beside = moto_server().with_file_name("python3");
    if beside.exists() {
        return beside;
    }
    std::fs::read_to_string(moto_server())
        .ok()
        .and_then(|s| {
            let first = s.lines().next()?.strip_prefix("#!")?.trim().to_string();
            (!first.contains(' ')).then(|| PathBuf::from(first))
        })
        .unwrap_or_else(|| PathBuf::from("python3"))
}

impl S3Server {
    /// Starts moto and creates `bucket`; panics with how to install moto when it cannot.
    pub fn start(bucket: &str) -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_python())
            .args(["-c", SERIALIZED, "127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting moto_server ({e}): pip install 'moto[server]' (.ci/test does)")
            });
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut server = S3Server {
            child,
            endpoint,
            bucket: bucket.to_string(),
        };
        loop {
            if create_bucket(port, bucket) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "moto did not start ({status}) with {}: pip install 'moto[server]' into it (.ci/test does)",
                    moto_python().display()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = server.child.kill();
                panic!("moto_server did not start on {}", server.endpoint);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// `[lake.storage]` for this server.
    pub fn options(&self) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_allow_http", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Moto takes any credentials: a bucket is created by a PUT on its name. True on 200.
fn create_bucket(port: u16, bucket: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
