//! What health-monitor's test files share: the real Kubernetes objects under `tests/fixtures`,
//! reading a metrics registry as `/metrics` serves it, and a real Alertmanager to publish to.
//!
//! Each test file uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;

use alertmanager::AlertmanagerClient;
use serde_json::Value;
use testbed::{Alertmanager, AlertmanagerConfig, HttpSink};

/// The text of `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The item named `name` of the kubectl List in `tests/fixtures/<file>`.
pub fn fixture_item(file: &str, name: &str) -> Value {
    let list: Value = serde_json::from_str(&fixture(file)).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {file}"))
        .clone()
}

/// `registry` as `/metrics` would serve it, read by sample.
pub fn scrape(registry: &prometheus::Registry) -> testbed::Metrics {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    testbed::Metrics::new(text)
}

/// A real Alertmanager notifying receiver `auto-healer` (an HTTP sink, at `path`), and a client
/// of its API.
pub async fn alertmanager_notifying(path: &str) -> (Alertmanager, HttpSink, AlertmanagerClient) {
    let sink = HttpSink::start().await;
    let config = AlertmanagerConfig::new().webhook("auto-healer", format!("{}{path}", sink.url()));
    let am = Alertmanager::start(&config.to_yaml()).await;
    let client = am.client();
    (am, sink, client)
}
