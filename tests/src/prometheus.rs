//! Reading Prometheus text: a member's `/metrics` as families (type, label names, values),
//! and the metric names a PromQL expression (or a source file) mentions.

use std::collections::{BTreeMap, BTreeSet};

/// A scrape: each family's type, the label names its samples carry (`le` left out), and each
/// series' value.
#[derive(Default, Debug)]
pub struct Scrape {
    pub types: BTreeMap<String, String>,
    pub labels: BTreeMap<String, BTreeSet<String>>,
    pub values: BTreeMap<String, f64>,
}

/// Parses Prometheus text exposition format.
pub fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, ty)) = rest.split_once(' ') {
                s.types.insert(name.to_string(), ty.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|f| s.types.get(*f).map(String::as_str) == Some("histogram"))
            .unwrap_or(name);
        let names = s.labels.entry(family.to_string()).or_default();
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            if let Some((k, _)) = pair.split_once('=') {
                if k != "le" {
                    names.insert(k.to_string());
                }
            }
        }
        s.values
            .insert(series.to_string(), value.parse().unwrap_or(f64::NAN));
    }
    s
}

/// The metric names `text` mentions: identifiers of etcd's, gRPC's and the process's families
/// (`etcd_`, `grpc_server_`, `process_`; label names such as `grpc_method` are not), with
/// histogram suffixes taken off.
pub fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["etcd_", "grpc_server_", "process_"]
            .iter()
            .any(|p| bytes[i..].starts_with(p.as_bytes()));
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| i + n);
            let name = &text[i..end];
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(name.to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}
