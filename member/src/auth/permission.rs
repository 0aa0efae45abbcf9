//! A user's key permissions merged over all their roles: sorted, disjoint key ranges, so a
//! request range is permitted iff one merged range covers it whole (a range granted in two
//! touching pieces counts as one, as etcd's interval tree does).

use oxetcd_common::authpb::Permission;

/// `[begin, end)`; `None` has no upper bound (etcd's range end `"\0"`).
type Span = (Vec<u8>, Option<Vec<u8>>);

/// A key or range as etcd writes them: an empty `range_end` is the single key, `"\0"` every
/// key from `key` on. `None` for an empty range (`range_end <= key`).
pub(super) fn span(key: &[u8], range_end: &[u8]) -> Option<Span> {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Some((key.to_vec(), Some(next)))
        }
        [0] => Some((key.to_vec(), None)),
        end if end > key => Some((key.to_vec(), Some(end.to_vec()))),
        _ => None,
    }
}

/// Merged ranges, sorted by start, neither overlapping nor touching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct KeySet {
    spans: Vec<Span>,
}

impl KeySet {
    pub(super) fn new<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> Self {
        let mut spans: Vec<Span> = perms
            .into_iter()
            .filter_map(|p| span(&p.key, &p.range_end))
            .collect();
        spans.sort();
        let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
        for (begin, end) in spans {
            match merged.last_mut() {
                // Reaches (or touches) the next one: extend it.
                Some((_, last_end)) if last_end.as_ref().is_none_or(|e| *e >= begin) => {
                    if let (Some(a), Some(b)) = (last_end.as_ref(), end.as_ref()) {
                        if b > a {
                            *last_end = Some(b.clone());
                        }
                    } else {
                        *last_end = None;
                    }
                }
                _ => merged.push((begin, end)),
            }
        }
        Self { spans: merged }
    }

    /// Is every key of `key`..`range_end` (etcd's convention, see [`span`]) in the set? An
    /// empty request range asks for its first key.
    pub(super) fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let (begin, end) = span(key, range_end).unwrap_or_else(|| {
            span(key, &[]).unwrap_or_default() // a single key is never empty
        });
        // The last merged range starting at or before `begin` is the only candidate.
        let i = self.spans.partition_point(|(b, _)| *b <= begin);
        let Some((_, have_end)) = i.checked_sub(1).and_then(|i| self.spans.get(i)) else {
            return false;
        };
        match (have_end, end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(have), Some(want)) => *have >= want,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(key: &str, end: &str) -> Permission {
        Permission {
            perm_type: 0,
            key: key.as_bytes().to_vec(),
            range_end: end.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_key_a_range_and_a_prefix() {
        let set = KeySet::new(&[perm("a", ""), perm("/app/", "/app0"), perm("k", "m")]);
        assert!(set.covers(b"a", b""));
        assert!(!set.covers(b"a", b"b"), "a range wider than the key");
        assert!(!set.covers(b"ab", b""));
        assert!(set.covers(b"/app/x", b""));
        assert!(set.covers(b"/app/", b"/app0"));
        assert!(!set.covers(b"/app/", b"/app1"));
        assert!(!set.covers(b"/app", b""));
        assert!(set.covers(b"k", b"l"));
        assert!(!set.covers(b"k", b"\0"), "open ended beyond the grant");
        assert!(!set.covers(b"m", b""));
    }

    #[test]
    fn touching_and_open_ended_grants_merge() {
        let set = KeySet::new(&[perm("a", "c"), perm("c", "e"), perm("x", "\0")]);
        assert!(set.covers(b"a", b"e"));
        assert!(set.covers(b"b", b"d"));
        assert!(!set.covers(b"a", b"f"));
        assert!(set.covers(b"x", b"\0"));
        assert!(set.covers(b"zzz", b""));
        assert!(!set.covers(b"w", b"\0"));
        let all = KeySet::new(&[perm("", "\0")]);
        assert!(all.covers(b"", b"\0"));
        assert!(all.covers(b"\0", b"\0"));
    }

    #[test]
    fn overlapping_grants_keep_the_longest_end() {
        let set = KeySet::new(&[perm("a", "z"), perm("b", "c")]);
        assert!(set.covers(b"c", b"y"));
    }

    #[test]
    fn nothing_granted_covers_nothing() {
        let set = KeySet::new(&[]);
        assert!(!set.covers(b"a", b""));
        let empty_grant = KeySet::new(&[perm("b", "a")]);
        assert!(!empty_grant.covers(b"a", b""));
    }
}
