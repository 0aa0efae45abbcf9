//! One upstream watch and the client watchers that share it.

use std::collections::VecDeque;

use oxetcd_common::etcdserverpb::{
    watch_create_request::FilterType, watch_request, WatchCreateRequest, WatchRequest,
};
use oxetcd_common::mvccpb::Event;

/// Bytes of recent events a shared group keeps, so a watcher that starts from a revision the
/// group has already passed can join it instead of opening an upstream watch of its own.
const HISTORY_BYTES: usize = 1 << 20;

/// What a watch asks for, apart from where it starts: watchers with the same spec can share
/// one upstream watch.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct Spec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
}

impl Spec {
    pub(super) fn of(c: &WatchCreateRequest) -> Spec {
        let has = |f: FilterType| c.filters.contains(&(f as i32));
        Spec {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: c.prev_kv,
            fragment: c.fragment,
        }
    }

    /// A fragmented watch's responses are pieces of one revision, so it is not shared.
    pub(super) fn shareable(&self) -> bool {
        !self.fragment
    }

    /// The upstream create for this spec under watch ID `id`, from `start` (0: now).
    /// Upstream watches always ask for progress notifications: they keep the group's position
    /// fresh, and are passed on only to watchers that asked for them.
    pub(super) fn create(&self, id: i64, start: i64) -> WatchRequest {
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(FilterType::Noput as i32);
        }
        if self.no_delete {
            filters.push(FilterType::Nodelete as i32);
        }
        WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: self.key.clone(),
                    range_end: self.range_end.clone(),
                    start_revision: start,
                    progress_notify: true,
                    filters,
                    prev_kv: self.prev_kv,
                    watch_id: id,
                    fragment: self.fragment,
                },
            )),
        }
    }
}

/// A client watcher: which stream, its ID there, and what it is owed.
#[derive(Clone, Debug)]
pub(super) struct Watcher {
    pub(super) stream: u64,
    pub(super) watch_id: i64,
    /// The first revision it is owed (0: from now, until it is placed in a group).
    pub(super) start: i64,
    pub(super) progress_notify: bool,
    /// Whether its client still waits for the `created` answer.
    pub(super) announce: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum State {
    /// The upstream create is sent, its answer not in yet.
    Creating,
    Live,
}

pub(super) struct Group {
    pub(super) spec: Spec,
    /// Where the upstream watch was first asked to start (0: now).
    pub(super) start: i64,
    pub(super) state: State,
    pub(super) members: Vec<Watcher>,
    /// Every event of the spec from the group's start through this revision has been
    /// received (and handed to the members that are owed it).
    pub(super) position: i64,
    /// `history` holds every event after this revision up to `position`.
    pub(super) floor: i64,
    history: VecDeque<Event>,
    history_bytes: usize,
    /// After the upstream watch moved to another member: events up to here were delivered
    /// already, and are dropped if the new member sends them again.
    pub(super) skip_through: i64,
    /// In the middle of a fragmented revision.
    pub(super) in_fragment: bool,
    /// The member has shown the watch is past any compaction (it sent an event, or answered
    /// a progress request after the create): a member cancels a watch from a compacted
    /// revision right after creating it, and such a group must not hand its watchers to
    /// another first.
    pub(super) confirmed: bool,
}

impl Group {
    pub(super) fn new(spec: Spec, start: i64) -> Group {
        Group {
            spec,
            start,
            state: State::Creating,
            members: Vec::new(),
            position: 0,
            floor: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            skip_through: 0,
            in_fragment: false,
            confirmed: false,
        }
    }

    /// The upstream create answered, at `revision`: from now on the group knows where it is.
    pub(super) fn created(&mut self, revision: i64) {
        if self.state == State::Live {
            return;
        }
        self.state = State::Live;
        if self.position == 0 && self.floor == 0 {
            let base = if self.start > 0 {
                self.start - 1
            } else {
                revision
            };
            self.position = base;
            self.floor = base;
        }
    }

