//! Member, proxy and cluster processes: free ports, start, stop, kill, pause/resume,
//! restart, logs, and readiness via the systemd notify socket.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::binaries::bin;
use crate::client::{http_get, http_get_at};
use crate::ctl::Ctl;

/// How long a member may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports handed out are drawn from below the kernel's ephemeral range (32768-60999 on Linux):
/// a port the OS picked with bind(0) comes from that range, and between our check and the
/// member's bind any outgoing connection on the machine may take it as its local port.
const PORTS: std::ops::Range<u16> = 15000..32000;

/// A free loopback port: a random one below the ephemeral range that nothing listens on now
/// (the listener is closed before the member binds it), never the same twice in one process.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for attempt in 0u64.. {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(attempt);
        h.write_u32(std::process::id());
        let span = (PORTS.end - PORTS.start) as u64;
        let port = PORTS.start + (h.finish() % span) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(attempt < 10_000, "no free loopback port in {PORTS:?}");
            continue;
        }
        given.push(port);
        return port;
    }
    unreachable!("the loop returns or panics")
}

/// The `--initial-cluster-token` of every member started here.
pub const CLUSTER_TOKEN: &str = "e2e";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our member.
    Oxetcd,
    /// Real etcd (Debian's etcd-server), the reference.
    Etcd,
}

/// One member process with its own data dir and ports.
pub struct Member {
    pub kind: Kind,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    extra_args: Vec<String>,
    log_path: PathBuf,
    /// Empty: no `--initial-cluster` flag (the member bootstraps from DNS).
    initial_cluster: String,
    env: Vec<(String, String)>,
    /// `https` for client URLs served with TLS (the TLS flags are in `extra_args`).
    scheme: &'static str,
    /// `https` for peer URLs served with TLS.
    peer_scheme: &'static str,
    /// The address the member serves on (loopback unless it runs in a network namespace).
    pub host: String,
    /// The network namespace the member runs in (see [`crate::netns`]), if any.
    netns: Option<String>,
}

impl Member {
    /// Starts a fresh single member and waits until it is ready.
    pub fn start(kind: Kind) -> Self {
        Self::start_with(kind, &[])
    }

    pub fn start_with(kind: Kind, extra_args: &[&str]) -> Self {
        Self::start_prepared(kind, extra_args, |_| {})
    }

    /// Like [`Member::start_with`], after `prepare` has run on the member not started yet
    /// (say, restoring a snapshot into its data dir).
    pub fn start_prepared(kind: Kind, extra_args: &[&str], prepare: impl FnOnce(&Member)) -> Self {
        let peer_port = free_port();
        let initial = format!("m1=http://127.0.0.1:{peer_port}");
        let mut m = Member::unstarted(kind, "m1".into(), peer_port, initial, extra_args);
        prepare(&m);
        m.spawn();
        m
    }

    /// The `--initial-cluster` the member starts with (its `--initial-cluster-token` is
    /// [`CLUSTER_TOKEN`]).
    pub fn initial_cluster(&self) -> &str {
        &self.initial_cluster
    }

