//! A Kafka-protocol broker on loopback for tests and benchmarks: tansu (`cargo install --locked tansu
//! --version 0.6.0 --features dynostore`) with memory storage on a free port, stopped when dropped. It
//! creates topics through the admin API, takes `acks=all` idempotent produce and serves consumer groups
//! with `read_committed`; it does not auto-create topics or offer transactions.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker on a free loopback port, stopped when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

/// The tansu binary: `$TANSU`, the CI's tool cache, or the PATH.
pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/shopstream/tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    PathBuf::from("tansu")
}

impl Broker {
    /// Starts a broker; panics with how to install tansu when it cannot.
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting tansu ({e}): install it with `cargo install --locked tansu --version 0.6.0 \
                     --features dynostore --root ~/.cache/shopstream/tools` (.ci/run does)"
                )
            });
        let address = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, address }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
