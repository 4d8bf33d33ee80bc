//! Integration tests of the engine: real Delta commits in a temporary lake, real files from testdata/.

mod compact;
mod datasets;
mod derive;
mod golden;
mod load;
mod robust;
mod s3;
mod views;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use shopstream_engine::load::{LoadSummary, WriteOptions, load_files};
use shopstream_engine::output::{OutputFormat, write};
use shopstream_engine::{Catalog, Lake};
use shopstream_ingest::{MappingConfig, ReadOptions};

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

pub async fn load(lake: &Lake, files: &[PathBuf], mappings: Vec<MappingConfig>) -> LoadSummary {
    let read = ReadOptions {
        mappings,
        ..Default::default()
    };
    load_with(lake, files, read).await
}

pub async fn load_with(lake: &Lake, files: &[PathBuf], read: ReadOptions) -> LoadSummary {
    load_files(
        lake,
        &shopstream_ingest::expand_paths(files).expect("test inputs exist"),
        &read,
        &WriteOptions::default(),
        Arc::new(AtomicBool::new(false)),
        &|_| {},
    )
    .await
    .expect("load succeeds")
}

/// The names of the lake's tables.
pub async fn table_names(lake: &Lake) -> Vec<String> {
    lake.list()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

pub async fn query_csv(lake: &Lake, sql: &str) -> String {
    let catalog = Catalog::open(lake).await.unwrap();
    let result = catalog
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    write(&result, OutputFormat::Csv, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Every file under `dir`, at any depth.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
