//! The HTTP+JSON gateway: the same requests against real etcd 3.4 and oxetcd, the answers
//! (status and body) compared byte for byte once IDs and raft terms are normalized.

use oxetcd_tests::{against_etcd, first_difference, http_request, normalize, Kind, Member};

/// (method, path, body) in order, each against the same fresh member.
const STEPS: &[(&str, &str, &str)] = &[
    ("POST", "/v3/kv/put", r#"{"key":"Z3c=","value":"MQ=="}"#),
    (
        "POST",
        "/v3beta/kv/put",
        r#"{"key":"Z3c=","value":"Mg==","prev_kv":true}"#,
    ),
    (
        "POST",
        "/v3alpha/kv/put",
        r#"{"key":"Z3c=","value":"Mw=="}"#,
    ),
    (
        "POST",
        "/v3/kv/put",
        r#"{"key":"b3RoZXI=","value":"eA==","bogus_field":1}"#,
    ),
    ("POST", "/v3/kv/range", r#"{"key":"Z3c="}"#),
    (
        "POST",
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    ),
    (
        "POST",
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","keys_only":true,"limit":1,"sort_order":"DESCEND","sort_target":"KEY"}"#,
    ),
    (
        "POST",
        "/v3/kv/range",
        r#"{"key":"Z3c=","revision":100000}"#,
    ),
    ("POST", "/v3/kv/range", r#"{"key":"Z3c=","revision":"1"}"#),
    (
        "POST",
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Z3c=","result":"EQUAL","target":"VALUE","value":"Mg=="}],"success":[{"request_range":{"key":"Z3c="}}],"failure":[{"request_put":{"key":"Z3c=","value":"eA=="}}]}"#,
    ),
    (
        "POST",
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Z3c=","result":"GREATER","target":"VERSION","version":"5"}],"success":[],"failure":[{"request_put":{"key":"Z3c=","value":"eQ==","prev_kv":true}},{"request_delete_range":{"key":"b3RoZXI="}}]}"#,
    ),
    (
        "POST",
        "/v3/kv/deleterange",
        r#"{"key":"Z3c=","prev_kv":true}"#,
    ),
    ("POST", "/v3/kv/compaction", r#"{"revision":"3"}"#),
    ("POST", "/v3/kv/range", r#"{"key":"Z3c=","revision":2}"#),
    ("POST", "/v3/kv/compaction", r#"{"revision":100}"#),
    ("POST", "/v3/lease/grant", r#"{"TTL":60,"ID":7}"#),
    ("POST", "/v3/lease/grant", r#"{"TTL":60,"ID":7}"#),
    (
        "POST",
        "/v3/kv/put",
        r#"{"key":"bGVhc2Vk","value":"dg==","lease":7}"#,
    ),
    ("POST", "/v3/kv/lease/leases", ""),
    ("POST", "/v3/lease/revoke", r#"{"ID":1}"#),
    ("POST", "/v3/lease/revoke", r#"{"ID":7}"#),
    ("POST", "/v3/kv/range", r#"{"key":"bGVhc2Vk"}"#),
    (
        "POST",
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"x"}"#,
    ),
    ("POST", "/v3/auth/user/list", ""),
    ("POST", "/v3/auth/role/add", r#"{"name":"r"}"#),
    ("POST", "/v3/auth/role/get", r#"{"role":"r"}"#),
    ("POST", "/v3/auth/role/get", r#"{"role":"nope"}"#),
    ("POST", "/v3/kv/put", r#"{"value":"eA=="}"#),
    ("GET", "/v3/kv/range", ""),
    ("POST", "/v3/nothing/here", "{}"),
];

fn transcript(m: &Member) -> String {
    let port = m.client_port;
    let mut out = String::new();
    for (method, path, body) in STEPS {
        let (status, answer) = http_request(port, method, path, body);
        out.push_str(&format!("$ {method} {path} {body}\n[HTTP {status}] "));
        out.push_str(&normalize(answer.trim_end()));
    }
    out
}

#[test]
#[ignore = "prints the transcript for a human to read"]
fn dump_gateway_transcript() {
    println!("{}", transcript(&Member::start(Kind::Oxetcd)));
}

#[test]
fn gateway_answers_as_etcds() {
    let (reference, ours) = against_etcd(transcript);
    assert!(
        reference == ours,
        "the gateway differs from etcd's at {}\n--- oxetcd:\n{ours}",
        first_difference(&reference, &ours)
    );
}

/// Bodies that are not the request message, or are but in jsonpb's looser forms: each gets
/// etcd's answer byte for byte (status, code and Go's words), and the member keeps serving.
#[test]
fn bad_bodies_get_etcds_answers_and_the_member_keeps_serving() {
    const BODIES: &[(&str, &str)] = &[
        ("kv/put", "["),
        ("kv/put", "[]"),
        ("kv/put", "5"),
        ("kv/put", r#""x""#),
        ("kv/put", "null"),
        ("kv/put", r#"{"key":7}"#),
        ("kv/put", r#"{"key":{}}"#),
        ("kv/put", r#"{"key":["a"]}"#),
        ("kv/put", r#"{"key":[256]}"#),
        ("kv/put", r#"{"key":[true]}"#),
        ("kv/put", r#"{"key":"not base64!"}"#),
        ("kv/put", r#"{"key":"Z3c","value":"YQ"}"#),
        ("kv/put", r#"{"key":"Z3c=="}"#),
        ("kv/put", r#"{"key":"Z3-_"}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":"x"}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":1.5}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":true}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":"-1"}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":18446744073709551616}"#),
        ("kv/put", r#"{"key":"Z3c=","lease":"1e3"}"#),
        ("kv/put", r#"{"key":"Z3c=","prev_kv":"yes"}"#),
        ("kv/put", r#"{"key":"Z3c=","prev_kv":1}"#),
        ("kv/put", r#"{"lease":"x","key":"!"}"#),
        ("kv/put", r#"{"key":[103,119],"value":[1,2]}"#),
        ("kv/range", r#"{"key":[103,119]}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":"FOO"}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":"\u0041SCEND"}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":7}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":"1"}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":true}"#),
        ("kv/range", r#"{"key":"Z3c=","sort_order":1.5}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":" 5"}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":""}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"1 2"}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"1."}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"tru"}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"1\u0030"}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"[1]"}"#),
        ("kv/range", r#"{"key":"Z3c=","limit":"null"}"#),
        (
            "kv/range",
            r#"{"key":"Z3c=","max_mod_revision":9223372036854775808}"#,
        ),
        ("kv/range", r#"{"key":"Z3c=","keys_only":"true"}"#),
        (
            "kv/range",
            r#"{"key":"Z3c=","rangeEnd":"Z3d=","range_end":"!!","countOnly":true}"#,
        ),
        ("kv/range", r#"{"key":"Z3c=" "x":1}"#),
        ("kv/range", r#"{"key" 1}"#),
        ("kv/range", "{1:2}"),
        ("kv/range", "[1 2]"),
        ("kv/range", r#""ab\x""#),
        ("kv/range", "\u{1}"),
        ("kv/txn", r#"{"compare":[{"key":"Z3c=","result":"FOO"}]}"#),
        ("kv/txn", r#"{"compare":{"key":"Z3c="}}"#),
        ("kv/txn", r#"{"compare":[5]}"#),
        ("kv/txn", r#"{"success":[{"request_put":{"key":5}}]}"#),
        ("kv/txn", r#"{"success":[{"requestRange":{"key":"Z3c="}}]}"#),
        (
            "kv/txn",
            r#"{"compare":[{"key":"Z3c=","target":"VALUE","value":"!"}]}"#,
        ),
        ("cluster/member/remove", r#"{"ID":-1}"#),
        ("cluster/member/remove", r#"{"ID":"-1"}"#),
        ("auth/user/add", r#"{"name":5}"#),
        ("lease/grant", r#"{"TTL":"5000000000000"}"#),
        ("watch", r#"{"create_request":{"key":"!!"}}"#),
        ("watch", "x"),
        (
            "watch",
            r#"{"create_request":{"key":"Z3c=","filters":"NOPUT"}}"#,
        ),
        ("lease/keepalive", r#"{"ID":"x"}"#),
    ];
    let (etcd, ours) = against_etcd(|m| {
        let answers: Vec<String> = BODIES
            .iter()
            .map(|(path, body)| {
                let (status, answer) =
                    http_request(m.client_port, "POST", &format!("/v3/{path}"), body);
                format!(
                    "{path} {body}\n[HTTP {status}] {}",
                    normalize(answer.trim_end())
                )
            })
            .collect();
        let (status, _) = http_request(
            m.client_port,
            "POST",
            "/v3/kv/put",
            r#"{"key":"Z3c=","value":"MQ=="}"#,
        );
        assert_eq!(status, 200);
        assert_eq!(m.etcdctl(&["get", "gw", "--print-value-only"]).ok(), "1\n");
        answers.join("\n")
    });
    assert_same(&etcd, &ours);
}

/// Bodies grpc-gateway's decoder reads its own way, answered byte for byte as etcd's: a body
/// cut short and a stray character (Go's words), a `null` field (absent), what follows the
/// first JSON value (ignored).
#[test]
fn gateway_reads_bodies_as_grpc_gateways_decoder() {
    let bodies = [
        "{",
        "x",
        "  x",
        r#"{"key":"Zm9v"} trailing"#,
        r#"{"key":"Zm9v"}{"key":"YmFy"}"#,
        r#"{"key":null}"#,
        r#"{"key":"Zm9v","range_end":null}"#,
    ];
    let (etcd, ours) = against_etcd(|m| {
        m.etcdctl(&["put", "foo", "1"]).ok();
        bodies
            .iter()
            .map(|b| {
                let (status, answer) = http_request(m.client_port, "POST", "/v3/kv/range", b);
                (status, normalize(&answer))
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(etcd, ours);
}

/// Two transcripts, etcd's first, are the same; else where they part, and both whole.
fn assert_same(reference: &str, ours: &str) {
    assert!(
        reference == ours,
        "differs at {}\n--- etcd:\n{reference}\n--- oxetcd:\n{ours}",
        first_difference(reference, ours)
    );
}

/// The first `lines` lines of a streaming gateway answer (chunked), or fewer if it ends.
fn stream_lines(port: u16, path: &str, body: &str, lines: usize) -> Vec<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).to_string();
        let got: Vec<String> = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
            .split("\r\n")
            .filter(|l| l.starts_with('{'))
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .collect();
        if got.len() >= lines {
            return got.into_iter().take(lines).collect();
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// `/v3/watch` as a stream: created, then the history from the start revision, as etcd's
/// gateway writes it; a second create in the same body works on the same stream.
#[test]
fn gateway_watch_streams_as_etcds() {
    let run = |m: &Member| -> String {
        let port = m.client_port;
        for (path, body) in [
            ("/v3/kv/put", r#"{"key":"Z3c=","value":"MQ=="}"#),
            ("/v3/kv/put", r#"{"key":"Z3c=","value":"Mg=="}"#),
            ("/v3/kv/deleterange", r#"{"key":"Z3c="}"#),
        ] {
            assert_eq!(http_request(port, "POST", path, body).0, 200);
        }
        let body = r#"{"create_request":{"key":"Z3c=","start_revision":2}}
                      {"create_request":{"key":"Z3c=","start_revision":4,"watch_id":9}}"#;
        let lines = stream_lines(port, "/v3/watch", body, 4);
        // Each watch's messages in order; etcd promises no order between two watches.
        let mut by_watch: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let id = l
                    .split_once(r#""watch_id":""#)
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map_or("0".to_string(), |(id, _)| id.to_string());
                (id, normalize(l))
            })
            .collect();
        by_watch.sort_by(|a, b| a.0.cmp(&b.0));
        by_watch
            .into_iter()
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .concat()
    };
    let (reference, ours) = against_etcd(run);
    assert_same(&reference, &ours);
    assert!(ours.contains(r#""type":"DELETE""#), "{ours}");
}

/// `/v3/lease/keepalive` and `/v3/election/observe` stream as etcd's gateway does.
#[test]
fn gateway_keepalive_and_observe_stream_as_etcds() {
    let run = |m: &Member| -> String {
        let port = m.client_port;
        let mut out = String::new();
        for (path, body) in [
            ("/v3/lease/grant", r#"{"TTL":60,"ID":9}"#),
            (
                "/v3/election/campaign",
                r#"{"name":"ZWw=","lease":9,"value":"djE="}"#,
            ),
            ("/v3/election/leader", r#"{"name":"ZWw="}"#),
        ] {
            let (status, answer) = http_request(port, "POST", path, body);
            out.push_str(&format!("[HTTP {status}] {}", normalize(answer.trim_end())));
        }
        for line in stream_lines(port, "/v3/lease/keepalive", r#"{"ID":9}"#, 1) {
            out.push_str(&normalize(&line));
        }
        for line in stream_lines(port, "/v3/election/observe", r#"{"name":"ZWw="}"#, 1) {
            out.push_str(&normalize(&line));
        }
        out
    };
    let (reference, ours) = against_etcd(run);
    assert_same(&reference, &ours);
    assert!(ours.contains(r#""TTL":"60""#), "{ours}");
}

/// OpenStack's etcd3gw (Debian's python3-etcd3gw, a real gateway client): KV, leases, locks,
/// a watch and the cluster calls, answered by oxetcd as by etcd 3.4.
#[test]
fn etcd3gw_client_session_matches_real_etcd() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/etcd3gw_session.py");
    let run = |m: &Member| -> String {
        let port = m.client_port.to_string();
        // Debian's python, where python3-etcd3gw is installed (.ci/setup).
        let out = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .arg(&port)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "etcd3gw session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (reference, ours) = against_etcd(run);
    assert_same(&reference, &ours);
    assert!(ours.contains("lock acquire: True"), "{ours}");
}

/// The gateway through oxetcd-proxy: unary calls and a watch stream.
#[test]
fn gateway_through_the_proxy() {
    let c = oxetcd_tests::Cluster::start(Kind::Oxetcd, 3);
    let p = oxetcd_tests::Proxy::start(&c.endpoints(), &[]);
    let port = p.port;
    let (status, body) = http_request(
        port,
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_request(port, "POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":"YmFy""#), "{body}");
    let lines = stream_lines(
        port,
        "/v3/watch",
        r#"{"create_request":{"key":"Zm9v","start_revision":1}}"#,
        2,
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains(r#""created":true"#), "{lines:?}");
    assert!(lines[1].contains(r#""value":"YmFy""#), "{lines:?}");
    let (status, body) = http_request(port, "GET", "/openapi.json", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""swagger":"2.0""#), "{body}");
}

/// Bodies over the request limits get etcd's gateway answers: "request is too large" past
/// `--max-request-bytes`, grpc-go's "received message larger than max" past the receive limit.
#[test]
fn oversized_bodies_are_refused_as_etcds_gateway_does() {
    // `n` bytes of "x", base64 ("xxx" is "eHh4"): `n` must be a multiple of 3.
    let put = |n: usize| format!(r#"{{"key":"Zm9v","value":"{}"}}"#, "eHh4".repeat(n / 3));
    let run = |m: &Member| -> String {
        let port = m.client_port;
        let mut out = String::new();
        for n in [1_740_801, 3 * 1024 * 1024] {
            let (status, body) = http_request(port, "POST", "/v3/kv/put", &put(n));
            out.push_str(&format!("[HTTP {status}] {body}\n"));
        }
        out
    };
    let (reference, ours) = against_etcd(run);
    assert_eq!(reference, ours);
    assert!(ours.contains("[HTTP 429]"), "{ours}");
}

/// Auth through the gateway: the token of `/v3/auth/authenticate` in the `Authorization`
/// header, as etcd's gateway takes it; the same answers as etcd's.
#[test]
fn gateway_with_auth_as_etcds() {
    use oxetcd_tests::http_request_with;
    let run = |m: &Member| -> String {
        let port = m.client_port;
        oxetcd_tests::set_up_auth(m, &[]);
        let mut out = String::new();
        let (status, body) = http_request(
            port,
            "POST",
            "/v3/auth/authenticate",
            r#"{"name":"alice","password":"alicepw"}"#,
        );
        assert_eq!(status, 200, "{body}");
        let token = body
            .split_once(r#""token":""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(t, _)| t.to_string())
            .expect("a token");
        let steps: &[(&str, &str, bool)] = &[
            ("/v3/kv/put", r#"{"key":"L2FwcC94","value":"MQ=="}"#, true),
            ("/v3/kv/put", r#"{"key":"L290aGVy","value":"MQ=="}"#, true),
            ("/v3/kv/range", r#"{"key":"L2FwcC94"}"#, true),
            ("/v3/kv/range", r#"{"key":"L2FwcC94"}"#, false),
            ("/v3/auth/user/list", "", true),
            (
                "/v3/auth/authenticate",
                r#"{"name":"alice","password":"wrong"}"#,
                false,
            ),
        ];
        for (path, body, with_token) in steps {
            let headers: Vec<(&str, &str)> = match with_token {
                true => vec![("Authorization", token.as_str())],
                false => vec![],
            };
            let (status, answer) = http_request_with(port, "POST", path, &headers, body);
            out.push_str(&format!("[HTTP {status}] {}", normalize(answer.trim_end())));
        }
        let (status, answer) = http_request_with(
            port,
            "POST",
            "/v3/kv/range",
            &[("Authorization", "garbage")],
            r#"{"key":"L2FwcC94"}"#,
        );
        out.push_str(&format!("[HTTP {status}] {}", normalize(answer.trim_end())));
        out
    };
    let (reference, ours) = against_etcd(run);
    assert_same(&reference, &ours);
    assert!(ours.contains("permission denied"), "{ours}");
}

/// `/v3/maintenance/snapshot` streams the backup as etcd's gateway does: `{"result":…}` lines
/// with base64 chunks and the bytes still to come, the last one the sha256 of the rest; the
/// chunks make a file real `etcdctl snapshot status` reads.
#[test]
fn gateway_snapshot_streams_as_etcds() {
    use base64::Engine;
    use sha2::Digest;
    let (etcd, ours) = against_etcd(|m| {
        m.etcdctl(&["put", "a", "1"]).ok();
        let (status, body) = http_request(m.client_port, "POST", "/v3/maintenance/snapshot", "{}");
        assert_eq!(status, 200, "{body}");
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let blob = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v["result"]["blob"].as_str().expect("blob"))
                .expect("base64")
        };
        let (last, chunks) = lines.split_last().expect("lines");
        let file: Vec<u8> = chunks.iter().flat_map(blob).collect();
        let sha_ok = sha2::Sha256::digest(&file).as_slice() == blob(last).as_slice();
        let shapes: Vec<Vec<String>> = [&lines[0], last]
            .iter()
            .map(|v| {
                v["result"]
                    .as_object()
                    .expect("result")
                    .keys()
                    .cloned()
                    .collect()
            })
            .collect();
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("s.db");
        std::fs::write(&path, &file).expect("write");
        let status = m.etcdctl(&["snapshot", "status", path.to_str().unwrap()]);
        (sha_ok, shapes, status.code, file.len() % 4096)
    });
    assert_eq!(etcd, ours);
    assert!(ours.0, "the last chunk is the sha256 of the others");
}

/// 10,000 idle HTTP/1.1 connections on the client port (half stopped mid-request, half that
/// never sent a byte) do not stop the member: gRPC writes and reads, and gateway requests on
/// new connections, are all answered while they stay open, and after they go.
#[tokio::test]
async fn ten_thousand_idle_http_connections_leave_the_member_serving() {
    use std::io::Write;
    let m = Member::start(Kind::Oxetcd);
    let mut idle = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", m.client_port)).expect("connect");
        if i % 2 == 0 {
            s.write_all(b"POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{\"key\"")
                .expect("write");
        }
        idle.push(s);
    }
    let mut c = oxetcd_tests::client(&m.endpoint()).await;
    for i in 0..200 {
        c.put(format!("k{i}"), "v", None)
            .await
            .expect("put while idle connections stay");
    }
    let got = c
        .get(
            "k",
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_count_only(),
            ),
        )
        .await
        .expect("range");
    assert_eq!(got.count(), 200);
    let (status, body) = http_request(
        m.client_port,
        "POST",
        "/v3/kv/range",
        r#"{"key":"azE5OQ=="}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""count":"1""#), "{body}");
    drop(idle);
    c.put("after", "1", None)
        .await
        .expect("put after they close");
}

/// Where `.ci/setup` installs the OpenAPI validator (PyPI's openapi-spec-validator).
const OPENAPI_VALIDATOR: &str = "/var/cache/oxetcd/venv/bin/openapi-spec-validator";

/// The gateway's OpenAPI document at `/openapi.json`: valid Swagger 2.0 by an independent
/// validator; every path in it is one etcd 3.4's gateway serves (a GET there answers 405,
/// not 404) and ours serves under both prefixes; and real answers, etcd's as well as ours,
/// fit the schemas it gives them.
#[test]
fn openapi_document_describes_etcds_gateway() {
    let m = Member::start(Kind::Oxetcd);
    let (status, text) = http_request(m.client_port, "GET", "/openapi.json", "");
    assert_eq!(status, 200, "{text}");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &text).expect("write the document");
    assert!(
        std::path::Path::new(OPENAPI_VALIDATOR).exists(),
        "{OPENAPI_VALIDATOR} is missing: run .ci/setup"
    );
    let out = std::process::Command::new(OPENAPI_VALIDATOR)
        .arg(file.path())
        .output()
        .expect("run the validator");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/v3/kv/range") && paths.contains_key("/v3/watch"));

    let etcd = Member::start(Kind::Etcd);
    for path in paths.keys() {
        // etcd 3.4 has no AuthStatus RPC (3.5 added it).
        if path != "/v3/auth/status" {
            let (status, _) = http_request(etcd.client_port, "GET", path, "");
            assert_eq!(status, 405, "etcd's gateway does not serve {path}");
        }
        let beta = path.replacen("/v3/", "/v3beta/", 1);
        for p in [path.as_str(), beta.as_str()] {
            let (status, _) = http_request(m.client_port, "GET", p, "");
            assert_eq!(status, 405, "the gateway does not serve {p}");
        }
    }

    const CALLS: &[(&str, &str)] = &[
        ("kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
        ("kv/put", r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#),
        ("kv/range", r#"{"key":"Zm9v"}"#),
        (
            "kv/range",
            r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
        ),
        (
            "kv/txn",
            r#"{"compare":[{"key":"Zm9v","result":"GREATER","target":"VERSION","version":"0"}],"success":[{"request_range":{"key":"Zm9v"}},{"request_put":{"key":"YQ==","value":"Yg=="}}]}"#,
        ),
        ("kv/deleterange", r#"{"key":"YQ==","prev_kv":true}"#),
        ("lease/grant", r#"{"TTL":"60","ID":"9"}"#),
        ("lease/timetolive", r#"{"ID":"9","keys":true}"#),
        ("lease/leases", ""),
        ("cluster/member/list", ""),
        ("maintenance/status", ""),
        ("maintenance/alarm", ""),
        ("maintenance/hash", ""),
        ("auth/user/list", ""),
        ("election/leader", r#"{"name":"ZQ=="}"#),
    ];
    for member in [&etcd, &m] {
        for (path, body) in CALLS {
            let op = &doc["paths"][format!("/v3/{path}")]["post"];
            let request = serde_json::from_str(if body.is_empty() { "{}" } else { body }).unwrap();
            fits(&doc, &request, &op["parameters"][0]["schema"])
                .unwrap_or_else(|e| panic!("{path} request {body}: {e}"));
            let (status, answer) =
                http_request(member.client_port, "POST", &format!("/v3/{path}"), body);
            let answer: serde_json::Value = serde_json::from_str(&answer).expect("JSON answer");
            let schema = match status {
                200 => &op["responses"]["200"]["schema"],
                _ => &op["responses"]["default"]["schema"],
            };
            fits(&doc, &answer, schema)
                .unwrap_or_else(|e| panic!("{:?} {path}: {e} in {answer}", member.kind));
        }
        let watch = r#"{"create_request":{"key":"Zm9v","start_revision":"1"}}"#;
        let lines = stream_lines(member.client_port, "/v3/watch", watch, 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let schema = &doc["paths"]["/v3/watch"]["post"]["responses"]["200"]["schema"];
        for line in lines {
            let line = serde_json::from_str(&line).expect("JSON line");
            fits(&doc, &line, schema).unwrap_or_else(|e| panic!("watch: {e} in {line}"));
        }
    }
}

/// Whether `value` is of the document's `schema`: its types and formats (int64 as a decimal
/// string, bytes as base64, enum names), and no property the schema does not name.
fn fits(
    doc: &serde_json::Value,
    value: &serde_json::Value,
    schema: &serde_json::Value,
) -> Result<(), String> {
    use base64::Engine;
    use serde_json::Value;
    if let Some(r) = schema["$ref"].as_str() {
        let mut target = doc;
        for part in r.trim_start_matches("#/").split('/') {
            target = &target[part];
        }
        if target.is_null() {
            return Err(format!("dangling {r}"));
        }
        return fits(doc, value, target);
    }
    if let Some(names) = schema["enum"].as_array() {
        return match names.contains(value) {
            true => Ok(()),
            false => Err(format!("{value} is not one of {names:?}")),
        };
    }
    let format = schema["format"].as_str().unwrap_or_default();
    match (schema["type"].as_str(), value) {
        (Some("object"), Value::Object(members)) => {
            for (name, v) in members {
                let property = &schema["properties"][name];
                if property.is_null() {
                    return Err(format!("{name} is not a documented property"));
                }
                fits(doc, v, property).map_err(|e| format!("{name}: {e}"))?;
            }
            Ok(())
        }
        (Some("array"), Value::Array(items)) => items
            .iter()
            .try_for_each(|v| fits(doc, v, &schema["items"])),
        (Some("string"), Value::String(s)) => match format {
            "int64" if s.parse::<i64>().is_err() => Err(format!("{s} is not an int64")),
            "uint64" if s.parse::<u64>().is_err() => Err(format!("{s} is not a uint64")),
            "byte" if base64::engine::general_purpose::STANDARD.decode(s).is_err() => {
                Err(format!("{s} is not base64"))
            }
            _ => Ok(()),
        },
        (Some("boolean"), Value::Bool(_)) => Ok(()),
        (Some("integer"), Value::Number(n)) if n.is_i64() => Ok(()),
        (Some("number"), Value::Number(_)) => Ok(()),
        (ty, v) => Err(format!("{v} is not of type {ty:?}")),
    }
}
