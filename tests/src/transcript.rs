//! Scripted command transcripts, run with either CLI, and their normalisation so that etcd
//! and oxetcd outputs compare byte for byte.

use crate::process::Member;

/// One CLI invocation of a script: arguments and optional stdin.
pub struct Step {
    pub args: Vec<String>,
    pub stdin: Option<String>,
}

fn step(line: &str) -> Step {
    Step {
        args: split_args(line),
        stdin: None,
    }
}

fn step_in(line: &str, stdin: &str) -> Step {
    Step {
        args: split_args(line),
        stdin: Some(stdin.to_string()),
    }
}

/// Splits a command line on spaces, honouring double quotes ("" is an empty argument).
fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Users, roles and permissions with etcdctl, then requests as each user: the auth part of
/// `shared/etcd-reference/transcript-cluster.sh`, plus every permission form (key, range,
/// prefix, from-key), the refusals etcd gives, and `-w json` of the auth commands.
pub fn auth_script() -> Vec<Step> {
    let alice = "--user=alice:alicepw";
    let root = "--user=root:rootpw";
    let mut s: Vec<Step> = [
        "user add root:rootpw",
        "role add root",
        "user grant-role root root",
        "role add reader",
        "role grant-permission reader read /app/ --prefix=true",
        "role grant-permission reader readwrite /rw/key",
        "role grant-permission reader write /w/a /w/c",
        "role grant-permission reader read /from --from-key",
        "role grant-permission reader readwrite /rw/key",
        "role get reader",
        "role get reader -w json",
        "user add alice:alicepw",
        "user grant-role alice reader",
        "user grant-role alice reader",
        "user get alice",
        "user get alice -w json",
        "user list",
        "user list -w json",
        "role list",
        "auth enable",
        "auth enable -w json",
        "get /app/x",
    ]
    .into_iter()
    .map(step)
    .collect();
    for line in [
        "get /app/x -w json",
        "put /app/x 1",
        "get /app/ --from-key",
        "put /rw/key ok",
        "get /rw/key",
        "del /rw/key --prev-kv",
        "put /w/b x",
        "del /w/a /w/c",
        "del /w/a /w/d",
        "user get alice",
        "user get root",
        "role get reader",
        "role get root",
        "user list",
        "role list",
        "auth disable",
    ] {
        s.push(step(&format!("{alice} {line}")));
    }
    s.push(step_in(
        &format!("{alice} txn"),
        "\nput /w/b y\nput /app/x n\n\n",
    ));
    s.push(step("--user=alice:wrong get /app/x"));
    s.push(step("--user=nobody:x get /app/x"));
    for line in [
        "put /app/x 1",
        "get /app/ --prefix",
        "user get root",
        "role get root",
        "role revoke-permission reader /nope",
        "role revoke-permission reader /w/a /w/c",
        "role get reader",
        "user revoke-role alice nope",
        "user revoke-role root root",
        "user delete root",
        "role delete root",
        "user add alice:x",
        "role add reader",
        "user grant-role alice nope",
        "user get nobody",
        "role get nobody",
        "user passwd alice --interactive=false",
    ] {
        s.push(step(&format!("{root} {line}")));
    }
    s.push(step_in(
        &format!("{root} user passwd alice --interactive=false"),
        "newpw\n",
    ));
    s.push(step(&format!("{alice} get /app/x")));
    s.push(step("--user=alice:newpw get /app/x"));
    for line in [
        "user revoke-role alice reader",
        "role delete reader",
        "auth disable",
    ] {
        s.push(step(&format!("{root} {line}")));
    }
    for line in [
        "get /app/x",
        "user delete alice",
        "user delete root",
        "role delete root",
        "role add root2",
        "auth enable",
        "role delete root2",
        "--user=root:rootpw get /app/x",
    ] {
        s.push(step(line));
    }
    s
}

