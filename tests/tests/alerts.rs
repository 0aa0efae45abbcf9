//! The shipped alert rules against a real Prometheus server scraping a real 3-member oxetcd
//! cluster: quiet while the cluster is whole, `etcdMembersDown` firing once a member is
//! killed, `etcdInsufficientMembers` once quorum is gone. The rules are `deploy/`'s with
//! every `for:` set to 0 (the durations are promtool's unit tests' business) and Prometheus
//! scraping and evaluating every second.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxetcd_tests::{free_port, http_request, Cluster, Kind};

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(targets: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let rules = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/prometheus/oxetcd-alerts.yml"
        ))
        .expect("the shipped rules");
        let rules: String = rules
            .lines()
            .map(|l| match l.trim_start().starts_with("for:") {
                true => format!("{}for: 0s\n", &l[..l.len() - l.trim_start().len()]),
                false => format!("{l}\n"),
            })
            .collect();
        std::fs::write(dir.path().join("rules.yml"), rules).expect("rules");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: oxetcd\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; run .ci/setup)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> Option<serde_json::Value> {
        let (status, body) = http_request(self.port, "GET", path, "");
        (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Waits (up to a minute) until `done` holds for an answer of `path`.
    fn until(&self, path: &str, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.get(path).is_some_and(|v| done(&v)) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The names of the alerts firing now.
    fn firing(&self) -> Vec<String> {
        let Some(v) = self.get("/api/v1/alerts") else {
            return Vec::new();
        };
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
            .collect()
    }

    /// When the rule groups were last evaluated (the newest `lastEvaluation`): it changes
    /// with each evaluation.
    fn last_evaluation(&self) -> String {
        self.get("/api/v1/rules")
            .and_then(|v| {
                v["data"]["groups"]
                    .as_array()?
                    .iter()
                    .filter_map(|g| g["lastEvaluation"].as_str().map(str::to_string))
                    .max()
            })
            .unwrap_or_default()
    }

    /// Waits for two more evaluations of the rules, so that what was scraped by now is judged.
    fn two_more_evaluations(&self) {
        for _ in 0..2 {
            let before = self.last_evaluation();
            self.until("/api/v1/rules", "a rule evaluation", |_| {
                self.last_evaluation() != before
            });
        }
    }
}

#[test]
fn shipped_alerts_fire_when_members_die() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    let targets: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.client_port))
        .collect();
    let p = Prometheus::start(&targets);
    p.until("/api/v1/targets", "all three members scraped and up", |v| {
        let up = v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["health"] == "up")
            .count();
        up == 3
    });
    p.two_more_evaluations();
    let quiet = p.firing();
    assert!(
        !quiet.iter().any(|a| a.starts_with("etcd")),
        "alerts firing on a whole cluster: {quiet:?}"
    );

    let killed = c.leader().unwrap_or(0);
    c.members[killed].kill9();
    let start = Instant::now();
    p.until("/api/v1/alerts", "etcdMembersDown", |_| {
        p.firing().iter().any(|a| a == "etcdMembersDown")
    });
    println!("etcdMembersDown fired {:?} after the kill", start.elapsed());
    assert!(
        !p.firing().iter().any(|a| a == "etcdInsufficientMembers"),
        "two of three members are a quorum"
    );

    let second = (killed + 1) % 3;
    c.members[second].kill9();
    p.until("/api/v1/alerts", "etcdInsufficientMembers", |_| {
        p.firing().iter().any(|a| a == "etcdInsufficientMembers")
    });
}
