//! etcdctl 3.4's output formats: `simple`, `json`, `fields`, `table` (table falls back to simple
//! for key-value commands, as etcdctl's does).

use std::io::Write;

use base64::Engine;
use oxetcd_common::authpb::{permission, Permission};
use oxetcd_common::etcdserverpb::{
    response_op, AuthRoleGetResponse, AuthRoleListResponse, AuthUserGetResponse,
    AuthUserListResponse, DeleteRangeResponse, Member, MemberListResponse, MoveLeaderResponse,
    PutResponse, RangeResponse, ResponseHeader, StatusResponse, TxnResponse,
};
use oxetcd_common::mvccpb::KeyValue;
use oxetcd_common::net::prefix_end;
use serde_json::{json, Map, Value};

use crate::error::{Failure, EXIT_BAD_FEATURE};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

#[derive(Clone, Copy)]
pub(crate) struct Printer {
    pub(crate) format: Format,
    pub(crate) hex: bool,
    pub(crate) value_only: bool,
}

// ---- JSON: field names and order of etcd's Go structs, zero values omitted ------------------------

/// One record as etcdctl prints it in each format: `row` comma-separated (simple), under
/// `header` (table), `json`, or one `"Name" : value` line per field (fields).
pub(crate) fn print_record(
    format: Format,
    header: &[&str],
    row: Vec<String>,
    json: Value,
    fields: &[(&str, String)],
) -> Result<(), crate::error::Failure> {
    match format {
        Format::Simple => println!("{}", row.join(", ")),
        Format::Table => print!("{}", table(header, &[row])),
        Format::Json => println!("{json}"),
        Format::Fields => {
            for (name, value) in fields {
                println!("\"{name}\" : {value}");
            }
        }
        Format::Protobuf => return Err(unsupported("protobuf")),
    }
    Ok(())
}

