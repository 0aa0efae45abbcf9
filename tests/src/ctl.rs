//! Running `oxetcdctl` / real `etcdctl`: one-shot commands ([`Ctl`]) and long-running ones
//! such as watch ([`Running`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::binaries::bin;

/// Runs real `etcdctl` (API v3) against any endpoints, e.g. `http://` URLs of several members.
pub fn etcdctl_at(endpoints: &str, args: &[&str]) -> Ctl {
    Ctl::run(Path::new("etcdctl"), endpoints, args, None)
}

/// A long-running CLI process (watch, lock, elect) whose stdout is read line by line.
pub struct Running {
    pub child: Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Running {
    /// Starts `etcdctl` (ours = false) or `oxetcdctl` (ours = true) against `endpoint`.
    pub fn start(ours: bool, endpoint: &str, args: &[&str]) -> Self {
        use std::io::BufRead;
        let program = if ours {
            bin("oxetcdctl")
        } else {
            PathBuf::from("etcdctl")
        };
        let mut child = Command::new(&program)
            .env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", endpoint)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let out = child.stdout.take().expect("stdout");
        Running {
            child,
            lines: std::io::BufReader::new(out).lines(),
        }
    }

    /// Reads stdout lines up to and including the first one equal to `last`.
    pub fn read_until(&mut self, last: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.expect("stdout line");
            let done = line == last;
            out.push(line);
            if done {
                return out;
            }
        }
        panic!("stream ended before {last:?}; got {out:?}");
    }

    /// The next stdout line.
    pub fn next_line(&mut self) -> String {
        self.lines.next().expect("a line").expect("stdout line")
    }

    /// Waits for the process to end by itself; returns its exit code and stderr.
    pub fn finish(mut self) -> (i32, String) {
        use std::io::Read;
        let status = self.child.wait().expect("wait");
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of one CLI run.
#[derive(Debug)]
pub struct Ctl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    pub(crate) fn run(program: &Path, endpoint: &str, args: &[&str], stdin: Option<&str>) -> Self {
        use std::io::Write;
        let mut cmd = Command::new(program);
        cmd.env("ETCDCTL_API", "3")
            .env("ETCDCTL_ENDPOINTS", endpoint)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("ctl output");
        Ctl {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// stdout, asserting success.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        &self.stdout
    }

    /// The lease ID of a successful `lease grant` (`lease <id> granted with TTL(...)`).
    pub fn granted_lease_id(&self) -> String {
        self.ok()
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no lease ID in {:?}", self.stdout))
            .to_string()
    }

    /// The `Error: ...` line etcdctl prints on failure (without clientv3's retry log lines).
    pub fn error_line(&self) -> Option<&str> {
        self.stderr.lines().find(|l| l.starts_with("Error:"))
    }
}