    /// A member with its own temp data dir and a free client port, not started yet.
    fn unstarted(
        kind: Kind,
        name: String,
        peer_port: u16,
        initial_cluster: String,
        extra_args: &[&str],
    ) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        Member {
            kind,
            name,
            client_port: free_port(),
            peer_port,
            data_dir: tmp.path().join("data"),
            log_path: tmp.path().join("member.log"),
            _tmp: Some(tmp),
            child: None,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            initial_cluster,
            env: Vec::new(),
            scheme: "http",
            peer_scheme: "http",
            host: "127.0.0.1".into(),
            netns: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.client_port)
    }

    pub fn url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.client_port)
    }

    /// The member's peer URL.
    pub fn peer_url(&self) -> String {
        format!("{}://{}:{}", self.peer_scheme, self.host, self.peer_port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn spawn(&mut self) {
        let sock = self.start_process();
        self.wait_ready(sock);
    }

    /// Starts the process; returns the socket its READY=1 will arrive on.
    fn start_process(&mut self) -> (UnixDatagram, PathBuf) {
        let (sock, sock_path) = notify_socket(&self.log_path);
        let program = match self.kind {
            Kind::Oxetcd => bin("oxetcd"),
            Kind::Etcd => PathBuf::from("etcd"),
        };
        let peer = self.peer_url();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs the member: the child's pid is the member's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        if !self.initial_cluster.is_empty() {
            cmd.arg("--initial-cluster").arg(&self.initial_cluster);
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-client-urls")
            .arg(self.url())
            .arg("--advertise-client-urls")
            .arg(self.url())
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster-token")
            .arg(CLUSTER_TOKEN)
            .args(&self.extra_args)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("ETCDCTL_ENDPOINTS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        self.child = Some(child);
        (sock, sock_path)
    }

    fn wait_ready(&self, sock: (UnixDatagram, PathBuf)) {
        wait_ready(sock, &format!("{:?} member", self.kind), || self.log());
    }

    /// The member's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process was started and not killed or stopped.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the process has ended by itself (without waiting): its exit status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// Waits up to `timeout` for the process to end by itself; its exit status, or `None` if it
    /// is still running (it is then left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let pid = child.id();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(timeout).is_err() {
            // Still running: take it back once the waiter returns, which needs the process to
            // end; SIGTERM it, as a test that expected an exit has failed anyway.
            // SAFETY: plain syscall on a pid we own.
            unsafe {
                libc_kill(pid as i32, 15);
            }
            let (child, _) = waiter.join().expect("waiter");
            drop(child);
            return None;
        }
        let (_, status) = waiter.join().expect("waiter");
        status.ok()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("member is running");
        // SAFETY: plain syscall on a pid we own.
        unsafe {
            libc_kill(c.id() as i32, 15);
        }
        c.wait().expect("wait for member")
    }

    /// SIGSTOP: the process keeps its sockets open but answers nothing (a long GC pause, a
    /// stalled VM), which a peer cannot tell from a slow network.
    pub fn pause(&self) {
        let c = self.child.as_ref().expect("member is running");
        // SAFETY: plain syscall on a pid we own.
        unsafe {
            libc_kill(c.id() as i32, 19);
        }
    }

    /// SIGCONT after [`Member::pause`].
    pub fn resume(&self) {
        let c = self.child.as_ref().expect("member is running");
        // SAFETY: plain syscall on a pid we own.
        unsafe {
            libc_kill(c.id() as i32, 18);
        }
    }

    /// Starts the member again without waiting for it to become ready: for a start that is
    /// expected to fail (see [`Member::wait_exit`]).
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "stop or kill the member first");
        let _ = self.start_process();
    }

    /// Starts the member again on the same data dir and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the member first");
        self.spawn();
    }

    /// The store's revision now: the header revision of a linearizable read, through real
    /// etcdctl.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&["get", "any", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("get json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    /// The member's ID, from the header of its `endpoint status` (real etcdctl).
    pub fn id(&self) -> u64 {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.ok().trim()).expect("status json");
        v[0]["Status"]["header"]["member_id"]
            .as_u64()
            .expect("member_id")
    }

    /// Runs real `etcdctl` (API v3) against this member.
    pub fn etcdctl(&self, args: &[&str]) -> Ctl {
        Ctl::run(Path::new("etcdctl"), &self.endpoint(), args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> Ctl {
        Ctl::run(Path::new("etcdctl"), &self.endpoint(), args, Some(stdin))
    }

    /// Runs our `oxetcdctl` against this member.
    pub fn oxetcdctl(&self, args: &[&str]) -> Ctl {
        Ctl::run(&bin("oxetcdctl"), &self.endpoint(), args, None)
    }

    pub fn oxetcdctl_stdin(&self, args: &[&str], stdin: &str) -> Ctl {
        Ctl::run(&bin("oxetcdctl"), &self.endpoint(), args, Some(stdin))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// A socket for a child's `READY=1` (systemd's notify protocol), next to `log_path`.
fn notify_socket(log_path: &Path) -> (UnixDatagram, PathBuf) {
    let sock_path = log_path.with_file_name("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = UnixDatagram::bind(&sock_path).expect("notify socket");
    sock.set_read_timeout(Some(READY_TIMEOUT))
        .expect("socket timeout");
    (sock, sock_path)
}

/// Waits for `READY=1` on the socket; panics with the process's log if it does not come.
fn wait_ready((sock, sock_path): (UnixDatagram, PathBuf), what: &str, log: impl Fn() -> String) {
    let mut buf = [0u8; 256];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) if buf[..n].windows(7).any(|w| w == b"READY=1") => break,
            Ok(_) => continue,
            Err(e) => panic!(
                "{what} did not become ready within {READY_TIMEOUT:?} ({e}); log:\n{}",
                log()
            ),
        }
    }
    let _ = std::fs::remove_file(&sock_path);
}

/// One `oxetcd-proxy` process on loopback, in front of members.
pub struct Proxy {
    pub port: u16,
    pub metrics_port: u16,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Proxy {
    /// Starts a proxy for `endpoints` (comma-separated) and waits until it is ready (it knows
    /// the leader and accepts connections).
    pub fn start(endpoints: &str, extra_args: &[&str]) -> Self {
        Self::start_with_env(endpoints, extra_args, &[])
    }

    /// [`Proxy::start`] with extra environment variables.
    pub fn start_with_env(endpoints: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let metrics_port = free_port();
        let mut args = vec![
            format!("--endpoints={endpoints}"),
            format!("--listen-addr=127.0.0.1:{port}"),
            format!("--metrics-addr=http://127.0.0.1:{metrics_port}"),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut p = Proxy {
            port,
            metrics_port,
            child: None,
            args,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log_path: tmp.path().join("proxy.log"),
            _tmp: tmp,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let sock = notify_socket(&self.log_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(bin("oxetcd-proxy"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NOTIFY_SOCKET", &sock.1)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start oxetcd-proxy");
        self.child = Some(child);
        wait_ready(sock, "oxetcd-proxy", || self.log());
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The proxy's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
    }

    /// Sum of the samples of `name` whose labels contain every `label="value"` in `labels`.
    pub fn metric_sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.metrics()
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    }

    pub fn etcdctl(&self, args: &[&str]) -> Ctl {
        Ctl::run(Path::new("etcdctl"), &self.endpoint(), args, None)
    }

    pub fn etcdctl_stdin(&self, args: &[&str], stdin: &str) -> Ctl {
        Ctl::run(Path::new("etcdctl"), &self.endpoint(), args, Some(stdin))
    }

    pub fn oxetcdctl(&self, args: &[&str]) -> Ctl {
        Ctl::run(&bin("oxetcdctl"), &self.endpoint(), args, None)
    }

    /// SIGKILL; [`Proxy::restart`] brings it back on the same port.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the proxy first");
        self.spawn();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Several members of one cluster on loopback.
pub struct Cluster {
    pub members: Vec<Member>,
}

impl Cluster {
    /// Starts `n` members with one `--initial-cluster` and waits until each is ready (which
    /// needs a quorum, so all processes start first).
    pub fn start(kind: Kind, n: usize) -> Self {
        Self::start_with(kind, n, &[])
    }

    /// Like [`Cluster::start`], with extra flags for every member.
    pub fn start_with(kind: Kind, n: usize, extra_args: &[&str]) -> Self {
        Self::start_scheme(kind, n, extra_args, "http", "http")
    }

    /// Members serving their client URLs over TLS (`https://`); `tls_args` name the
    /// certificate files (`--cert-file`, `--key-file`, ...). Peer URLs stay plaintext. Readiness
    /// is by systemd notification, so nothing here needs the certificates.
    pub fn start_tls(kind: Kind, n: usize, tls_args: &[&str]) -> Self {
        Self::start_scheme(kind, n, tls_args, "https", "http")
    }

    /// `n` members with `https://` peer URLs (the peer TLS flags are in `tls_args`).
    pub fn start_peer_tls(kind: Kind, n: usize, tls_args: &[&str]) -> Self {
        Self::start_scheme(kind, n, tls_args, "http", "https")
    }

    /// `n` members with `scheme` client URLs and `peer_scheme` peer URLs (TLS flags in
    /// `extra_args`).
    pub fn start_scheme(
        kind: Kind,
        n: usize,
        extra_args: &[&str],
        scheme: &'static str,
        peer_scheme: &'static str,
    ) -> Self {
        Self::start_full(kind, n, extra_args, scheme, peer_scheme, |_| {})
    }

    /// Like [`Cluster::start_with`], after `prepare` has run on each member not started yet
    /// (say, restoring a snapshot into its data dir).
    pub fn start_prepared(
        kind: Kind,
        n: usize,
        extra_args: &[&str],
        prepare: impl Fn(&Member),
    ) -> Self {
        Self::start_full(kind, n, extra_args, "http", "http", prepare)
    }

    /// `n` members, member `i` in `net`'s namespace `i` on its address there.
    pub fn start_in(kind: Kind, net: &crate::netns::Network, extra_args: &[&str]) -> Self {
        let places = (0..net.members())
            .map(|i| (net.host(i), Some(net.netns(i))))
            .collect();
        Self::start_placed(kind, places, extra_args, "http", "http", |_| {})
    }

    fn start_full(
        kind: Kind,
        n: usize,
        extra_args: &[&str],
        scheme: &'static str,
        peer_scheme: &'static str,
        prepare: impl Fn(&Member),
    ) -> Self {
        let places = (0..n).map(|_| ("127.0.0.1".to_string(), None)).collect();
        Self::start_placed(kind, places, extra_args, scheme, peer_scheme, prepare)
    }

    /// One member per place (its address, and the network namespace it runs in if any).
    fn start_placed(
        kind: Kind,
        places: Vec<(String, Option<String>)>,
        extra_args: &[&str],
        scheme: &'static str,
        peer_scheme: &'static str,
        prepare: impl Fn(&Member),
    ) -> Self {
        let peers: Vec<u16> = places.iter().map(|_| free_port()).collect();
        let initial: Vec<String> = peers
            .iter()
            .zip(&places)
            .enumerate()
            .map(|(i, (p, (host, _)))| format!("m{}={peer_scheme}://{host}:{p}", i + 1))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        let mut sockets = Vec::new();
        for (i, (peer_port, (host, netns))) in peers.into_iter().zip(places).enumerate() {
            let mut m = Member::unstarted(
                kind,
                format!("m{}", i + 1),
                peer_port,
                initial.clone(),
                extra_args,
            );
            m.scheme = scheme;
            m.peer_scheme = peer_scheme;
            m.host = host;
            m.netns = netns;
            prepare(&m);
            sockets.push(m.start_process());
            members.push(m);
        }
        for (m, s) in members.iter().zip(sockets) {
            m.wait_ready(s);
        }
        Cluster { members }
    }

    /// Starts `n` members that find each other from DNS: `--discovery-srv domain`, SRV
    /// queries to `dns` (`OXETCD_DNS_SERVER`). `peer_ports` and `client_ports` were chosen
    /// beforehand, to be published in the DNS server's records.
    pub fn start_srv(peer_ports: &[u16], client_ports: &[u16], domain: &str, dns: &str) -> Self {
        Self::start_srv_with(peer_ports, client_ports, domain, dns, "http", &[])
    }

    /// [`Cluster::start_srv`] with `peer_scheme` peer URLs (`https`: the records are
    /// `_etcd-server-ssl._tcp`) and more flags.
    pub fn start_srv_with(
        peer_ports: &[u16],
        client_ports: &[u16],
        domain: &str,
        dns: &str,
        peer_scheme: &'static str,
        extra_args: &[&str],
    ) -> Self {
        let mut members = Vec::new();
        let mut sockets = Vec::new();
        let mut args = vec!["--discovery-srv", domain];
        args.extend_from_slice(extra_args);
        for (i, (peer, client)) in peer_ports.iter().zip(client_ports).enumerate() {
            let mut m = Member::unstarted(
                Kind::Oxetcd,
                format!("m{}", i + 1),
                *peer,
                String::new(),
                &args,
            );
            m.peer_scheme = peer_scheme;
            m.client_port = *client;
            m.env
                .push(("OXETCD_DNS_SERVER".to_string(), dns.to_string()));
            sockets.push(m.start_process());
            members.push(m);
        }
        for (m, s) in members.iter().zip(sockets) {
            m.wait_ready(s);
        }
        Cluster { members }
    }

    /// Adds a member: `etcdctl member add` through the first live member, then starts it with
    /// `--initial-cluster-state existing` and waits until it is ready. Returns its index.
    pub fn add_member(&mut self, learner: bool) -> usize {
        let n = self.members.len() + 1;
        let name = format!("m{n}");
        let peer_port = free_port();
        let peer = format!("http://127.0.0.1:{peer_port}");
        let via = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a live member");
        let initial = member_add(via, &name, &peer, learner);
        let mut m = Member::unstarted(
            via.kind,
            name,
            peer_port,
            initial,
            &["--initial-cluster-state", "existing"],
        );
        m.spawn();
        self.members.push(m);
        self.members.len() - 1
    }

    /// Starts every stopped member again on its data dir, all at once (each needs a quorum to
    /// be ready), and waits until all are ready.
    pub fn restart_all(&mut self) {
        let mut started = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if m.child.is_none() {
                started.push((i, m.start_process()));
            }
        }
        for (i, sock) in started {
            self.members[i].wait_ready(sock);
        }
    }

    /// etcd's procedure for a member that lost its data dir (stopped, dir gone): `member
    /// remove` it, `member add` it back under its name and peer URL, start it empty with
    /// `--initial-cluster-state existing`. Waits until it is ready.
    pub fn replace_member(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "stop the member first");
        let name = self.members[i].name.clone();
        let peer = self.members[i].peer_url();
        let via = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a live member");
        let list = via.etcdctl(&["member", "list"]);
        let id = list
            .ok()
            .lines()
            .find(|l| l.split(", ").nth(2) == Some(name.as_str()))
            .and_then(|l| l.split(", ").next())
            .unwrap_or_else(|| panic!("{name} not in the member list: {}", list.stdout))
            .to_string();
        via.etcdctl(&["member", "remove", &id]).ok();
        let initial = member_add(via, &name, &peer, false);
        let m = &mut self.members[i];
        m.initial_cluster = initial;
        m.extra_args.extend([
            "--initial-cluster-state".to_string(),
            "existing".to_string(),
        ]);
        m.spawn();
    }

    /// All client URLs (`http://` or `https://`), comma-separated.
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(Member::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// All client endpoints, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(Member::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Index of the member that says it is leader (from its /metrics).
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && http_get_at(&m.host, m.client_port, "/metrics")
                    .lines()
                    .any(|l| l == "etcd_server_is_leader 1")
        })
    }
}

/// `etcdctl member add` through `via`; returns the `ETCD_INITIAL_CLUSTER` it prints, for the
/// new member's `--initial-cluster`.
fn member_add(via: &Member, name: &str, peer: &str, learner: bool) -> String {
    let peer_urls = format!("--peer-urls={peer}");
    let mut args = vec!["member", "add", name, &peer_urls];
    if learner {
        args.push("--learner");
    }
    let out = via.etcdctl(&args);
    out.ok()
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .expect("ETCD_INITIAL_CLUSTER in member add output")
        .trim_matches('"')
        .to_string()
}
