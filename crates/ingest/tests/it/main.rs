//! Integration tests of the ingest crate's live sources.

mod api;
