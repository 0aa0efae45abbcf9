//! Helpers over watch events shared by members and the proxy.

use crate::mvccpb::Event;

/// Splits events into responses of at most `max` events, cutting only between revisions (a
/// revision with more events goes whole, alone): etcd batches watch responses by revision, and
/// a client (the proxy among them) that saw an event of a revision may take it all as seen.
pub fn revision_chunks(events: &[Event], max: usize) -> Vec<&[Event]> {
    let rev = |e: &Event| e.kv.as_ref().map_or(0, |kv| kv.mod_revision);
    let mut chunks = Vec::new();
    let mut start = 0;
    // The end of the last whole revision in the current chunk.
    let mut cut = 0;
    for i in 0..events.len() {
        if i > start && rev(&events[i]) != rev(&events[i - 1]) {
            cut = i;
        }
        if i + 1 - start > max && cut > start {
            chunks.push(&events[start..cut]);
            start = cut;
        }
    }
    if start < events.len() {
        chunks.push(&events[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvccpb::KeyValue;

    #[test]
    fn replay_responses_cut_between_revisions_only() {
        let at = |rev: i64| Event {
            kv: Some(KeyValue {
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        };
        // Revisions 1, 2 (five events), 3, 4 (two events), 5.
        let events: Vec<Event> = [1, 2, 2, 2, 2, 2, 3, 4, 4, 5].into_iter().map(at).collect();
        let chunks = revision_chunks(&events, 3);
        let revs: Vec<Vec<i64>> = chunks
            .iter()
            .map(|c| {
                c.iter()
                    .map(|e| e.kv.as_ref().unwrap().mod_revision)
                    .collect()
            })
            .collect();
        assert_eq!(revs, [vec![1], vec![2, 2, 2, 2, 2], vec![3, 4, 4], vec![5]]);
        assert_eq!(revision_chunks(&events, 1000).len(), 1);
        assert!(revision_chunks(&[], 3).is_empty());
    }
}
