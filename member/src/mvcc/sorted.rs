//! Bulk inserts into the maps that stage a transaction's writes. A DeleteRange of a million
//! keys stages a million rows in key order: a million inserts are a million tree searches,
//! while merging sorted rows and building the tree from them is linear.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

/// Below this many rows, or when they are few beside the map, rows are inserted one by one.
const BULK: usize = 64;

/// Inserts `rows` into `map` (keys may repeat; they need not be sorted). `combine` folds a
/// value into the one already under its key, in row order.
pub(super) fn insert_all<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    mut rows: Vec<(K, V)>,
    mut combine: impl FnMut(&mut V, V),
) {
    if rows.len() < BULK || rows.len() * 4 < map.len() {
        for (k, v) in rows {
            match map.entry(k) {
                Entry::Vacant(e) => {
                    e.insert(v);
                }
                Entry::Occupied(mut e) => combine(e.get_mut(), v),
            }
        }
        return;
    }
    // Stable, and linear when the rows come in key order (they usually do).
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut old = std::mem::take(map).into_iter().peekable();
    let mut merged: Vec<(K, V)> = Vec::with_capacity(old.len() + rows.len());
    for (k, v) in rows {
        while let Some(o) = old.next_if(|(ok, _)| *ok < k) {
            merged.push(o);
        }
        match merged.last_mut() {
            Some((last, held)) if *last == k => combine(held, v),
            _ => match old.next_if(|(ok, _)| *ok == k) {
                Some((_, mut held)) => {
                    combine(&mut held, v);
                    merged.push((k, held));
                }
                None => merged.push((k, v)),
            },
        }
    }
    merged.extend(old);
    // Sorted with unique keys: the map is built in one pass.
    *map = merged.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same as inserting the rows one by one, in bulk or not.
    #[test]
    fn bulk_inserts_match_one_by_one() {
        let mut next = crate::mvcc::tests::numbers(7);
        for round in 0..200 {
            let mut map: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for _ in 0..next(100) {
                map.insert(next(500), vec![next(10)]);
            }
            let len = next(400) as usize;
            let mut rows: Vec<(u64, Vec<u64>)> =
                (0..len).map(|i| (next(500), vec![i as u64])).collect();
            if round % 2 == 0 {
                rows.sort_by_key(|r| r.0);
            }
            let mut expected = map.clone();
            for (k, v) in rows.clone() {
                expected.entry(k).or_default().extend(v);
            }
            insert_all(&mut map, rows, |held, v| held.extend(v));
            assert_eq!(map, expected, "round {round}");
        }
    }
}