/// The KV script of `shared/etcd-reference/transcript-kv.sh` (the etcdctl part), plus the
/// request checks etcd makes (empty key, request too large, txn limits). Every command runs
/// against a fresh member, so revisions are deterministic.
pub fn kv_script() -> Vec<Step> {
    let mut s = vec![
        step("put foo bar"),
        step("put foo bar2 --prev-kv"),
        step("put foo1 v1"),
        step("put foo2 v2"),
        step("put zoo z"),
        step("get foo"),
        step("get foo --prefix"),
        step("get foo --rev=2"),
        step("get foo -w json"),
        step("get foo -w fields"),
        step("get foo --prefix --keys-only"),
        step("get foo --prefix --limit=1 -w json"),
        step("get foo --from-key"),
        step("get foo zoo"),
        step("get \"\" --from-key --keys-only --order=DESCEND --sort-by=MODIFY"),
        step("get foo --prefix --sort-by=VALUE --order=DESCEND -w json"),
        step("get foo --prefix --sort-by=VERSION --limit=2"),
        step("get foo --prefix --sort-by=CREATE --order=DESCEND --limit=2 -w json"),
        step("get nonexist -w json"),
        step("get foo --print-value-only"),
        step("get foo --consistency=s -w json"),
        step("get --hex foo"),
        step("put foo -w json bar3"),
        step("put foo --prev-kv -w json bar4"),
        step("put foo --ignore-value -w json"),
        step("put foo --ignore-value --prev-kv -w fields"),
        step("put nokey --ignore-value"),
        step("put nokey v --ignore-lease"),
        step("put leased v --lease=1234"),
        step("put \"\" v"),
        step("get \"\""),
        step("del foo2"),
        step("del foo --prefix --prev-kv"),
        step("del nonexist"),
        step("del zoo -w json"),
        step("get foo --rev=1"),
        step("get foo --rev=1000"),
        step("put user1 bad"),
        step_in("txn -i", "value(\"user1\") = \"bad\"\n\nget user1\nput user1 good\n\nput user1 failed\n\n"),
        step_in("txn -i", "value(\"user1\") = \"bad\"\n\nput user1 good\n\nget user1\n\n"),
        step_in("txn -w json", "mod(\"user1\") > \"0\"\nversion(\"user1\") = \"2\"\n\nput user1 v3 --prev-kv\nget user1\ndel nokey\n\n\n"),
        step_in("txn -w json", "version(\"user1\") = \"99\"\n\n\nget user1 --prefix\n\n"),
        step_in("txn", "create(\"nokey\") = \"0\"\n\nput nokey created\n\n\n"),
        step_in("txn", "create(\"nokey\") = \"0\"\n\nput nokey created\n\nget nokey\n\n"),
        step_in("txn -w fields", "value(\"nokey\") != \"x\"\n\nput a 1\ndel nokey --prev-kv\nget a\n\n\n"),
        step_in("txn", "\nput dup 1\nput dup 2\n\n\n"),
        step_in("txn", "\ndel d --prefix\nput d1 1\n\n\n"),
        step("put hist a"),
        step("put hist b"),
        step("put hist c"),
        step("get hist -w json"),
        step("compaction 5"),
        step("get foo --rev=3"),
        step("get foo --rev=5 -w json"),
        step("compaction 5"),
        step("compaction 1000"),
        step("compaction --physical 6"),
        step("get \"\" --from-key -w json"),
        step("del \"\" --from-key --prev-kv -w json"),
        step("get \"\" --prefix -w json"),
    ];
    // A txn of 129 puts: one more than etcd's default --max-txn-ops.
    let many: String = (0..129).map(|i| format!("put k{i} v\n")).collect();
    s.push(step_in("txn", &format!("\n{many}\n\n")));
    s
}

/// Runs a script against a member with the given CLI; returns one normalized transcript
/// (command, stdout, the `Error:` line, and the exit code when non-zero).
pub fn run_script(member: &Member, script: &[Step], ours: bool) -> String {
    let mut out = String::new();
    for st in script {
        let args: Vec<&str> = st.args.iter().map(String::as_str).collect();
        let r = match (ours, &st.stdin) {
            (false, None) => member.etcdctl(&args),
            (false, Some(i)) => member.etcdctl_stdin(&args, i),
            (true, None) => member.oxetcdctl(&args),
            (true, Some(i)) => member.oxetcdctl_stdin(&args, i),
        };
        out.push_str(&format!("$ {}\n", st.args.join(" ")));
        out.push_str(&normalize(&r.stdout));
        if let Some(e) = r.error_line() {
            out.push_str(e);
            out.push('\n');
        }
        if r.code != 0 {
            out.push_str(&format!("[exit {}]\n", r.code));
        }
    }
    out
}

