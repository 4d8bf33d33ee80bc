//! End-to-end tests of the `shopstream` binary: exit codes, errors, loads killed mid-way, the
//! bad-input corpus, and migrating a lake of the previous release.

mod bad_inputs;
mod crash;
mod datasets;
mod errors;
mod kafka;
mod live;
mod migrate;
mod s3;
mod views;

use std::path::Path;
use std::process::{Command, Output};

pub fn shopstream(data_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shopstream"));
    c.arg("--data-dir")
        .arg(data_dir)
        .env_remove("SHOPSTREAM_CONFIG")
        .env_remove("RUST_LOG");
    c
}

/// Waits (up to 2 minutes) until `ok` holds; fails the test with `what` otherwise.
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    shopstream(data_dir)
        .args(args)
        .output()
        .expect("shopstream runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
