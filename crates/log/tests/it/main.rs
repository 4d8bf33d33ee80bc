//! Integration tests of the log: against an in-memory model, torn and corrupt tails, retention, concurrent
//! producers, and a writer process SIGKILLed dozens of times.

mod crash;
mod model;
mod recovery;

use shopstream_log::NewRecord;

/// A record whose value says who wrote it.
pub fn rec(ts: i64, value: &str) -> NewRecord {
    NewRecord::new(ts, value.as_bytes().to_vec())
}