/// The users most auth tests start from, as etcdctl commands: root (with the root role) and
/// alice (role `app`: readwrite on the prefix `/app/`), then auth enabled.
pub const AUTH_SETUP: [&str; 8] = [
    "user add root:rootpw",
    "role add root",
    "user grant-role root root",
    "user add alice:alicepw",
    "role add app",
    "role grant-permission app readwrite /app/ --prefix=true",
    "user grant-role alice app",
    "auth enable",
];

/// Runs [`AUTH_SETUP`] with etcdctl against `m`, `flags` (TLS flags, say) before each command.
pub fn set_up_auth(m: &Member, flags: &[&str]) {
    for step in AUTH_SETUP {
        let mut args = flags.to_vec();
        args.extend(step.split(' '));
        m.etcdctl(&args).ok();
    }
}

/// A history with what the key space has to carry: overwrites, deletes, a compaction (at 4:
/// revisions 2 and 3 are gone), more writes after it and a txn, through real etcdctl. The
/// same calls give the same revisions on etcd and oxetcd.
pub fn write_history(m: &Member) {
    for args in [
        &["put", "a", "1"][..],
        &["put", "b", "2"],
        &["put", "a", "3"],
        &["del", "b"],
        &["put", "c", "4"],
        &["put", "b", "5"],
        &["compaction", "4"],
        &["put", "d", "6"],
        &["del", "a"],
        &["put", "e", "7"],
    ] {
        m.etcdctl(args).ok();
    }
    m.etcdctl_stdin(&["txn"], "\nput f 8\nput g 9\n\n\n").ok();
}

/// `run` against a fresh real etcd member, then against a fresh oxetcd member (one at a time):
/// (etcd's answer, oxetcd's).
pub fn against_etcd<T>(run: impl Fn(&Member) -> T) -> (T, T) {
    against_etcd_with(&[], run)
}

/// [`against_etcd`] with more flags for both members.
pub fn against_etcd_with<T>(extra_args: &[&str], run: impl Fn(&Member) -> T) -> (T, T) {
    let etcd = Member::start_with(crate::process::Kind::Etcd, extra_args);
    let reference = run(&etcd);
    drop(etcd);
    let ox = Member::start_with(crate::process::Kind::Oxetcd, extra_args);
    (reference, run(&ox))
}

/// Where two transcripts (etcd's first) part, with the lines of etcd's before it, for a
/// failure message.
pub fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            let context: Vec<&str> = a.lines().take(i + 1).skip(i.saturating_sub(6)).collect();
            return format!(
                "line {}:\n  etcd:   {x}\n  oxetcd: {y}\ncontext (etcd):\n{}",
                i + 1,
                context.join("\n")
            );
        }
    }
    format!(
        "lengths differ: {} vs {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

/// Replaces what legitimately differs between two clusters (IDs, raft terms, timings) so that
/// outputs of etcd and oxetcd can be compared byte for byte.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        let mut l = line.to_string();
        for key in ["cluster_id", "member_id", "raft_term"] {
            l = replace_json_number(&l, key);
        }
        for key in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
            if let Some(rest) = l.strip_prefix(key) {
                if rest.chars().all(|c| c.is_ascii_digit()) {
                    l = format!("{key}N");
                }
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn replace_json_number(line: &str, key: &str) -> String {
    let pat = format!("\"{key}\":");
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(&pat) {
        out.push_str(&rest[..i + pat.len()]);
        rest = &rest[i + pat.len()..];
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '"'))
            .unwrap_or(rest.len());
        out.push('N');
        rest = &rest[n..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_ids() {
        assert_eq!(
            normalize(r#"{"header":{"cluster_id":1,"member_id":22,"revision":6,"raft_term":2}}"#),
            "{\"header\":{\"cluster_id\":N,\"member_id\":N,\"revision\":6,\"raft_term\":N}}\n"
        );
        assert_eq!(
            normalize("\"RaftTerm\" : 3\n\"Revision\" : 3"),
            "\"RaftTerm\" : N\n\"Revision\" : 3\n"
        );
    }
}
