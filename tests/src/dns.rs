//! A DNS server on loopback for `--discovery-srv` tests: answers SRV questions from a table,
//! NXDOMAIN for anything else. Names are written uncompressed (the member's client reads both).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct DnsServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// SRV records by name (`_etcd-server._tcp.example.test`): (port, target) each.
pub type SrvTable = HashMap<String, Vec<(u16, String)>>;

impl DnsServer {
    pub fn start(records: SrvTable) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(answer) = answer(&buf[..n], &records) {
                    let _ = sock.send_to(&answer, from);
                }
            }
        });
        DnsServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn encode_name(out: &mut Vec<u8>, name: &str) {
    for label in name.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

fn answer(q: &[u8], records: &SrvTable) -> Option<Vec<u8>> {
    // Header, then one question: labels, type, class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(pos..pos + len)?).into_owned());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*q.get(pos)?, *q.get(pos + 1)?]);
    let question = q.get(12..pos + 4)?;
    let name = labels.join(".");
    let found = records.get(&name).filter(|_| qtype == 33);
    let mut m = Vec::new();
    m.extend_from_slice(&q[..2]);
    m.push(0x81); // response, recursion desired
    m.push(if found.is_some() { 0x80 } else { 0x83 }); // NXDOMAIN when unknown
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&(found.map_or(0, |r| r.len()) as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(question);
    for (port, target) in found.into_iter().flatten() {
        encode_name(&mut m, &name);
        m.extend_from_slice(&[0, 33, 0, 1, 0, 0, 0, 60]);
        let mut data = vec![0, 0, 0, 0];
        data.extend_from_slice(&port.to_be_bytes());
        encode_name(&mut data, target);
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(&data);
    }
    Some(m)
}