    /// Whether the members of `other` (same spec) can move here: this group has, or will
    /// still deliver, every event they are owed. Both must be live, confirmed, and between
    /// revisions (not inside a fragmented one).
    pub(super) fn can_take(&self, other: &Group) -> bool {
        self.spec == other.spec
            && self.spec.shareable()
            && self.state == State::Live
            && other.state == State::Live
            && self.confirmed
            && other.confirmed
            && !self.in_fragment
            && !other.in_fragment
            && other.position >= self.floor
            && other.position <= self.position
    }

    /// Whether a watcher from now can join: only groups that started "now" themselves, so
    /// the group's position is a revision that was current, never one in the future.
    pub(super) fn can_join_now(&self) -> bool {
        self.spec.shareable() && self.start == 0
    }

    /// Remembers delivered events for later joiners, within [`HISTORY_BYTES`].
    pub(super) fn remember(&mut self, events: &[Event]) {
        if !self.spec.shareable() {
            return;
        }
        for ev in events {
            self.history_bytes += prost::Message::encoded_len(ev);
            self.history.push_back(ev.clone());
        }
        while self.history_bytes > HISTORY_BYTES {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= prost::Message::encoded_len(&old);
            let rev = revision_of(&old);
            // Events of one revision go together: drop the rest of that revision too.
            while self.history.front().is_some_and(|e| revision_of(e) == rev) {
                if let Some(e) = self.history.pop_front() {
                    self.history_bytes -= prost::Message::encoded_len(&e);
                }
            }
            self.floor = self.floor.max(rev);
        }
    }

    /// Remembered events from `start` on.
    pub(super) fn history_from(&self, start: i64) -> Vec<Event> {
        self.history
            .iter()
            .filter(|e| revision_of(e) >= start)
            .cloned()
            .collect()
    }

    pub(super) fn remove(&mut self, stream: u64, watch_id: i64) -> Option<Watcher> {
        let i = self
            .members
            .iter()
            .position(|w| w.stream == stream && w.watch_id == watch_id)?;
        Some(self.members.remove(i))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The revision an event happened at (a delete's `kv` carries the delete's revision).
pub(super) fn revision_of(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_common::mvccpb::KeyValue;

    fn ev(rev: i64, size: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                value: vec![0; size],
                mod_revision: rev,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn history_is_bounded_and_floor_follows_what_was_dropped() {
        let spec = Spec::of(&WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        });
        let mut g = Group::new(spec.clone(), 0);
        g.created(10);
        g.confirmed = true;
        // Another group of the same spec, caught up to `at`.
        let other = |at: i64| {
            let mut o = Group::new(spec.clone(), 5);
            o.created(20);
            o.position = at;
            o.confirmed = true;
            o
        };
        assert!(g.can_take(&other(10)) && !g.can_take(&other(9)) && !g.can_take(&other(11)));
        let mut unconfirmed = other(10);
        unconfirmed.confirmed = false;
        assert!(
            !g.can_take(&unconfirmed),
            "a compaction cancel may still come"
        );
        for rev in 11..=20 {
            g.remember(&[ev(rev, 200 * 1024)]);
            g.position = rev;
        }
        // About five 200 KiB events fit in 1 MiB: the oldest are gone and the floor moved.
        assert!(g.floor >= 14, "floor {}", g.floor);
        assert!(!g.can_take(&other(g.floor - 1)) && g.can_take(&other(g.floor)));
        let kept: Vec<i64> = g.history_from(0).iter().map(revision_of).collect();
        assert_eq!(kept, ((g.floor + 1)..=20).collect::<Vec<_>>());
        assert_eq!(g.history_from(19).len(), 2);
    }

    #[test]
    fn fragmented_watches_are_not_shared() {
        let spec = Spec::of(&WatchCreateRequest {
            key: b"k".to_vec(),
            fragment: true,
            ..Default::default()
        });
        let mut g = Group::new(spec.clone(), 0);
        g.created(5);
        let mut o = Group::new(spec, 0);
        o.created(5);
        assert!(!g.can_take(&o) && !g.can_join_now());
    }
}
