//! Which keys a request names, in the members' key space: what a cached answer depends on,
//! and what a write through the proxy changed.

use oxetcd_common::etcdserverpb::{
    request_op, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest,
};
use prost::Message;

use super::Interval;
use crate::namespace::Namespace;

fn interval(ns: Option<&Namespace>, key: &[u8], range_end: &[u8]) -> Interval {
    match ns {
        Some(ns) => {
            let (k, e) = ns.on_members(key, range_end);
            Interval::of(&k, &e)
        }
        None => Interval::of(key, range_end),
    }
}

/// The keys a Range reads.
pub fn read(ns: Option<&Namespace>, r: &RangeRequest) -> Interval {
    interval(ns, &r.key, &r.range_end)
}

/// The keys the write `msg` to `path` may change: every put and delete in either branch of a
/// Txn. A message that cannot be read may have changed anything.
pub fn written(ns: Option<&Namespace>, path: &str, msg: Option<&[u8]>) -> Vec<Interval> {
    let everything = || vec![Interval::everything()];
    let Some(msg) = msg else {
        return everything();
    };
    let mut out = Vec::new();
    let ok = match path {
        "/etcdserverpb.KV/Put" => PutRequest::decode(msg)
            .map(|r| out.push(interval(ns, &r.key, b"")))
            .is_ok(),
        "/etcdserverpb.KV/DeleteRange" => DeleteRangeRequest::decode(msg)
            .map(|r| out.push(interval(ns, &r.key, &r.range_end)))
            .is_ok(),
        "/etcdserverpb.KV/Txn" => TxnRequest::decode(msg)
            .map(|t| txn(ns, &t, &mut out))
            .is_ok(),
        _ => false,
    };
    if ok {
        out
    } else {
        everything()
    }
}

fn txn(ns: Option<&Namespace>, t: &TxnRequest, out: &mut Vec<Interval>) {
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) => out.push(interval(ns, &p.key, b"")),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                out.push(interval(ns, &d.key, &d.range_end))
            }
            Some(request_op::Request::RequestTxn(t)) => txn(ns, t, out),
            Some(request_op::Request::RequestRange(_)) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::etcdserverpb::RequestOp;

    #[test]
    fn a_txn_names_the_keys_of_both_branches_and_of_nested_txns() {
        let put = |k: &[u8]| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.to_vec(),
                ..Default::default()
            })),
        };
        let t = TxnRequest {
            success: vec![put(b"a")],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestTxn(TxnRequest {
                    success: vec![put(b"b")],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        let ns = Namespace::new("/n/");
        let keys = written(Some(&ns), "/etcdserverpb.KV/Txn", Some(&t.encode_to_vec()));
        assert_eq!(
            keys,
            [Interval::of(b"/n/a", b""), Interval::of(b"/n/b", b"")]
        );
        assert_eq!(
            written(None, "/etcdserverpb.KV/Put", Some(&[0xff, 0xff])),
            [Interval::everything()]
        );
        assert_eq!(
            written(None, "/etcdserverpb.KV/Put", None),
            [Interval::everything()]
        );
    }
}
