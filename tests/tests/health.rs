//! etcd 3.6's `/livez` and `/readyz` (and `/health?serializable=true`) for a healthy member, a
//! learner, and a member without a leader.

use oxetcd_tests::{http_request, Cluster, Kind, Member};

fn port_of(m: &Member) -> u16 {
    m.client_port
}

fn get(m: &Member, path: &str) -> (u16, String) {
    http_request(port_of(m), "GET", path, "")
}

#[test]
fn a_healthy_member_is_live_and_ready() {
    let m = Member::start(Kind::Oxetcd);
    assert_eq!(get(&m, "/livez"), (200, "ok\n".into()));
    assert_eq!(get(&m, "/readyz"), (200, "ok\n".into()));
    assert_eq!(
        get(&m, "/readyz?verbose"),
        (
            200,
            "[+]data_corruption ok\n[+]linearizable_read ok\n[+]non_learner ok\n\
             [+]serializable_read ok\nok\n"
                .into()
        )
    );
    assert_eq!(
        get(&m, "/livez?verbose"),
        (200, "[+]serializable_read ok\nok\n".into())
    );
    assert_eq!(
        get(&m, "/readyz?verbose&exclude=non_learner,data_corruption"),
        (
            200,
            "[+]linearizable_read ok\n[+]serializable_read ok\nok\n".into()
        )
    );
    assert_eq!(get(&m, "/readyz/non_learner"), (200, "ok\n".into()));
    assert_eq!(get(&m, "/livez/nope").0, 404);
    assert_eq!(
        http_request(port_of(&m), "POST", "/readyz", ""),
        (405, "Method Not Allowed\n".into())
    );
    assert_eq!(
        get(&m, "/health?serializable=true"),
        (200, r#"{"health":"true"}"#.into())
    );
}

#[test]
fn a_learner_is_live_but_not_ready() {
    let mut c = Cluster::start(Kind::Oxetcd, 1);
    let l = c.add_member(true);
    let learner = &c.members[l];
    assert_eq!(get(learner, "/livez"), (200, "ok\n".into()));
    let (status, body) = get(learner, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]non_learner failed: not supported for learner\n"),
        "{body}"
    );
    assert_eq!(
        get(learner, "/readyz?exclude=non_learner"),
        (200, "ok\n".into())
    );
    assert_eq!(get(&c.members[0], "/readyz"), (200, "ok\n".into()));
}

#[test]
fn a_member_without_a_leader_is_live_but_not_ready() {
    let mut c = Cluster::start(Kind::Oxetcd, 3);
    c.members[1].kill9();
    c.members[2].kill9();
    let m = &c.members[0];
    assert_eq!(get(m, "/livez"), (200, "ok\n".into()));
    let (status, body) = get(m, "/readyz/linearizable_read");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("[-]linearizable_read failed: "), "{body}");
    assert_eq!(
        get(m, "/readyz?exclude=linearizable_read"),
        (200, "ok\n".into())
    );
    assert_eq!(
        get(m, "/health?serializable=true"),
        (200, r#"{"health":"true"}"#.into())
    );
}

/// `--listen-metrics-urls` serves metrics and health only; `--listen-client-http-urls` takes
/// the HTTP side (gateway, health) off the client URLs, which then serve gRPC only.
#[test]
fn metrics_and_http_listeners_of_their_own() {
    let (metrics, http) = (oxetcd_tests::free_port(), oxetcd_tests::free_port());
    let m = Member::start_with(
        Kind::Oxetcd,
        &[
            "--listen-metrics-urls",
            &format!("http://127.0.0.1:{metrics}"),
            "--listen-client-http-urls",
            &format!("http://127.0.0.1:{http}"),
        ],
    );
    let put = r#"{"key":"Zm9v","value":"YmFy"}"#;
    let (status, body) = http_request(metrics, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(body.contains("etcd_server_has_leader"), "{body}");
    assert_eq!(
        http_request(metrics, "GET", "/livez", ""),
        (200, "ok\n".into())
    );
    assert_eq!(http_request(metrics, "POST", "/v3/kv/put", put).0, 404);
    assert_eq!(http_request(http, "POST", "/v3/kv/put", put).0, 200);
    assert_eq!(
        http_request(http, "GET", "/readyz", ""),
        (200, "ok\n".into())
    );
    assert_eq!(http_request(port_of(&m), "POST", "/v3/kv/put", put).0, 404);
    assert_eq!(
        m.etcdctl(&["get", "foo", "--print-value-only"]).ok(),
        "bar\n"
    );
}

/// A raised alarm: `/health` is false (unless `?exclude=` names it), as etcd 3.4 answers;
/// `/readyz` fails its data_corruption check on CORRUPT, as etcd 3.6's does.
#[test]
fn an_alarm_makes_the_member_unhealthy() {
    let raise = r#"{"action":"ACTIVATE","memberID":"9","alarm":"CORRUPT"}"#;
    let (etcd, ours) = oxetcd_tests::against_etcd(|m| {
        let before = get(m, "/health");
        http_request(port_of(m), "POST", "/v3/maintenance/alarm", raise);
        let (status, body) = get(m, "/health");
        let excluded = get(m, "/health?exclude=CORRUPT");
        let other = get(m, "/health?exclude=NOSPACE");
        (
            before,
            status,
            body.contains(r#""health":"false""#),
            excluded,
            other.0,
        )
    });
    assert_eq!(etcd, ours);
    assert_eq!(ours.1, 503);
    let m = Member::start(Kind::Oxetcd);
    http_request(port_of(&m), "POST", "/v3/maintenance/alarm", raise);
    let (status, body) = get(&m, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("[-]data_corruption failed: alarm activated: CORRUPT\n"),
        "{body}"
    );
    assert_eq!(get(&m, "/livez"), (200, "ok\n".into()));
}
