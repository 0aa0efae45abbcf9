//! Network namespaces for fault tests: each member in a namespace of its own, joined to a
//! bridge in the test's namespace by a veth pair, so that one member can be cut off from
//! everyone (a partition: its bridge port goes down; TCP stalls as it would on a real network)
//! and joined again. Needs root (CAP_NET_ADMIN); everything is removed on drop.

use std::process::Command;

/// A bridge and `n` namespaces on a /24 of their own.
pub struct Network {
    id: String,
    subnet: (u8, u8),
    n: usize,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e} (needs iproute2)"));
    assert!(
        out.status.success(),
        "ip {args:?}: {} (network namespaces need root)",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Network {
    /// Namespaces for `n` members; names and the subnet come from the test process's pid, so
    /// that tests in other processes do not collide.
    pub fn new(n: usize) -> Self {
        let pid = std::process::id();
        let net = Network {
            id: format!("{:x}", pid & 0xffff),
            subnet: (((pid >> 8) & 0x7f) as u8 + 100, (pid & 0xff) as u8),
            n,
        };
        let bridge = net.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..n {
            let (ns, outside, inside) = (net.netns(i), net.outside(i), net.inside(i));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &bridge, "up"]);
            let addr = format!("{}/24", net.host(i));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inside,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        net
    }

    /// How many members it has room for.
    pub fn members(&self) -> usize {
        self.n
    }

    fn bridge(&self) -> String {
        format!("oxb{}", self.id)
    }

    fn outside(&self, i: usize) -> String {
        format!("oxh{}{i}", self.id)
    }

    fn inside(&self, i: usize) -> String {
        format!("oxp{}{i}", self.id)
    }

    fn gateway(&self) -> String {
        format!("10.{}.{}.254", self.subnet.0, self.subnet.1)
    }

    /// Member `i`'s address.
    pub fn host(&self, i: usize) -> String {
        format!("10.{}.{}.{}", self.subnet.0, self.subnet.1, i + 1)
    }

    /// Member `i`'s namespace.
    pub fn netns(&self, i: usize) -> String {
        format!("oxns{}{i}", self.id)
    }

    /// Cuts member `i` off from the others and from clients.
    pub fn cut(&self, i: usize) {
        ip(&["link", "set", &self.outside(i), "down"]);
    }

    /// Joins member `i` to the network again.
    pub fn join(&self, i: usize) {
        ip(&["link", "set", &self.outside(i), "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for i in 0..self.n {
            // Deleting the namespace deletes the veth inside it, and with it its pair.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns(i)])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .status();
    }
}
