//! DNS SRV discovery (`--discovery-srv`), as etcd does it.
//!
//! A member bootstraps from the `_etcd-server._tcp.<domain>` records (and `_etcd-server-ssl`),
//! a proxy finds members from `_etcd-client._tcp.<domain>` (and `_etcd-client-ssl`). With
//! `--discovery-srv-name X` the services are `_etcd-server-X` and so on.
//!
//! SRV queries go over UDP to the nameservers of `/etc/resolv.conf`, or to `OXETCD_DNS_SERVER`
//! (`host:port`) when set: a test runs its own DNS server on loopback that way. An answer too
//! large for UDP comes back truncated (the TC bit); the query is then repeated over TCP to the
//! same server and port (RFC 1035 4.2.2), as every resolver does. Targets are
//! resolved by the system resolver, as etcd (Go's resolver) does. A small client of our own
//! keeps a DNS library's dependency tree out of the build; it asks one question and reads only
//! SRV answers, so it is short.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Environment variable naming the DNS server (`host:port`) for SRV queries instead of
/// `/etc/resolv.conf`'s.
pub const DNS_SERVER_ENV: &str = "OXETCD_DNS_SERVER";

const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, without the trailing dot.
    pub target: String,
}

#[derive(Debug)]
pub enum DnsError {
    /// No nameserver is configured.
    NoServer,
    /// The name does not exist or has no SRV records.
    NotFound(String),
    /// No nameserver answered.
    Unreachable(String),
    /// An answer that could not be read.
    Malformed(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NoServer => write!(
                f,
                "no DNS server: none in /etc/resolv.conf and {DNS_SERVER_ENV} is not set"
            ),
            DnsError::NotFound(n) => write!(f, "lookup {n}: no such host"),
            DnsError::Unreachable(e) => write!(f, "DNS server unreachable: {e}"),
            DnsError::Malformed(e) => write!(f, "malformed DNS answer: {e}"),
        }
    }
}

impl std::error::Error for DnsError {}

fn nameservers() -> Vec<SocketAddr> {
    if let Ok(s) = std::env::var(DNS_SERVER_ENV) {
        return s.parse().into_iter().collect();
    }
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The SRV records of `name` (e.g. `_etcd-server._tcp.example.com`), in priority order.
pub async fn lookup_srv(name: &str) -> Result<Vec<Srv>, DnsError> {
    lookup_srv_at(&nameservers(), name).await
}

/// [`lookup_srv`] asking `servers`, in turn until one answers.
async fn lookup_srv_at(servers: &[SocketAddr], name: &str) -> Result<Vec<Srv>, DnsError> {
    if servers.is_empty() {
        return Err(DnsError::NoServer);
    }
    let mut last = String::new();
    for &server in servers {
        match query(server, name).await {
            Ok(mut records) => {
                records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
                return Ok(records);
            }
            Err(DnsError::Unreachable(e)) => last = format!("{server}: {e}"),
            Err(e) => return Err(e),
        }
    }
    Err(DnsError::Unreachable(last))
}

async fn query(server: SocketAddr, name: &str) -> Result<Vec<Srv>, DnsError> {
    let unreachable = |e: std::io::Error| DnsError::Unreachable(e.to_string());
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| DnsError::NoServer)?;
    let sock = UdpSocket::bind(bind).await.map_err(unreachable)?;
    sock.connect(server).await.map_err(unreachable)?;
    let id = (std::process::id() as u16)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u16)
            .unwrap_or_default());
    let q = encode_query(id, name)?;
    for _ in 0..3 {
        sock.send(&q).await.map_err(unreachable)?;
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => match parse_response(id, &buf[..n])? {
                // An answer to another (earlier) query: wait for ours.
                Answer::NotOurs => continue,
                // Too large for UDP: ask again over TCP for the whole answer.
                Answer::Truncated => return found(name, query_tcp(server, id, &q).await?),
                Answer::Records(records) => return found(name, records),
            },
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => continue,
        }
    }
    Err(DnsError::Unreachable(format!("{server}: no answer")))
}

