//! The lake on S3-compatible storage: a real S3 server on loopback (moto). Its conditional put is what
//! Delta commits rely on, so it is checked here first (a race of writers creating the same keys); then
//! loads, SQL, compaction (two at once, with no lock file to keep them apart) and vacuum on it; unsafe
//! settings and a store without conditional put are refused before anything is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use shopstream_engine::compact::{compact, vacuum};
use shopstream_engine::load::WriteOptions;
use shopstream_engine::storage::loopback::S3Server;
use shopstream_engine::{Lake, Table};

use crate::compact::{TOTALS, compact_twice_at_once, slices};
use crate::{load, query_csv};

fn lake(s3: &S3Server, prefix: &str) -> Lake {
    Lake::at_url_with(&s3.url(prefix), &s3.options()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn of_writers_racing_to_create_a_key_exactly_one_wins() {
    let s3 = S3Server::start("race");
    let store = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(&s3.endpoint)
            .with_bucket_name(&s3.bucket)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    let mut writers = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for key in 0..50 {
                let path = StorePath::from(format!("_delta_log/{key:020}.json"));
                let put = store
                    .put_opts(
                        &path,
                        PutPayload::from(format!("writer {w}")),
                        PutOptions::from(PutMode::Create),
                    )
                    .await;
                match put {
                    Ok(_) => won.push(key),
                    Err(object_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            won
        }));
    }
    let mut winners = vec![0; 50];
    for w in writers {
        for key in w.await.unwrap() {
            winners[key] += 1;
        }
    }
    assert_eq!(winners, vec![1; 50], "one writer per key");
}

#[tokio::test(flavor = "multi_thread")]
async fn loads_sql_compaction_and_vacuum_work_on_s3() {
    let s3 = S3Server::start("lake");
    let lake = lake(&s3, "shop/prod");
    let dir = tempfile::tempdir().unwrap();
    let parts = slices(dir.path(), 6);
    for part in &parts {
        load(&lake, std::slice::from_ref(part), vec![]).await;
    }
    let before = query_csv(&lake, TOTALS).await;
    assert!(before.contains("3108,"), "{before}");
    // Loaded files are known: loading them again adds nothing.
    let again = load(&lake, &parts, vec![]).await;
    assert!(again.files.iter().all(|f| f.already_loaded), "{again:?}");
    assert_eq!(query_csv(&lake, TOTALS).await, before);
    let names = crate::table_names(&lake).await;
    assert!(names.contains(&"orders".to_string()), "{names:?}");
    // No lock file on object storage: two compactions at once are kept apart by their commits' txn.
    let (rewrites, a, b) = compact_twice_at_once(&lake).await;
    assert!(rewrites <= 1, "{a:?} {b:?}");
    assert_eq!(query_csv(&lake, TOTALS).await, before, "every line once");
    let orders = Table::orders();
    if rewrites == 0 {
        compact(&lake, &orders, &WriteOptions::default())
            .await
            .unwrap();
    }
    assert_eq!(
        vacuum(&lake, &orders, std::time::Duration::ZERO)
            .await
            .unwrap(),
        6,
        "the six replaced files are deleted"
    );
    assert_eq!(query_csv(&lake, TOTALS).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_settings_and_stores_without_conditional_put_are_refused() {
    let s3 = S3Server::start("unsafe");
    let mut options = s3.options();
    options.insert("AWS_S3_ALLOW_UNSAFE_RENAME".into(), "true".into());
    let err = Lake::at_url_with(&s3.url("x"), &options).err().unwrap();
    assert!(err.to_string().contains("is refused"), "{err}");
    let mut options: BTreeMap<String, String> = s3.options();
    options.insert("aws_conditional_put".into(), "disabled".into());
    let lake = Lake::at_url_with(&s3.url("x"), &options).unwrap();
    let err = lake.open_or_create(&Table::orders()).await.err().unwrap();
    assert!(err.to_string().contains("conditional put"), "{err}");
    assert!(
        lake.open(&Table::orders()).await.unwrap().is_none(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_has_one_holder_until_it_expires_or_is_released() {
    use shopstream_engine::lease::Lease;
    let s3 = S3Server::start("lease");
    let lake = lake(&s3, "l");
    let ttl = std::time::Duration::from_secs(1);
    let mut first = Lease::acquire(&lake, "job", "a", ttl)
        .await
        .unwrap()
        .ok()
        .unwrap();
    let held = Lease::acquire(&lake, "job", "b", ttl)
        .await
        .unwrap()
        .err()
        .unwrap();
    assert_eq!(held.holder, "a");
    assert!(first.renew().await.unwrap(), "the holder renews");
    // Expired: another takes it over, and the old holder's renewal fails.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let second = Lease::acquire(&lake, "job", "b", ttl)
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(!first.renew().await.unwrap(), "taken over");
    // Released: free at once.
    second.release().await;
    assert!(
        Lease::acquire(&lake, "job", "c", ttl)
            .await
            .unwrap()
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_on_one_worker_at_a_time_on_s3_and_on_a_local_lake() {
    use shopstream_engine::lease::claim_job;
    let s3 = S3Server::start("jobs");
    let dir = tempfile::tempdir().unwrap();
    let local = Lake::local(&dir.path().join("lake")).unwrap();
    let ttl = std::time::Duration::from_secs(30);
    for lake in [lake(&s3, "j"), local] {
        let mut first = claim_job(&lake, "poller-shop api", "a", ttl)
            .await
            .unwrap()
            .expect("a free job is claimed");
        assert!(
            claim_job(&lake, "poller-shop api", "b", ttl)
                .await
                .unwrap()
                .is_none(),
            "{}: a held job is not claimed again",
            lake.root()
        );
        assert!(
            claim_job(&lake, "poller-other", "b", ttl)
                .await
                .unwrap()
                .is_some(),
            "another job is free"
        );
        assert!(first.hold().await, "the holder keeps it");
        first.release().await;
        assert!(
            claim_job(&lake, "poller-shop api", "b", ttl)
                .await
                .unwrap()
                .is_some(),
            "{}: a released job is free",
            lake.root()
        );
    }
}
