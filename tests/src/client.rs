//! The etcd-client helpers (connect, read the whole key space) and a plain HTTP GET.

/// A plain HTTP/1.1 GET on loopback; the whole response (status line, headers, body), or ""
/// if nothing listens.
pub fn http_get(port: u16, path: &str) -> String {
    http_get_at("127.0.0.1", port, path)
}

/// [`http_get`] of `host`; "" also if it does not answer within a second.
pub fn http_get_at(host: &str, port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(addr) = format!("{host}:{port}").parse::<std::net::SocketAddr>() else {
        return String::new();
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1))
    else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// One plain HTTP/1.1 request on loopback: the status code and the body (chunked bodies
/// joined); `(0, "")` if nothing listens.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request_with(port, method, path, &[], body)
}

/// [`http_request`] with more request headers.
pub fn http_request_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let _ = write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    if !chunked {
        return (status, rest.to_string());
    }
    let mut out = String::new();
    let mut rest = rest;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    (status, out)
}

/// A plain gRPC channel to one endpoint (`host:port`), for the generated clients.
pub async fn channel(endpoint: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{endpoint}"))
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// An etcd-client connected to one endpoint (`host:port`).
pub async fn client(endpoint: &str) -> etcd_client::Client {
    etcd_client::Client::connect([format!("http://{endpoint}")], None)
        .await
        .expect("connect")
}

/// (key, value, create revision, mod revision, version) of one key.
pub type Row = (Vec<u8>, Vec<u8>, i64, i64, i64);

/// The store revision and every key with its revisions: two members with the same state
/// answer the same.
pub async fn key_space(c: &mut etcd_client::Client) -> (i64, Vec<Row>) {
    let r = c
        .get("", Some(etcd_client::GetOptions::new().with_all_keys()))
        .await
        .expect("range all");
    let rev = r.header().expect("header").revision();
    (rev, rows(r.kvs()))
}

/// Keys with their values and revisions, to compare what two members hold.
pub fn rows(kvs: &[etcd_client::KeyValue]) -> Vec<Row> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key().to_vec(),
                kv.value().to_vec(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}
