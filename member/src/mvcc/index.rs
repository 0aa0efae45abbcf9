//! The in-memory key index: for every key, the revisions at which it changed, grouped in
//! generations (a generation runs from a creation to a delete). Values live in RocksDB under
//! their revision; the index is rebuilt from there at start-up, as etcd's treeIndex is.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// One life of a key: from its creation to its delete (the tombstone), if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Generation {
    /// Revision at which this generation created the key.
    pub created: Revision,
    /// Number of changes in the generation (the version of its newest revision), including
    /// those already compacted away.
    pub ver: i64,
    /// The revisions still kept, oldest first.
    pub revs: Vec<Revision>,
    /// The newest revision is a delete: the key is dead from there on.
    pub tombstone: bool,
}

/// The history of one key.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct KeyHistory {
    pub generations: Vec<Generation>,
}

/// Where a key stood at some revision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl KeyHistory {
    /// The key as of revision `at`, `None` if it did not exist then.
    pub(super) fn get(&self, at: i64) -> Option<KeyAt> {
        for g in self.generations.iter().rev() {
            let Some(first) = g.revs.first() else {
                continue;
            };
            if first.main > at {
                continue;
            }
            if g.tombstone && g.revs.last().is_some_and(|t| t.main <= at) {
                return None;
            }
            let idx = g.revs.iter().rposition(|r| r.main <= at)?;
            let newer = (g.revs.len() - 1 - idx) as i64;
            return Some(KeyAt {
                modified: g.revs[idx],
                created: g.created,
                version: g.ver - newer,
            });
        }
        None
    }

    /// Is the key alive now?
    pub(super) fn is_live(&self) -> bool {
        self.generations
            .last()
            .is_some_and(|g| !g.tombstone && !g.revs.is_empty())
    }

    /// Records a put at `rev`; returns the (create revision, version) the new value gets.
    pub(super) fn put(&mut self, rev: Revision) -> (Revision, i64) {
        match self.generations.last_mut() {
            Some(g) if !g.tombstone => {
                g.ver += 1;
                g.revs.push(rev);
                (g.created, g.ver)
            }
            _ => {
                self.generations.push(Generation {
                    created: rev,
                    ver: 1,
                    revs: vec![rev],
                    tombstone: false,
                });
                (rev, 1)
            }
        }
    }

    /// Records a delete at `rev`. The caller checks that the key is live.
    pub(super) fn tombstone(&mut self, rev: Revision) {
        if let Some(g) = self.generations.last_mut() {
            g.ver += 1;
            g.revs.push(rev);
            g.tombstone = true;
        }
    }

    /// Drops history that no read at revision >= `at` can see: every revision older than the
    /// newest one at or before `at`, and that one too if it is a tombstone. Returns the dropped
    /// revisions with their tombstone flag, for physical removal.
    pub(super) fn compact(&mut self, at: i64, dropped: &mut Vec<(Revision, bool)>) {
        let mut keep_from = 0;
        for (gi, g) in self.generations.iter_mut().enumerate() {
            let Some(last) = g.revs.last() else { continue };
            if last.main <= at && g.tombstone {
                // The whole generation ended at or before `at`.
                for (i, r) in g.revs.iter().enumerate() {
                    dropped.push((*r, i + 1 == g.revs.len()));
                }
                g.revs.clear();
                keep_from = gi + 1;
                continue;
            }
            // The first generation that lives past `at`: keep its newest revision <= at.
            if let Some(idx) = g.revs.iter().rposition(|r| r.main <= at) {
                for r in g.revs.drain(..idx) {
                    dropped.push((r, false));
                }
            }
            break;
        }
        self.generations.drain(..keep_from);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// The revision a compaction at `at` would keep of this key, if any (etcd's `keep`): the
    /// newest one at or before `at` in the first generation still alive after `at`.
    fn kept_at(&self, at: i64) -> Option<Revision> {
        let live = self.generations.iter().find(|g| {
            let ended = g.tombstone && g.revs.last().is_some_and(|r| r.main <= at);
            !ended && !g.revs.is_empty()
        })?;
        live.revs.iter().rev().find(|r| r.main <= at).copied()
    }
}

/// All keys, ordered.
#[derive(Default)]
pub(super) struct KeyIndex {
    keys: BTreeMap<Vec<u8>, KeyHistory>,
}

impl KeyIndex {
    pub(super) fn entry(&mut self, key: &[u8]) -> &mut KeyHistory {
        if !self.keys.contains_key(key) {
            self.keys.insert(key.to_vec(), KeyHistory::default());
        }
        self.keys.get_mut(key).expect("inserted above")
    }

