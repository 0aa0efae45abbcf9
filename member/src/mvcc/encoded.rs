//! A Range answer encoded as it is read.
//!
//! Every `kv` row is an encoded `mvccpb.KeyValue` (ours, or etcd's own bytes from a restored
//! snapshot), so a Range in key order without filters or `keys_only` puts the rows into the
//! `RangeResponse` as they are: no `KeyValue` decoded per key, and no decoded copy of a large
//! range beside its encoding. Only the answer's first [`KEPT_BYTES`] are built under the
//! state lock; past them each value is measured (the message's length goes first) and read
//! again as it is sent ([`Remainder`]). A unary Range of 1M keys peaked the member at 815 MB
//! with both copies; it now holds a few MB of its answer at a time.

use std::collections::HashMap;

use oxetcd_common::etcdserverpb::{RangeResponse, ResponseHeader};
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{self, encode_key, encode_varint, WireType};
use prost::Message;

use super::error::KvError;
use super::revision::Revision;
use super::store::{fetch_rows, Fetched};
use crate::storage::Storage;

/// A part is closed once it holds this much: the answer goes out part by part, each freed
/// once sent.
const PART_BYTES: usize = 1 << 20;

/// How much of an answer is built under the state lock. The rest is only measured there (its
/// length goes before the message), and read again part by part as it is sent.
const KEPT_BYTES: usize = 2 * PART_BYTES;

/// `RangeResponse`'s fields after the header (`kvs`, `more`, `count`), encoded: the first
/// [`KEPT_BYTES`] in parts, the rest as the revisions to read again.
#[derive(Default)]
pub(crate) struct EncodedKvs {
    parts: Vec<Bytes>,
    current: BytesMut,
    len: usize,
    /// The header's revision: the store's revision when the range was read.
    pub(crate) revision: i64,
    rest: Rest,
}

/// The key-values past [`KEPT_BYTES`].
#[derive(Default)]
struct Rest {
    storage: Option<Storage>,
    revs: Vec<Revision>,
    /// What the apply in progress wrote (not yet stored when the range was read).
    pending: HashMap<Revision, Bytes>,
    /// Their encoded length.
    len: usize,
    /// `more` and `count`, encoded: the message's end.
    tail: Bytes,
}

/// A Range's answer: a message, or a header and the rest encoded.
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
    /// Where values past [`KEPT_BYTES`] are read again from.
    pub(crate) fn read_from(&mut self, storage: &Storage) {
        self.rest.storage = Some(storage.clone());
    }

    /// Appends the stored value of `rev` (an encoded `mvccpb.KeyValue`).
    pub(crate) fn push_kv(&mut self, rev: Revision, kv: &[u8]) {
        if self.len >= KEPT_BYTES {
            self.rest.revs.push(rev);
            let framed = framed_len(kv.len());
            self.rest.len += framed;
            self.len += framed;
            return;
        }
        let start = self.current.len();
        push_framed(&mut self.current, kv);
        self.len += self.current.len() - start;
        if self.current.len() >= PART_BYTES {
            self.parts.push(self.current.split().freeze());
            self.current = BytesMut::with_capacity(PART_BYTES);
        }
    }

    /// Appends a value of the apply in progress (not stored yet).
    pub(crate) fn push_pending(&mut self, rev: Revision, kv: Bytes) {
        let kept = self.len < KEPT_BYTES;
        self.push_kv(rev, &kv);
        if !kept {
            self.rest.pending.insert(rev, kv);
        }
    }

    /// Ends the response with `more` and `count` (each left out when zero, as prost does).
    pub(crate) fn finish(&mut self, more: bool, count: i64) {
        let mut tail = BytesMut::new();
        if more {
            encoding::bool::encode(MORE_FIELD, &more, &mut tail);
        }
        if count != 0 {
            encoding::int64::encode(COUNT_FIELD, &count, &mut tail);
        }
        self.len += tail.len();
        if self.rest.revs.is_empty() {
            self.current.put_slice(&tail);
        } else {
            self.rest.tail = tail.freeze();
        }
        if !self.current.is_empty() {
            self.parts.push(self.current.split().freeze());
        }
    }

    /// The encoded length of these fields.
    pub(crate) fn encoded_len(&self) -> usize {
        self.len
    }
}

/// `kv` as one `kvs` field.
fn push_framed(buf: &mut BytesMut, kv: &[u8]) {
    buf.reserve(framed_len(kv.len()));
    encode_key(KVS_FIELD, WireType::LengthDelimited, buf);
    encode_varint(kv.len() as u64, buf);
    buf.put_slice(kv);
}

fn framed_len(len: usize) -> usize {
    encoding::key_len(KVS_FIELD) + encoding::encoded_len_varint(len as u64) + len
}