fn found(name: &str, records: Vec<Srv>) -> Result<Vec<Srv>, DnsError> {
    if records.is_empty() {
        return Err(DnsError::NotFound(name.to_string()));
    }
    Ok(records)
}

/// Query `q` (of ID `id`) over TCP (RFC 1035 4.2.2): the message and the answer each behind
/// a two-byte big-endian length.
async fn query_tcp(server: SocketAddr, id: u16, q: &[u8]) -> Result<Vec<Srv>, DnsError> {
    let unreachable = |e: std::io::Error| DnsError::Unreachable(format!("{server} (TCP): {e}"));
    let exchange = async {
        let mut conn = TcpStream::connect(server).await?;
        let len = u16::try_from(q.len())
            .map_err(|_| std::io::Error::other("query too long"))?
            .to_be_bytes();
        let mut msg = Vec::with_capacity(2 + q.len());
        msg.extend_from_slice(&len);
        msg.extend_from_slice(q);
        conn.write_all(&msg).await?;
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await?;
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(QUERY_TIMEOUT, exchange)
        .await
        .map_err(|_| DnsError::Unreachable(format!("{server} (TCP): no answer")))?
        .map_err(unreachable)?;
    match parse_response(id, &answer)? {
        Answer::Records(records) => Ok(records),
        // One query per connection: any other answer is the server's fault.
        Answer::NotOurs => Err(DnsError::Malformed(format!(
            "{server} (TCP) answered another query"
        ))),
        // Even TCP could not carry it all: an incomplete set is not to be used.
        Answer::Truncated => Err(DnsError::Malformed(format!(
            "{server} (TCP) answered truncated"
        ))),
    }
}

fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, DnsError> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // standard query, recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::Malformed(format!("bad name {name:?}")));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// What a response says to a query.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// It answers another query (or is no response at all).
    NotOurs,
    /// The TC bit is set: the server cut the answer to fit; its records are not all there.
    Truncated,
    /// The SRV records (empty for NXDOMAIN or no SRV answer).
    Records(Vec<Srv>),
}

/// Header flags (the third byte): QR (a response) and TC (truncated).
const FLAG_QR: u8 = 0x80;
const FLAG_TC: u8 = 0x02;

