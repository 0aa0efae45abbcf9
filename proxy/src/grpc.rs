//! gRPC framing and the one protobuf field the proxy reads from every answer: the header.
//!
//! A gRPC message on the wire is a flag byte (1 = compressed), a big-endian `u32` length and
//! the protobuf. etcd's responses carry their `ResponseHeader` as field 1, which both Go and
//! prost encode first; the proxy reads it without decoding the rest.

use bytes::Bytes;
use oxetcd_common::etcdserverpb::ResponseHeader;
use prost::Message;

/// Length of the first gRPC message announced in `buf`'s frame header.
pub fn grpc_frame_len(buf: &[u8]) -> Option<usize> {
    let h = buf.get(..5)?;
    Some(u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize)
}

/// The first complete gRPC message in `buf`, if it is all there and uncompressed.
pub fn grpc_message(buf: &[u8]) -> Option<&[u8]> {
    let len = grpc_frame_len(buf)?;
    if buf[0] != 0 {
        return None;
    }
    buf.get(5..5 + len)
}

/// Appends `msg` to `out` as one uncompressed gRPC message: flag byte, big-endian length, bytes.
pub fn put_grpc_message(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Reads a protobuf varint at `*at`, moving past it.
fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The `ResponseHeader` at the start of a response message, if field 1 comes first and all of
/// it is in `msg` (which may be only the message's first bytes).
pub fn leading_header(msg: &[u8]) -> Option<ResponseHeader> {
    let mut at = 0;
    // Field 1, wire type 2 (length-delimited).
    if varint(msg, &mut at)? != (1 << 3 | 2) {
        return None;
    }
    let len = usize::try_from(varint(msg, &mut at)?).ok()?;
    ResponseHeader::decode(msg.get(at..at.checked_add(len)?)?).ok()
}

/// Splits a whole response message into its header and the rest of its fields, so the
/// header can be replaced without decoding the rest: `encode_with_header` puts them back.
pub fn split_header(msg: &[u8]) -> Option<(ResponseHeader, Bytes)> {
    let mut at = 0;
    let mut header = None;
    let mut rest = Vec::with_capacity(msg.len());
    while at < msg.len() {
        let start = at;
        let key = varint(msg, &mut at)?;
        match key & 7 {
            0 => {
                varint(msg, &mut at)?;
            }
            1 => at = at.checked_add(8)?,
            2 => {
                let len = usize::try_from(varint(msg, &mut at)?).ok()?;
                let body = at;
                at = at.checked_add(len)?;
                if key >> 3 == 1 {
                    header = Some(ResponseHeader::decode(msg.get(body..at)?).ok()?);
                    continue;
                }
            }
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
        rest.extend_from_slice(msg.get(start..at)?);
    }
    Some((header?, Bytes::from(rest)))
}

/// One framed gRPC message: `header` as field 1, then `rest` (from [`split_header`]).
pub fn encode_with_header(header: &ResponseHeader, rest: &[u8]) -> Bytes {
    let h = header.encoded_len();
    let field = 1 + prost::encoding::encoded_len_varint(h as u64) + h;
    let mut msg = Vec::with_capacity(5 + field + rest.len());
    msg.push(0);
    msg.extend_from_slice(&((field + rest.len()) as u32).to_be_bytes());
    msg.push(1 << 3 | 2);
    prost::encoding::encode_varint(h as u64, &mut msg);
    header.encode(&mut msg).expect("a Vec grows");
    msg.extend_from_slice(rest);
    Bytes::from(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::etcdserverpb::RangeResponse;
    use oxetcd_common::mvccpb::KeyValue;

    #[test]
    fn a_header_is_replaced_without_touching_the_rest() {
        let resp = RangeResponse {
            header: Some(ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: 41,
                raft_term: 3,
            }),
            kvs: vec![KeyValue {
                key: b"k".to_vec(),
                value: vec![0xff; 300],
                mod_revision: 40,
                ..Default::default()
            }],
            more: true,
            count: 12,
        };
        let msg = resp.encode_to_vec();
        assert_eq!(leading_header(&msg).unwrap().revision, 41);
        assert_eq!(leading_header(&msg[..3]), None, "cut short");
        let (h, rest) = split_header(&msg).unwrap();
        assert_eq!(h.revision, 41);
        let framed = encode_with_header(&ResponseHeader { revision: 45, ..h }, &rest);
        let back = RangeResponse::decode(grpc_message(&framed).unwrap()).unwrap();
        assert_eq!(back.header.unwrap().revision, 45);
        assert_eq!((back.kvs, back.more, back.count), (resp.kvs, true, 12));
        assert!(split_header(&msg[..msg.len() - 1]).is_none());
    }
}