pub(crate) fn b64_value(b: &[u8]) -> Value {
    b64(b)
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

fn put_nonzero_i(m: &mut Map<String, Value>, k: &str, v: i64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

fn put_nonzero_u(m: &mut Map<String, Value>, k: &str, v: u64) {
    if v != 0 {
        m.insert(k.into(), json!(v));
    }
}

pub(crate) fn header_json(h: &Option<ResponseHeader>) -> Value {
    let mut m = Map::new();
    if let Some(h) = h {
        put_nonzero_u(&mut m, "cluster_id", h.cluster_id);
        put_nonzero_u(&mut m, "member_id", h.member_id);
        put_nonzero_i(&mut m, "revision", h.revision);
        put_nonzero_u(&mut m, "raft_term", h.raft_term);
    }
    Value::Object(m)
}

pub(crate) fn kv_json(kv: &KeyValue) -> Value {
    let mut m = Map::new();
    if !kv.key.is_empty() {
        m.insert("key".into(), b64(&kv.key));
    }
    put_nonzero_i(&mut m, "create_revision", kv.create_revision);
    put_nonzero_i(&mut m, "mod_revision", kv.mod_revision);
    put_nonzero_i(&mut m, "version", kv.version);
    if !kv.value.is_empty() {
        m.insert("value".into(), b64(&kv.value));
    }
    put_nonzero_i(&mut m, "lease", kv.lease);
    Value::Object(m)
}

fn with_header(h: &Option<ResponseHeader>) -> Map<String, Value> {
    let mut m = Map::new();
    if h.is_some() {
        m.insert("header".into(), header_json(h));
    }
    m
}

pub(crate) fn range_json(r: &RangeResponse) -> Value {
    let mut m = with_header(&r.header);
    if !r.kvs.is_empty() {
        m.insert(
            "kvs".into(),
            Value::Array(r.kvs.iter().map(kv_json).collect()),
        );
    }
    if r.more {
        m.insert("more".into(), json!(true));
    }
    put_nonzero_i(&mut m, "count", r.count);
    Value::Object(m)
}

pub(crate) fn put_json(r: &PutResponse) -> Value {
    let mut m = with_header(&r.header);
    if let Some(p) = &r.prev_kv {
        m.insert("prev_kv".into(), kv_json(p));
    }
    Value::Object(m)
}

pub(crate) fn del_json(r: &DeleteRangeResponse) -> Value {
    let mut m = with_header(&r.header);
    put_nonzero_i(&mut m, "deleted", r.deleted);
    if !r.prev_kvs.is_empty() {
        m.insert(
            "prev_kvs".into(),
            Value::Array(r.prev_kvs.iter().map(kv_json).collect()),
        );
    }
    Value::Object(m)
}

pub(crate) fn txn_json(r: &TxnResponse) -> Value {
    let mut m = with_header(&r.header);
    if r.succeeded {
        m.insert("succeeded".into(), json!(true));
    }
    if !r.responses.is_empty() {
        let ops = r
            .responses
            .iter()
            .map(|op| {
                let inner = match &op.response {
                    Some(response_op::Response::ResponseRange(x)) => {
                        json!({"ResponseRange": range_json(x)})
                    }
                    Some(response_op::Response::ResponsePut(x)) => {
                        json!({"ResponsePut": put_json(x)})
                    }
                    Some(response_op::Response::ResponseDeleteRange(x)) => {
                        json!({"ResponseDeleteRange": del_json(x)})
                    }
                    Some(response_op::Response::ResponseTxn(x)) => {
                        json!({"ResponseTxn": txn_json(x)})
                    }
                    None => Value::Null,
                };
                json!({ "Response": inner })
            })
            .collect();
        m.insert("responses".into(), Value::Array(ops));
    }
    Value::Object(m)
}

pub(crate) fn member_json(mb: &Member) -> Value {
    let mut m = Map::new();
    put_nonzero_u(&mut m, "ID", mb.id);
    if !mb.name.is_empty() {
        m.insert("name".into(), json!(mb.name));
    }
    if !mb.peer_ur_ls.is_empty() {
        m.insert("peerURLs".into(), json!(mb.peer_ur_ls));
    }
    if !mb.client_ur_ls.is_empty() {
        m.insert("clientURLs".into(), json!(mb.client_ur_ls));
    }
    if mb.is_learner {
        m.insert("isLearner".into(), json!(true));
    }
    Value::Object(m)
}

pub(crate) fn status_json(s: &StatusResponse) -> Value {
    let mut m = with_header(&s.header);
    if !s.version.is_empty() {
        m.insert("version".into(), json!(s.version));
    }
    put_nonzero_i(&mut m, "dbSize", s.db_size);
    put_nonzero_u(&mut m, "leader", s.leader);
    put_nonzero_u(&mut m, "raftIndex", s.raft_index);
    put_nonzero_u(&mut m, "raftTerm", s.raft_term);
    put_nonzero_u(&mut m, "raftAppliedIndex", s.raft_applied_index);
    if !s.errors.is_empty() {
        m.insert("errors".into(), json!(s.errors));
    }
    put_nonzero_i(&mut m, "dbSizeInUse", s.db_size_in_use);
    if s.is_learner {
        m.insert("isLearner".into(), json!(true));
    }
    Value::Object(m)
}

// ---- text helpers -----------------------------------------------------------------------------

/// `\x66\x6f\x6f`, etcdctl's --hex form.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("\\x{x:02x}")).collect()
}

/// Go's `%q`: a double-quoted string with Go escapes.
pub(crate) fn go_quote(b: &[u8]) -> String {
    let mut out = String::from("\"");
    let s = String::from_utf8_lossy(b);
    if std::str::from_utf8(b).is_err() {
        for &c in b {
            match c {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(c as char),
                _ => out.push_str(&format!("\\x{c:02x}")),
            }
        }
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
    out
}

/// go-humanize's `Bytes`: SI units, "20 kB".
pub(crate) fn humanize_bytes(n: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(SIZES.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SIZES[e])
    } else {
        format!("{val:.0} {}", SIZES[e])
    }
}

/// Go's `time.Duration.String()` for the durations etcdctl prints.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    let trim = |v: f64, prec: usize| {
        let s = format!("{v:.prec$}");
        let s = s.trim_end_matches('0').trim_end_matches('.').to_string();
        s
    };
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(ns as f64 / 1e3, 3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(ns as f64 / 1e6, 6))
    } else {
        format!("{}s", trim(ns as f64 / 1e9, 9))
    }
}

