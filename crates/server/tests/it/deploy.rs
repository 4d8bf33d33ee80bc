//! The container recipe and Kubernetes manifests (`deploy/`) against the configuration they ship: no
//! container engine runs here, so they are read and checked, not built. The ConfigMap's `shopstream.toml`
//! loads and validates; every `${NAME}` it uses is in the container's environment, secrets from one Secret;
//! the ports the config listens on are the container's, the Services' and the Dockerfile's; the probes ask
//! `/health` of the HTTP port, which a running server answers without its token; the image runs as a user,
//! with limits, a pinned tag and the libraries the binary links.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use shopstream_server::config::{BackboneKind, interpolate};
use shopstream_server::{Config, ServerConfig};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn yaml(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy().join("k8s").join(name)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

/// The ConfigMap's config, with each `${NAME}` replaced by a placeholder; returns it and the names.
fn shipped_config() -> (Config, BTreeSet<String>) {
    let map = &yaml("configmap.yaml")[0];
    assert_eq!(map["kind"], "ConfigMap");
    let text = map["data"]["shopstream.toml"].as_str().unwrap();
    let names = std::cell::RefCell::new(BTreeSet::new());
    let text = interpolate(text, |n| {
        names.borrow_mut().insert(n.to_string());
        Some(format!("placeholder-{n}"))
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shopstream.toml");
    std::fs::write(&path, text).unwrap();
    (Config::load(Some(&path)).unwrap(), names.into_inner())
}

fn port(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

fn container() -> Value {
    let d = &yaml("deployment.yaml")[0];
    assert_eq!(d["kind"], "Deployment");
    d["spec"]["template"]["spec"]["containers"][0].clone()
}

fn container_port(c: &Value, name: &str) -> u64 {
    c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no container port `{name}`"))["containerPort"]
        .as_u64()
        .unwrap()
}

#[test]
fn the_manifests_run_the_shipped_config() {
    let (config, names) = shipped_config();
    let c = container();
    // The ports the config and the container's arguments listen on are the container's.
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let arg = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
    assert_eq!(args[0], "serve");
    let http = container_port(&c, "http");
    let pg = container_port(&c, "postgres");
    assert_eq!(port(&config.server.listen), http);
    assert_eq!(port(arg("--listen")), http);
    assert_eq!(port(&config.postgres.listen), pg);
    assert_eq!(port(arg("--pg-listen")), pg);
    // Every variable the config reads is set; secrets all come from one Secret.
    let env = c["env"].as_sequence().unwrap();
    let set: BTreeSet<String> = env
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    for n in &names {
        assert!(
            set.contains(n),
            "${{{n}}} is used by the config but not set"
        );
    }
    for n in [
        "SHOPSTREAM_CONFIG",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        assert!(set.contains(n), "{n} is not set");
    }
    let secrets: BTreeSet<&str> = env
        .iter()
        .filter_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str())
        .collect();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    // The config file is where SHOPSTREAM_CONFIG says, from the ConfigMap.
    let config_path = env
        .iter()
        .find(|e| e["name"] == "SHOPSTREAM_CONFIG")
        .unwrap()["value"]
        .as_str()
        .unwrap();
    let mount = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    assert_eq!(
        Path::new(config_path).parent().unwrap(),
        Path::new(mount["mountPath"].as_str().unwrap())
    );
    // Several replicas need a shared backbone: the embedded log is one server per lake.
    let replicas = yaml("deployment.yaml")[0]["spec"]["replicas"]
        .as_u64()
        .unwrap();
    assert!(replicas == 1 || config.live.backbone == BackboneKind::Kafka);
    // Services send traffic to the named container ports.
    for service in yaml("service.yaml") {
        assert_eq!(service["kind"], "Service");
        for p in service["spec"]["ports"].as_sequence().unwrap() {
            let target = p["targetPort"].as_str().unwrap();
            container_port(&c, target);
        }
    }
}

#[test]
fn the_probes_ask_what_a_server_answers_without_its_token() {
    let c = container();
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"], "http", "{probe}");
        let path = get["path"].as_str().unwrap();
        let server = crate::start(ServerConfig {
            token: "secret".into(),
            ..ServerConfig::default()
        });
        let r = ureq::get(format!("{}{path}", server.url)).call();
        assert_eq!(r.unwrap().status(), 200, "{probe} {path}");
    }
}

#[test]
fn the_image_is_pinned_runs_as_a_user_with_limits_and_the_binarys_libraries() {
    let c = container();
    let image = c["image"].as_str().unwrap();
    assert!(
        !image.ends_with(":latest") && image.contains(':'),
        "{image}"
    );
    let spec = &yaml("deployment.yaml")[0]["spec"]["template"]["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    for r in ["cpu", "memory"] {
        assert!(!c["resources"]["limits"][r].is_null(), "limit {r}");
        assert!(!c["resources"]["requests"][r].is_null(), "request {r}");
    }
    let docker = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    let (http, pg) = (container_port(&c, "http"), container_port(&c, "postgres"));
    assert!(docker.contains(&format!("EXPOSE {http} {pg}")));
    assert!(docker.contains(&format!("--listen\", \"0.0.0.0:{http}\"")));
    // The build stage's toolchain is the workspace's (rust-version); the runtime stage has OpenSSL
    // (rdkafka's TLS and SASL) and CA certificates, and a user that is not root.
    let workspace = std::fs::read_to_string(deploy().join("../Cargo.toml")).unwrap();
    let version = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(
        docker.contains(&format!("FROM rust:{version}-")),
        "rust {version}"
    );
    for needed in [
        "libssl3",
        "ca-certificates",
        "USER 10001",
        "cargo build --release --locked -p shopstream",
    ] {
        assert!(docker.contains(needed), "{needed}");
    }
    assert_eq!(spec["securityContext"]["runAsUser"].as_u64(), Some(10001));
}