/// Reads a response to query `id`.
fn parse_response(id: u16, m: &[u8]) -> Result<Answer, DnsError> {
    let bad = |why: &str| DnsError::Malformed(why.to_string());
    if m.len() < 12 {
        return Err(bad("short header"));
    }
    if u16::from_be_bytes([m[0], m[1]]) != id || m[2] & FLAG_QR == 0 {
        return Ok(Answer::NotOurs);
    }
    if m[2] & FLAG_TC != 0 {
        return Ok(Answer::Truncated);
    }
    match m[3] & 0x0f {
        0 => {}
        3 => return Ok(Answer::Records(Vec::new())), // NXDOMAIN
        rcode => {
            return Err(DnsError::Unreachable(format!(
                "server answered rcode {rcode}"
            )))
        }
    }
    let qd = u16::from_be_bytes([m[4], m[5]]);
    let an = u16::from_be_bytes([m[6], m[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(m, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = read_name(m, pos)?.1;
        let rr = m.get(pos..pos + 10).ok_or_else(|| bad("short record"))?;
        let rtype = u16::from_be_bytes([rr[0], rr[1]]);
        let len = u16::from_be_bytes([rr[8], rr[9]]) as usize;
        let data_at = pos + 10;
        let data = m
            .get(data_at..data_at + len)
            .ok_or_else(|| bad("short record data"))?;
        if rtype == TYPE_SRV {
            if data.len() < 7 {
                return Err(bad("short SRV record"));
            }
            let (target, _) = read_name(m, data_at + 6)?;
            out.push(Srv {
                priority: u16::from_be_bytes([data[0], data[1]]),
                weight: u16::from_be_bytes([data[2], data[3]]),
                port: u16::from_be_bytes([data[4], data[5]]),
                target,
            });
        }
        pos = data_at + len;
    }
    Ok(Answer::Records(out))
}

/// Reads a (possibly compressed) name at `pos`: the name without its trailing dot, and the
/// position after it.
fn read_name(m: &[u8], mut pos: usize) -> Result<(String, usize), DnsError> {
    let bad = |why: &str| DnsError::Malformed(why.to_string());
    let mut labels: Vec<String> = Vec::new();
    let mut end = None;
    // Compression pointers may chain; a loop would never end.
    for _ in 0..64 {
        let len = *m.get(pos).ok_or_else(|| bad("name runs off the message"))? as usize;
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        if len & 0xc0 == 0xc0 {
            let lo = *m.get(pos + 1).ok_or_else(|| bad("short name pointer"))? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | lo;
            continue;
        }
        let label = m
            .get(pos + 1..pos + 1 + len)
            .ok_or_else(|| bad("label runs off the message"))?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        pos += 1 + len;
    }
    Err(bad("name pointers loop"))
}

/// `_<service>[-<srv name>]._tcp.<domain>`.
fn service_name(service: &str, srv_name: &str, domain: &str) -> String {
    let suffix = if srv_name.is_empty() {
        String::new()
    } else {
        format!("-{srv_name}")
    };
    format!("_{service}{suffix}._tcp.{}", domain.trim_end_matches('.'))
}

/// URLs of a service's SRV records: `https://` from `_<service>-ssl`, `http://` from
/// `_<service>`. Fails only when neither has records.
pub async fn service_urls(
    service: &str,
    srv_name: &str,
    domain: &str,
) -> Result<Vec<String>, DnsError> {
    let mut urls = Vec::new();
    let mut errors = Vec::new();
    for (svc, scheme) in [
        (format!("{service}-ssl"), "https"),
        (service.to_string(), "http"),
    ] {
        let name = service_name(&svc, srv_name, domain);
        match lookup_srv(&name).await {
            Ok(records) => urls.extend(
                records
                    .into_iter()
                    .map(|r| format!("{scheme}://{}", join_host_port(&r.target, r.port))),
            ),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if urls.is_empty() {
        return Err(DnsError::NotFound(errors.join("; ")));
    }
    Ok(urls)
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as a DNS server writes it: question echoed, the SRV target compressed
    /// against the question name.
    fn response(id: u16, records: &[(u16, u16, u16)]) -> Vec<u8> {
        let mut m = encode_query(id, "_etcd-server._tcp.example.com").unwrap();
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = records.len() as u8;
        for (prio, weight, port) in records {
            m.extend_from_slice(&[0xc0, 12]); // the question name
            m.extend_from_slice(&TYPE_SRV.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            let mut data = Vec::new();
            data.extend_from_slice(&prio.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            data.extend_from_slice(&[2, b'm', b'1']);
            // "example.com" of the question: offset 12 + len("_etcd-server") + 1 + len("_tcp") + 1.
            data.extend_from_slice(&[0xc0, 12 + 13 + 5]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }

    #[test]
    fn srv_answers_are_read_with_compressed_names() {
        let m = response(7, &[(0, 10, 2380), (1, 0, 2381)]);
        let got = parse_response(7, &m).unwrap();
        assert_eq!(
            got,
            Answer::Records(vec![
                Srv {
                    priority: 0,
                    weight: 10,
                    port: 2380,
                    target: "m1.example.com".into()
                },
                Srv {
                    priority: 1,
                    weight: 0,
                    port: 2381,
                    target: "m1.example.com".into()
                },
            ])
        );
        // Another query's answer is not ours; a cut message is an error, not a panic.
        assert_eq!(parse_response(8, &m).unwrap(), Answer::NotOurs);
        for cut in 0..m.len() {
            let _ = parse_response(7, &m[..cut]);
        }
        // A pointer to itself does not loop forever.
        let mut looped = m.clone();
        let at = looped.len() - 2;
        looped[at] = 0xc0;
        looped[at + 1] = (at - 3) as u8;
        assert!(parse_response(7, &looped).is_err());
    }

    #[test]
    fn truncated_answers_are_detected() {
        // A server that cut its answer to fit UDP: TC set, and fewer records than it counts.
        let mut m = response(7, &[(0, 10, 2380)]);
        m[2] |= FLAG_TC;
        m[7] = 5;
        assert_eq!(parse_response(7, &m).unwrap(), Answer::Truncated);
        // Even with no record left at all.
        let mut empty = response(7, &[]);
        empty[2] |= FLAG_TC;
        assert_eq!(parse_response(7, &empty).unwrap(), Answer::Truncated);
        // Another query's truncated answer is still not ours.
        assert_eq!(parse_response(8, &m).unwrap(), Answer::NotOurs);
        // Without TC, the same message is read as it is (here: too short for its count).
        m[2] &= !FLAG_TC;
        assert!(parse_response(7, &m).is_err());
    }

    /// A DNS server on loopback, UDP and TCP on one port: over UDP it answers truncated (TC,
    /// no records), over TCP with every record. The client must end up with them all.
    #[tokio::test]
    async fn truncated_udp_answer_is_asked_again_over_tcp() {
        use tokio::net::{TcpListener, UdpSocket};

        const NAME: &str = "_etcd-server._tcp.example.com";
        // Enough records that they would not fit in 512 bytes of UDP; given in reverse
        // priority order, so the client's sorting shows too.
        let records: Vec<(u16, u16, u16)> = (0..40u16).rev().map(|i| (i, 0, 2000 + i)).collect();

        // Port 0 for TCP, then UDP on the same port (retried if that one is taken for UDP).
        let (tcp, udp) = 'bind: {
            for _ in 0..20 {
                let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = tcp.local_addr().unwrap();
                if let Ok(udp) = UdpSocket::bind(addr).await {
                    break 'bind (tcp, udp);
                }
            }
            panic!("no loopback port free for both TCP and UDP");
        };
        let server = tcp.local_addr().unwrap();

        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            let (n, from) = udp.recv_from(&mut buf).await.unwrap();
            let q = buf[..n].to_vec();
            // The question echoed, no answer, TC set.
            let mut a = q.clone();
            a[2] = FLAG_QR | FLAG_TC | (q[2] & 0x01);
            a[3] = 0x80;
            udp.send_to(&a, from).await.unwrap();
            q
        });
        let tcp_records = records.clone();
        let tcp_task = tokio::spawn(async move {
            let (mut conn, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 2];
            conn.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            conn.read_exact(&mut q).await.unwrap();
            let a = response(u16::from_be_bytes([q[0], q[1]]), &tcp_records);
            assert!(a.len() > 512, "the full answer is larger than UDP carries");
            conn.write_all(&(a.len() as u16).to_be_bytes())
                .await
                .unwrap();
            conn.write_all(&a).await.unwrap();
            q
        });

        let got = lookup_srv_at(&[server], NAME).await.unwrap();
        let mut want: Vec<Srv> = records
            .iter()
            .map(|&(priority, weight, port)| Srv {
                priority,
                weight,
                port,
                target: "m1.example.com".into(),
            })
            .collect();
        want.sort_by_key(|r| r.priority);
        assert_eq!(got, want);

        // The same message went over UDP, then over TCP.
        let udp_q = udp_task.await.unwrap();
        let tcp_q = tcp_task.await.unwrap();
        assert_eq!(udp_q, tcp_q);
        assert_eq!(
            udp_q,
            encode_query(u16::from_be_bytes([udp_q[0], udp_q[1]]), NAME).unwrap()
        );
    }

    #[test]
    fn service_names_follow_etcd() {
        assert_eq!(
            service_name("etcd-server", "", "example.com."),
            "_etcd-server._tcp.example.com"
        );
        assert_eq!(
            service_name("etcd-client-ssl", "prod", "example.com"),
            "_etcd-client-ssl-prod._tcp.example.com"
        );
        assert_eq!(join_host_port("::1", 2379), "[::1]:2379");
    }
}