/// tablewriter's layout as etcdctl uses it: centred upper-case header, right-aligned cells.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    };
    let mut out = String::new();
    out.push_str(&line);
    out.push('\n');
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let h = h.to_uppercase();
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    out.push('\n');
    for row in rows {
        out.push('|');
        for (c, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {c:>w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out.push('\n');
    out
}

// ---- printers ---------------------------------------------------------------------------------

impl Printer {
    /// etcdctl's printKV: key (unless value-only) and value, each on its own line.
    pub(crate) fn print_kv(&self, kv: &KeyValue) {
        self.kv_simple(kv)
    }

    fn kv_simple(&self, kv: &KeyValue) {
        let (k, v) = if self.hex {
            (hex(&kv.key), hex(&kv.value))
        } else {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        };
        if !self.value_only {
            println!("{k}");
        }
        println!("{v}");
    }

    /// The header lines of every `fields` output.
    pub(crate) fn hdr_fields(h: &Option<ResponseHeader>) {
        let h = h.unwrap_or_default();
        println!("\"ClusterID\" : {}", h.cluster_id);
        println!("\"MemberID\" : {}", h.member_id);
        println!("\"Revision\" : {}", h.revision);
        println!("\"RaftTerm\" : {}", h.raft_term);
    }

    fn kv_fields(pfx: &str, kv: &KeyValue) {
        println!("\"{pfx}Key\" : {}", go_quote(&kv.key));
        println!("\"{pfx}CreateRevision\" : {}", kv.create_revision);
        println!("\"{pfx}ModRevision\" : {}", kv.mod_revision);
        println!("\"{pfx}Version\" : {}", kv.version);
        println!("\"{pfx}Value\" : {}", go_quote(&kv.value));
        println!("\"{pfx}Lease\" : {}", kv.lease);
    }

    pub(crate) fn get(&self, r: &RangeResponse, count_only: bool) {
        match self.format {
            Format::Json => println!("{}", range_json(r)),
            Format::Fields => {
                Self::hdr_fields(&r.header);
                for kv in &r.kvs {
                    Self::kv_fields("", kv);
                }
                println!("\"More\" : {}", r.more);
                println!("\"Count\" : {}", r.count);
            }
            _ => {
                if count_only {
                    println!("{}", r.count);
                    return;
                }
                for kv in &r.kvs {
                    self.kv_simple(kv);
                }
            }
        }
    }

    pub(crate) fn put(&self, r: &PutResponse) {
        match self.format {
            Format::Json => println!("{}", put_json(r)),
            Format::Fields => {
                Self::hdr_fields(&r.header);
                if let Some(p) = &r.prev_kv {
                    Self::kv_fields("Prev", p);
                }
            }
            _ => {
                println!("OK");
                if let Some(p) = &r.prev_kv {
                    self.kv_simple(p);
                }
            }
        }
    }

    pub(crate) fn del(&self, r: &DeleteRangeResponse) {
        match self.format {
            Format::Json => println!("{}", del_json(r)),
            Format::Fields => {
                Self::hdr_fields(&r.header);
                println!("\"Deleted\" : {}", r.deleted);
                for kv in &r.prev_kvs {
                    Self::kv_fields("Prev", kv);
                }
            }
            _ => {
                println!("{}", r.deleted);
                for kv in &r.prev_kvs {
                    self.kv_simple(kv);
                }
            }
        }
    }

    pub(crate) fn txn(&self, r: &TxnResponse) {
        match self.format {
            Format::Json => println!("{}", txn_json(r)),
            Format::Fields => {
                Self::hdr_fields(&r.header);
                println!("\"Succeeded\" : {}", r.succeeded);
                for op in &r.responses {
                    match &op.response {
                        Some(response_op::Response::ResponseRange(x)) => self.get(x, false),
                        Some(response_op::Response::ResponsePut(x)) => self.put(x),
                        Some(response_op::Response::ResponseDeleteRange(x)) => self.del(x),
                        other => println!(
                            "\"Unknown\" : {}",
                            go_quote(format!("{other:?}").as_bytes())
                        ),
                    }
                }
            }
            _ => {
                println!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
                for op in &r.responses {
                    println!();
                    match &op.response {
                        Some(response_op::Response::ResponseRange(x)) => self.get(x, false),
                        Some(response_op::Response::ResponsePut(x)) => self.put(x),
                        Some(response_op::Response::ResponseDeleteRange(x)) => self.del(x),
                        other => println!("unexpected response {other:?}"),
                    }
                }
            }
        }
    }

    pub(crate) fn member_list(&self, r: &MemberListResponse) {
        let header = [
            "ID",
            "Status",
            "Name",
            "Peer Addrs",
            "Client Addrs",
            "Is Learner",
        ];
        let rows: Vec<Vec<String>> = r
            .members
            .iter()
            .map(|m| {
                vec![
                    format!("{:x}", m.id),
                    if m.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    }
                    .to_string(),
                    m.name.clone(),
                    m.peer_ur_ls.join(","),
                    m.client_ur_ls.join(","),
                    m.is_learner.to_string(),
                ]
            })
            .collect();
        match self.format {
            Format::Json => {
                let mut m = with_header(&r.header);
                m.insert(
                    "members".into(),
                    Value::Array(r.members.iter().map(member_json).collect()),
                );
                println!("{}", Value::Object(m));
            }
            Format::Table => print!("{}", table(&header, &rows)),
            Format::Fields => {
                Self::hdr_fields(&r.header);
                for m in &r.members {
                    println!("\"ID\" : {}", m.id);
                    println!("\"Name\" : {}", go_quote(m.name.as_bytes()));
                    for u in &m.peer_ur_ls {
                        println!("\"PeerURL\" : {}", go_quote(u.as_bytes()));
                    }
                    for u in &m.client_ur_ls {
                        println!("\"ClientURL\" : {}", go_quote(u.as_bytes()));
                    }
                    println!("\"IsLearner\" : {}", m.is_learner);
                    println!();
                }
            }
            _ => {
                for row in rows {
                    println!("{}", row.join(", "));
                }
            }
        }
    }

    pub(crate) fn move_leader(&self, from: u64, to: u64, r: &MoveLeaderResponse) {
        match self.format {
            Format::Json => println!(
                "{}",
                serde_json::json!({ "header": header_json(&r.header) })
            ),
            _ => println!("Leadership transferred from {from:x} to {to:x}"),
        }
    }

    pub(crate) fn endpoint_hashkv(
        &self,
        list: &[(String, oxetcd_common::etcdserverpb::HashKvResponse)],
    ) {
        match self.format {
            Format::Json => {
                let arr: Vec<Value> = list
                    .iter()
                    .map(|(ep, h)| {
                        let mut m = with_header(&h.header);
                        put_nonzero_u(&mut m, "hash", u64::from(h.hash));
                        put_nonzero_i(&mut m, "compact_revision", h.compact_revision);
                        json!({"Endpoint": ep, "HashKV": Value::Object(m)})
                    })
                    .collect();
                println!("{}", Value::Array(arr));
            }
            Format::Table => {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|(ep, h)| vec![ep.clone(), h.hash.to_string()])
                    .collect();
                print!("{}", table(&["endpoint", "hash"], &rows));
            }
            Format::Fields => {
                for (ep, h) in list {
                    Self::hdr_fields(&h.header);
                    println!("\"Endpoint\" : {}", go_quote(ep.as_bytes()));
                    println!("\"Hash\" : {}", h.hash);
                    println!();
                }
            }
            _ => {
                for (ep, h) in list {
                    println!("{ep}, {}", h.hash);
                }
            }
        }
    }

    pub(crate) fn endpoint_status(&self, list: &[(String, StatusResponse)]) {
        let header = [
            "endpoint",
            "ID",
            "version",
            "db size",
            "is leader",
            "is learner",
            "raft term",
            "raft index",
            "raft applied index",
            "errors",
        ];
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(ep, s)| {
                let me = s.header.as_ref().map(|h| h.member_id).unwrap_or(0);
                vec![
                    ep.clone(),
                    format!("{me:x}"),
                    s.version.clone(),
                    humanize_bytes(s.db_size.max(0) as u64),
                    (s.leader == me).to_string(),
                    s.is_learner.to_string(),
                    s.raft_term.to_string(),
                    s.raft_index.to_string(),
                    s.raft_applied_index.to_string(),
                    s.errors.join(", "),
                ]
            })
            .collect();
        match self.format {
            Format::Json => {
                let arr: Vec<Value> = list
                    .iter()
                    .map(|(ep, s)| json!({"Endpoint": ep, "Status": status_json(s)}))
                    .collect();
                println!("{}", Value::Array(arr));
            }
            Format::Table => print!("{}", table(&header, &rows)),
            Format::Fields => {
                for (ep, s) in list {
                    Self::hdr_fields(&s.header);
                    println!("\"Version\" : {}", go_quote(s.version.as_bytes()));
                    println!("\"DBSize\" : {}", s.db_size);
                    println!("\"Leader\" : {}", s.leader);
                    println!("\"IsLearner\" : {}", s.is_learner);
                    println!("\"RaftIndex\" : {}", s.raft_index);
                    println!("\"RaftTerm\" : {}", s.raft_term);
                    println!("\"RaftAppliedIndex\" : {}", s.raft_applied_index);
                    println!("\"Errors\" : [{}]", s.errors.join(" "));
                    println!("\"Endpoint\" : {}", go_quote(ep.as_bytes()));
                    println!();
                }
            }
            _ => {
                for row in rows {
                    println!("{}", row.join(", "));
                }
            }
        }
    }
}

