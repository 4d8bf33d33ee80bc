//! A Kafka-protocol broker on loopback for tests and benchmarks: tansu (`cargo install --locked tansu
//! --version 0.6.0 --features dynostore`) with memory storage on a free port, stopped when dropped. It
//! creates topics through the admin API, takes `acks=all` idempotent produce and serves consumer groups
//! with `read_committed`; it does not auto-create topics or offer transactions. [`SecureBroker`] puts TLS and
//! SASL/SCRAM in front of it.

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(address: &str, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Broker {
    /// Starts a broker; panics with how to install tansu when it cannot.
    pub fn start() -> Broker {
        let port = free_port();
        Broker::start_advertising(port, port)
    }

    /// A broker on `port` that tells clients to connect to `advertised` (a front's port).
    fn start_advertising(port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &advertised])
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
        wait_listening(&address, "tansu");
        Broker { child, address }
    }
}

/// A broker clients reach only over TLS and with SASL/SCRAM-SHA-256: tansu behind `secure_front.py`
/// (Python's `ssl` and `hashlib`; tansu 0.6.0 offers neither), with a self-signed certificate for
/// 127.0.0.1 made by the `openssl` command. Stopped, and its files removed, when dropped.
pub struct SecureBroker {
    _broker: Broker,
    front: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT` of the front.
    pub address: String,
    /// The certificate to trust (`ssl.ca.location`).
    pub ca: PathBuf,
}

impl SecureBroker {
    /// Starts tansu and its front, which accepts `user` with `password`.
    pub fn start(user: &str, password: &str) -> SecureBroker {
        let front_port = free_port();
        let broker = Broker::start_advertising(free_port(), front_port);
        let dir = std::env::temp_dir().join(format!(
            "shopstream-front-{}-{front_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key, script) = (
            dir.join("cert.pem"),
            dir.join("key.pem"),
            dir.join("front.py"),
        );
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command (Debian's openssl)");
        assert!(made.success(), "openssl could not make a certificate");
        std::fs::write(&script, include_str!("secure_front.py")).unwrap();
        let front = Command::new("python3")
            .arg("-I")
            .arg(&script)
            .arg(front_port.to_string())
            .arg(&broker.address)
            .args([&cert, &key])
            .args([user, password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let address = format!("127.0.0.1:{front_port}");
        wait_listening(&address, "the TLS and SASL front");
        SecureBroker {
            _broker: broker,
            front,
            dir,
            address,
            ca: cert,
        }
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        let _ = self.front.kill();
        let _ = self.front.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