    /// Keys in `[start, end)` (`end` empty: just `start`; `end` = "\0": everything >= start).
    pub(super) fn range<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyHistory)> + 'a> {
        if end.is_empty() {
            return Box::new(self.keys.get_key_value(start).into_iter());
        }
        let upper = if end == [0] {
            Bound::Unbounded
        } else if end <= start {
            return Box::new(std::iter::empty());
        } else {
            Bound::Excluded(end)
        };
        Box::new(self.keys.range::<[u8], _>((Bound::Included(start), upper)))
    }

    /// Compacts at `at` the histories of up to `limit` keys from `from` on (`None`: the
    /// first key), forgetting keys left with none. Returns the dropped revisions and where the
    /// next step starts (`None`: every key is done).
    pub(super) fn compact_some(
        &mut self,
        at: i64,
        from: Option<&[u8]>,
        limit: usize,
    ) -> (Vec<(Revision, bool)>, Option<Vec<u8>>) {
        let lower = match from {
            Some(k) => Bound::Included(k),
            None => Bound::Unbounded,
        };
        let mut keys: Vec<Vec<u8>> = self
            .keys
            .range::<[u8], _>((lower, Bound::Unbounded))
            .take(limit + 1)
            .map(|(k, _)| k.clone())
            .collect();
        let next = (keys.len() > limit).then(|| keys.pop()).flatten();
        let mut dropped = Vec::new();
        for k in keys {
            if let Some(h) = self.keys.get_mut(&k) {
                h.compact(at, &mut dropped);
                if h.is_empty() {
                    self.keys.remove(&k);
                }
            }
        }
        (dropped, next)
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Every revision a compaction at `at` would keep (etcd's `treeIndex.Keep`).
    pub(super) fn kept_at(&self, at: i64) -> std::collections::HashSet<Revision> {
        self.keys.values().filter_map(|h| h.kept_at(at)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn versions_and_generations() {
        let mut h = KeyHistory::default();
        assert_eq!(h.put(r(2)), (r(2), 1));
        assert_eq!(h.put(r(3)), (r(2), 2));
        h.tombstone(r(5));
        assert!(!h.is_live());
        assert_eq!(h.put(r(7)), (r(7), 1));
        assert_eq!(h.get(1), None);
        assert_eq!(h.get(2).map(|k| (k.modified, k.version)), Some((r(2), 1)));
        assert_eq!(h.get(4).map(|k| (k.modified, k.version)), Some((r(3), 2)));
        assert_eq!(h.get(5), None);
        assert_eq!(h.get(6), None);
        assert_eq!(h.get(9).map(|k| (k.created, k.version)), Some((r(7), 1)));
    }

    #[test]
    fn compaction_keeps_what_later_reads_see() {
        let mut h = KeyHistory::default();
        h.put(r(2));
        h.put(r(3));
        h.tombstone(r(5));
        h.put(r(7));
        h.put(r(8));
        let mut dropped = vec![];
        h.compact(7, &mut dropped);
        assert_eq!(dropped, vec![(r(2), false), (r(3), false), (r(5), true)]);
        assert_eq!(h.get(7).map(|k| (k.modified, k.version)), Some((r(7), 1)));
        assert_eq!(h.get(8).map(|k| k.version), Some(2));

        // A key whose last change before the compaction point is a delete disappears.
        let mut g = KeyHistory::default();
        g.put(r(2));
        g.tombstone(r(4));
        let mut dropped = vec![];
        g.compact(4, &mut dropped);
        assert!(g.is_empty());
        assert_eq!(dropped, vec![(r(2), false), (r(4), true)]);
    }

    #[test]
    fn compaction_keeps_version_numbers() {
        let mut h = KeyHistory::default();
        for m in 2..6 {
            h.put(r(m));
        }
        let mut dropped = vec![];
        h.compact(4, &mut dropped);
        assert_eq!(dropped.len(), 2);
        assert_eq!(h.get(5).map(|k| k.version), Some(4));
        assert_eq!(h.get(4).map(|k| k.version), Some(3));
    }

    #[test]
    fn index_ranges() {
        let mut idx = KeyIndex::default();
        for (i, k) in [b"a".as_ref(), b"b", b"c"].iter().enumerate() {
            idx.entry(k).put(r(i as i64 + 2));
        }
        let keys = |s: &[u8], e: &[u8]| -> Vec<Vec<u8>> {
            idx.range(s, e).map(|(k, _)| k.clone()).collect()
        };
        assert_eq!(keys(b"a", b""), vec![b"a".to_vec()]);
        assert_eq!(keys(b"a", b"c"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(b"b", b"\0").len(), 2);
        assert_eq!(keys(b"\0", b"\0").len(), 3);
        assert!(keys(b"c", b"a").is_empty());
    }
}