// ---- auth: users, roles and their permissions ------------------------------------------------

/// Go's `json.Marshal` text for `v`: serde_json's, with the characters Go escapes for HTML
/// safety escaped too (they only occur inside strings, so replacing them is safe).
pub(crate) fn go_json(v: &Value) -> String {
    let s = v.to_string();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Protobuf's wire form, for `-w protobuf` (etcdctl prints a response's Marshal bytes).
pub(crate) mod pb {
    use oxetcd_common::authpb::Permission;
    use oxetcd_common::etcdserverpb::ResponseHeader;

    pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A varint field, left out when zero (proto3).
    pub(crate) fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
        if v != 0 {
            varint(out, field << 3);
            varint(out, v);
        }
    }

    /// A length-delimited field (bytes, string or message), always written.
    pub(crate) fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// Field 1 of every response: its header.
    pub(crate) fn header(h: &Option<ResponseHeader>) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(h) = h {
            let mut m = Vec::new();
            uint(&mut m, 1, h.cluster_id);
            uint(&mut m, 2, h.member_id);
            uint(&mut m, 3, h.revision as u64);
            uint(&mut m, 4, h.raft_term);
            bytes(&mut out, 1, &m);
        }
        out
    }

    pub(super) fn permission(p: &Permission) -> Vec<u8> {
        let mut m = Vec::new();
        uint(&mut m, 1, p.perm_type as i64 as u64);
        if !p.key.is_empty() {
            bytes(&mut m, 2, &p.key);
        }
        if !p.range_end.is_empty() {
            bytes(&mut m, 3, &p.range_end);
        }
        m
    }

    /// Repeated strings in field 2 (`roles`, `users`).
    pub(super) fn strings(list: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in list {
            bytes(&mut out, 2, s.as_bytes());
        }
        out
    }
}

