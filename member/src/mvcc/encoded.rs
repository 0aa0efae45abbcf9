//! A Range answer encoded as it is read.
//!
//! Every `kv` row is an encoded `mvccpb.KeyValue` (ours, or etcd's own bytes from a restored
//! snapshot), so a Range in key order without filters or `keys_only` puts the rows into the
//! `RangeResponse` as they are: no `KeyValue` decoded per key, and no decoded copy of a large
//! range held beside its encoding (a full Range of 1M keys held both, ~820 MB at its peak).

use oxetcd_common::etcdserverpb::{RangeResponse, ResponseHeader};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{self, encode_key, encode_varint, WireType};
use prost::Message;

/// A part is closed once it holds this much: the parts of a large range are freed one by one
/// as they are copied out, and none is ever grown past about this size.
const PART_BYTES: usize = 1 << 20;

/// `RangeResponse`'s fields after the header (`kvs`, `more`, `count`), encoded in parts.
#[derive(Debug, Default)]
pub(crate) struct EncodedKvs {
    parts: Vec<Bytes>,
    current: BytesMut,
    len: usize,
    /// The header's revision: the store's revision when the range was read.
    pub(crate) revision: i64,
}

/// A Range's answer: a message, or a header and the rest encoded.
#[derive(Debug)]
pub(crate) enum EncodedRange {
    Message(RangeResponse),
    Encoded {
        header: Option<ResponseHeader>,
        kvs: EncodedKvs,
    },
}

/// `RangeResponse.header`.
const HEADER_FIELD: u32 = 1;
/// `RangeResponse.kvs`.
const KVS_FIELD: u32 = 2;
/// `RangeResponse.more`.
const MORE_FIELD: u32 = 3;
/// `RangeResponse.count`.
const COUNT_FIELD: u32 = 4;

impl EncodedKvs {
    /// Appends one key-value, given as an encoded `mvccpb.KeyValue`.
    pub(crate) fn push_kv(&mut self, kv: &[u8]) {
        let start = self.current.len();
        self.current.reserve(kv.len() + 11);
        encode_key(KVS_FIELD, WireType::LengthDelimited, &mut self.current);
        encode_varint(kv.len() as u64, &mut self.current);
        self.current.put_slice(kv);
        self.len += self.current.len() - start;
        if self.current.len() >= PART_BYTES {
            self.parts.push(self.current.split().freeze());
            self.current = BytesMut::with_capacity(PART_BYTES);
        }
    }

    /// Ends the response with `more` and `count` (each left out when zero, as prost does).
    pub(crate) fn finish(&mut self, more: bool, count: i64) {
        let start = self.current.len();
        if more {
            encoding::bool::encode(MORE_FIELD, &more, &mut self.current);
        }
        if count != 0 {
            encoding::int64::encode(COUNT_FIELD, &count, &mut self.current);
        }
        self.len += self.current.len() - start;
        if !self.current.is_empty() {
            self.parts.push(self.current.split().freeze());
        }
    }

    /// The encoded length of these fields.
    pub(crate) fn encoded_len(&self) -> usize {
        self.len
    }
}

impl EncodedRange {
    /// The header's revision.
    pub(crate) fn revision(&self) -> i64 {
        match self {
            Self::Message(m) => m.header.as_ref().map_or(0, |h| h.revision),
            Self::Encoded { kvs, .. } => kvs.revision,
        }
    }

    pub(crate) fn set_header(&mut self, h: Option<ResponseHeader>) {
        match self {
            Self::Message(m) => m.header = h,
            Self::Encoded { header, .. } => *header = h,
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Self::Message(m) => m.encoded_len(),
            Self::Encoded { header, kvs } => {
                header
                    .as_ref()
                    .map_or(0, |h| encoding::message::encoded_len(HEADER_FIELD, h))
                    + kvs.encoded_len()
            }
        }
    }

    /// `head`, then the response's encoding (what `RangeResponse::encode_raw` writes), in
    /// parts: one, unless the key-values fill more than one.
    pub(crate) fn into_parts(self, head: &[u8]) -> Vec<Bytes> {
        let mut first = BytesMut::with_capacity(head.len() + self.encoded_len().min(PART_BYTES));
        first.put_slice(head);
        match self {
            Self::Message(m) => {
                first.reserve(m.encoded_len());
                m.encode_raw(&mut first);
                vec![first.freeze()]
            }
            Self::Encoded { header, kvs } => {
                if let Some(h) = &header {
                    encoding::message::encode(HEADER_FIELD, h, &mut first);
                }
                let mut rest = kvs.parts.into_iter();
                match (rest.next(), rest.len()) {
                    (None, _) => vec![first.freeze()],
                    (Some(only), 0) => {
                        first.put_slice(&only);
                        vec![first.freeze()]
                    }
                    (Some(next), _) => [first.freeze(), next].into_iter().chain(rest).collect(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::mvccpb::KeyValue;

    fn kv(i: usize, value_len: usize) -> KeyValue {
        KeyValue {
            key: format!("key{i:07}").into_bytes(),
            create_revision: i as i64 + 1,
            mod_revision: i as i64 * 3 + 1,
            version: (i % 5) as i64,
            value: vec![b'v'; value_len],
            lease: (i % 3) as i64,
        }
    }

    /// The parts, joined, are what prost encodes for the same response, whatever the sizes
    /// (parts are closed mid-range here) and flags.
    #[test]
    fn parts_are_the_message_prost_encodes() {
        for (n, value_len, more, count) in [
            (0, 0, false, 0),
            (1, 10, false, 1),
            (3, 0, true, 7),
            (8000, 300, false, 8000),
            (3, PART_BYTES + 5, true, 9),
        ] {
            let kvs: Vec<KeyValue> = (0..n).map(|i| kv(i, value_len)).collect();
            let mut encoded = EncodedKvs::default();
            for kv in &kvs {
                encoded.push_kv(&kv.encode_to_vec());
            }
            encoded.finish(more, count);
            let header = Some(ResponseHeader {
                cluster_id: 7,
                member_id: 8,
                revision: n as i64 + 2,
                raft_term: 3,
            });
            let range = EncodedRange::Encoded {
                header,
                kvs: encoded,
            };
            let len = range.encoded_len();
            let parts = range.into_parts(b"head");
            let (n_parts, joined) = (parts.len(), parts.concat());
            let joined = joined.strip_prefix(b"head").expect("the head comes first");
            let expected = RangeResponse {
                header,
                kvs,
                more,
                count,
            }
            .encode_to_vec();
            assert_eq!(len, joined.len());
            assert!(
                joined == expected,
                "{n} kvs of {value_len} B: encodings differ"
            );
            // A small answer is one part (one HTTP/2 DATA frame), a large one several.
            if len <= PART_BYTES / 2 {
                assert_eq!(n_parts, 1, "{n} kvs of {value_len} B");
            }
            if len >= 2 * PART_BYTES {
                assert!(n_parts > 1, "{n} kvs of {value_len} B in one part");
            }
        }
    }
}