/// The part of a large answer read as it is sent: the stored rows at the revisions the range
/// found, with no lock held. The rows of a revision never change; a compaction may remove
/// them meanwhile, and then the answer ends with etcd's "required revision has been
/// compacted" instead.
pub(crate) struct Remainder {
    rest: Rest,
    next: usize,
}

impl Remainder {
    /// The next part; after the last, `None`.
    pub(crate) fn next_part(&mut self) -> Option<Result<Bytes, KvError>> {
        if self.next < self.rest.revs.len() {
            return Some(self.read_part());
        }
        if self.rest.tail.is_empty() {
            return None;
        }
        let tail = std::mem::take(&mut self.rest.tail);
        // The rows read again must add up to the length measured under the lock, which the
        // message's prefix already announced.
        Some(match self.rest.len {
            0 => Ok(tail),
            _ => Err(changed()),
        })
    }

    fn read_part(&mut self) -> Result<Bytes, KvError> {
        let Rest {
            storage,
            revs,
            pending,
            len,
            ..
        } = &mut self.rest;
        let Some(storage) = storage.as_ref() else {
            return Err(KvError::Corrupt("a range's rest has no store".into()));
        };
        let mut part = BytesMut::with_capacity(PART_BYTES + PART_BYTES / 8);
        while self.next < revs.len() && part.len() < PART_BYTES {
            // A few rows at a time, so a part ends near its size.
            let step = &revs[self.next..(self.next + ROWS_PER_READ).min(revs.len())];
            fetch_rows(
                storage,
                None,
                step,
                |rev| pending.get(rev),
                |_| KvError::Compacted,
                |_, row| {
                    let kv: &[u8] = match row {
                        Fetched::Pending(kv) => kv,
                        Fetched::Stored(kv) => kv,
                    };
                    *len = len.checked_sub(framed_len(kv.len())).ok_or_else(changed)?;
                    push_framed(&mut part, kv);
                    Ok(())
                },
            )?;
            self.next += step.len();
        }
        Ok(part.freeze())
    }
}

/// Rows per read of a [`Remainder`].
const ROWS_PER_READ: usize = 64;

fn changed() -> KvError {
    KvError::Corrupt("a range's rows changed while it was sent".into())
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

    /// `head`, then the response's encoding (what `RangeResponse::encode_raw` writes): the
    /// parts built, and what is left to read.
    pub(crate) fn into_parts(self, head: &[u8]) -> (Vec<Bytes>, Option<Remainder>) {
        match self {
            Self::Message(m) => {
                let mut first = BytesMut::with_capacity(head.len() + m.encoded_len());
                first.put_slice(head);
                m.encode_raw(&mut first);
                (vec![first.freeze()], None)
            }
            Self::Encoded { header, kvs } => {
                let header_len = header
                    .as_ref()
                    .map_or(0, |h| encoding::message::encoded_len(HEADER_FIELD, h));
                let mut built = kvs.parts.into_iter();
                // A small answer (one part) goes out as one buffer: one HTTP/2 DATA frame.
                let only = match built.len() {
                    1 => built.next(),
                    _ => None,
                };
                let mut first = BytesMut::with_capacity(
                    head.len() + header_len + only.as_ref().map_or(0, Bytes::len),
                );
                first.put_slice(head);
                if let Some(h) = &header {
                    encoding::message::encode(HEADER_FIELD, h, &mut first);
                }
                if let Some(only) = only {
                    first.put_slice(&only);
                }
                let parts = std::iter::once(first.freeze()).chain(built).collect();
                let rest = (!kvs.rest.revs.is_empty()).then_some(Remainder {
                    rest: kvs.rest,
                    next: 0,
                });
                (parts, rest)
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
    /// (parts are closed mid-range here) and flags. (Answers past `KEPT_BYTES`, read again
    /// from a store, are checked in `mvcc/tests.rs`.)
    #[test]
    fn parts_are_the_message_prost_encodes() {
        for (n, value_len, more, count) in [
            (0, 0, false, 0),
            (1, 10, false, 1),
            (3, 0, true, 7),
            (5000, 300, false, 5000),
            (1, PART_BYTES + 5, true, 9),
        ] {
            let kvs: Vec<KeyValue> = (0..n).map(|i| kv(i, value_len)).collect();
            let mut encoded = EncodedKvs::default();
            for kv in &kvs {
                encoded.push_kv(Revision::new(kv.mod_revision, 0), &kv.encode_to_vec());
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
            let (parts, rest) = range.into_parts(b"head");
            assert!(rest.is_none(), "{n} kvs of {value_len} B: all kept");
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
            // A small answer is one part (one HTTP/2 DATA frame).
            if len <= PART_BYTES / 2 {
                assert_eq!(n_parts, 1, "{n} kvs of {value_len} B");
            }
        }
    }
}