/// One auth response in each form etcdctl prints it in.
struct AuthOut<'a> {
    header: &'a Option<ResponseHeader>,
    /// The JSON fields after "header", empty ones left out (Go's omitempty).
    json: Vec<(&'static str, Value)>,
    /// The protobuf fields after the header, encoded.
    pb: Vec<u8>,
    /// The `fields` lines after the header's; `None` where etcdctl has no fields printer.
    fields: Option<String>,
    /// The `simple` text, raw bytes: etcdctl prints keys unescaped.
    simple: Vec<u8>,
}

impl<'a> AuthOut<'a> {
    /// A response that is only a header (and a sentence in `simple`).
    fn header_only(header: &'a Option<ResponseHeader>, simple: Vec<u8>) -> Self {
        AuthOut {
            header,
            json: Vec::new(),
            pb: Vec::new(),
            fields: Some(String::new()),
            simple,
        }
    }
}

pub(crate) fn write_stdout(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b);
    let _ = out.flush();
}

/// etcdctl's printerUnsupported: the call was made, the printing fails.
pub(crate) fn unsupported(format: &str) -> Failure {
    Failure::new(
        EXIT_BAD_FEATURE,
        format!("{format} not supported as output format"),
    )
}

fn perm_type_name(t: i32) -> String {
    permission::Type::try_from(t)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn perm_json(p: &Permission) -> Value {
    let mut m = Map::new();
    put_nonzero_i(&mut m, "permType", p.perm_type.into());
    if !p.key.is_empty() {
        m.insert("key".into(), b64(&p.key));
    }
    if !p.range_end.is_empty() {
        m.insert("range_end".into(), b64(&p.range_end));
    }
    Value::Object(m)
}

/// A list of names as the JSON of a repeated string field, left out when empty.
fn names_json(key: &'static str, list: &[String]) -> Vec<(&'static str, Value)> {
    if list.is_empty() {
        Vec::new()
    } else {
        vec![(key, json!(list))]
    }
}

/// `simple`'s line for one permission of `role get`.
fn perm_simple(out: &mut Vec<u8>, p: &Permission) {
    out.push(b'\t');
    if p.range_end.is_empty() {
        out.extend_from_slice(&p.key);
        out.push(b'\n');
        return;
    }
    out.push(b'[');
    out.extend_from_slice(&p.key);
    out.extend_from_slice(b", ");
    if p.range_end != [0] {
        out.extend_from_slice(&p.range_end);
        out.push(b')');
    } else {
        out.extend_from_slice(b"<open ended>");
    }
    if prefix_end(&p.key) == p.range_end {
        out.extend_from_slice(b" (prefix ");
        out.extend_from_slice(&p.key);
        out.push(b')');
    }
    out.push(b'\n');
}

impl Printer {
    fn auth(&self, o: AuthOut<'_>) -> Result<(), Failure> {
        match self.format {
            Format::Simple => write_stdout(&o.simple),
            Format::Json => {
                let mut m = with_header(o.header);
                for (k, v) in o.json {
                    m.insert(k.into(), v);
                }
                println!("{}", go_json(&Value::Object(m)));
            }
            Format::Protobuf => {
                let mut b = pb::header(o.header);
                b.extend_from_slice(&o.pb);
                write_stdout(&b);
            }
            Format::Fields => {
                let Some(f) = o.fields else {
                    return Err(unsupported("fields"));
                };
                Self::hdr_fields(o.header);
                print!("{f}");
            }
            Format::Table => return Err(unsupported("table")),
        }
        Ok(())
    }

    /// The responses that are only a header: `role add|delete|grant-permission|revoke-permission`,
    /// `user add|delete|passwd|grant-role|revoke-role`, with etcdctl's sentence for `simple`.
    pub(crate) fn auth_done(
        &self,
        header: &Option<ResponseHeader>,
        simple: impl Into<Vec<u8>>,
    ) -> Result<(), Failure> {
        self.auth(AuthOut::header_only(header, simple.into()))
    }

    pub(crate) fn role_get(&self, role: &str, r: &AuthRoleGetResponse) -> Result<(), Failure> {
        let mut simple = format!("Role {role}\nKV Read:\n").into_bytes();
        let read = |p: &&Permission| {
            p.perm_type == permission::Type::Read as i32
                || p.perm_type == permission::Type::Readwrite as i32
        };
        let write = |p: &&Permission| {
            p.perm_type == permission::Type::Write as i32
                || p.perm_type == permission::Type::Readwrite as i32
        };
        for p in r.perm.iter().filter(read) {
            perm_simple(&mut simple, p);
        }
        simple.extend_from_slice(b"KV Write:\n");
        for p in r.perm.iter().filter(write) {
            perm_simple(&mut simple, p);
        }
        let mut fields = String::new();
        for p in &r.perm {
            // Go's Println puts a space between `"PermType" : ` and the name: two spaces.
            fields.push_str(&format!(
                "\"PermType\" :  {}\n",
                perm_type_name(p.perm_type)
            ));
            fields.push_str(&format!("\"Key\" : {}\n", go_quote(&p.key)));
            fields.push_str(&format!("\"RangeEnd\" : {}\n", go_quote(&p.range_end)));
        }
        let json = if r.perm.is_empty() {
            Vec::new()
        } else {
            vec![("perm", Value::Array(r.perm.iter().map(perm_json).collect()))]
        };
        let mut pb = Vec::new();
        for p in &r.perm {
            pb::bytes(&mut pb, 2, &pb::permission(p));
        }
        self.auth(AuthOut {
            header: &r.header,
            json,
            pb,
            fields: Some(fields),
            simple,
        })
    }

    pub(crate) fn role_list(&self, r: &AuthRoleListResponse) -> Result<(), Failure> {
        let mut fields = String::from("\"Roles\" :");
        for role in &r.roles {
            fields.push(' ');
            fields.push_str(&go_quote(role.as_bytes()));
        }
        fields.push('\n');
        self.auth(AuthOut {
            header: &r.header,
            json: names_json("roles", &r.roles),
            pb: pb::strings(&r.roles),
            fields: Some(fields),
            simple: r
                .roles
                .iter()
                .map(|x| format!("{x}\n"))
                .collect::<String>()
                .into_bytes(),
        })
    }

    pub(crate) fn user_get(&self, name: &str, r: &AuthUserGetResponse) -> Result<(), Failure> {
        let mut simple = format!("User: {name}\nRoles:");
        for role in &r.roles {
            simple.push(' ');
            simple.push_str(role);
        }
        simple.push('\n');
        self.auth(AuthOut {
            header: &r.header,
            json: names_json("roles", &r.roles),
            pb: pb::strings(&r.roles),
            fields: None,
            simple: simple.into_bytes(),
        })
    }

    pub(crate) fn user_list(&self, r: &AuthUserListResponse) -> Result<(), Failure> {
        self.auth(AuthOut {
            header: &r.header,
            json: names_json("users", &r.users),
            pb: pb::strings(&r.users),
            fields: None,
            simple: r
                .users
                .iter()
                .map(|x| format!("{x}\n"))
                .collect::<String>()
                .into_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_like_go() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(2_000_000), "2.0 MB");
    }

    #[test]
    fn table_like_tablewriter() {
        let t = table(
            &["ID", "Status", "Name"],
            &[vec![
                "2514ac7e27f4fc57".into(),
                "started".into(),
                "m2".into(),
            ]],
        );
        let want = "+------------------+---------+------+\n\
                    |        ID        | STATUS  | NAME |\n\
                    +------------------+---------+------+\n\
                    | 2514ac7e27f4fc57 | started |   m2 |\n\
                    +------------------+---------+------+\n";
        assert_eq!(t, want);
    }

    #[test]
    fn json_matches_etcdctl() {
        let r = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 6,
                raft_term: 2,
            }),
            kvs: vec![KeyValue {
                key: b"foo".to_vec(),
                create_revision: 2,
                mod_revision: 3,
                version: 2,
                value: b"bar2".to_vec(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        assert_eq!(
            range_json(&r).to_string(),
            r#"{"header":{"cluster_id":1,"member_id":2,"revision":6,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFyMg=="}],"count":1}"#
        );
    }

    #[test]
    fn auth_protobuf_and_json_like_etcdctl() {
        // `user get -w protobuf` of etcd 3.4 (a user with roles r2 and root).
        let h = Some(ResponseHeader {
            cluster_id: 324952591200643719,
            member_id: 3319814642761637952,
            revision: 1,
            raft_term: 2,
        });
        let mut b = pb::header(&h);
        b.extend(pb::strings(&["r2".to_string(), "root".to_string()]));
        let want = b"\n\x18\x08\x87\xd5\xed\xba\x8f\xd5\x9d\xc1\x04\x10\xc0\xc0\xca\xaf\xc1\xba\x96\x89\x2e\x18\x01\x20\x02\x12\x02r2\x12\x04root";
        assert_eq!(b, want.to_vec());
        assert_eq!(
            go_json(&json!({"roles": ["a<b&c>"]})),
            r#"{"roles":["a\u003cb\u0026c\u003e"]}"#
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote(b"bar2"), "\"bar2\"");
        assert_eq!(go_quote(b"a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(go_quote(&[0xff]), "\"\\xff\"");
    }
}
