//! The scheduler's in-memory schedule of pending deliveries: a timer heap of
//! when each is due, and the due ones queued per webhook and taken in turns.
//! A webhook leaves the turns while it has no room (until a place of its is
//! freed: [`Timeline::unblock`]) or while its rate limit holds it back (until
//! the time its limit gives, which [`Timeline::next_due`] counts as a time to
//! wake up at). Its due deliveries wait here meanwhile, never leased.
//!
//! It is a hint, never the truth. Postgres decides when a delivery is leased
//! (see `deliveries_lease.sql`), so an entry that is out of date costs one
//! id in a lease query and nothing else. Entries are never lost either: a
//! delivery missing here (a notification lost, or more pending deliveries
//! than [`Timeline`] holds) is found by the next full read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

type Id = Arc<str>;

/// What a webhook's turn finds, for its oldest due delivery.
pub(super) enum Room<P> {
    /// It is taken, with these places.
    Take(P),
    /// No place: the webhook waits for [`Timeline::unblock`].
    Full,
    /// Held back by the webhook's rate limit until this time (ms since the
    /// epoch).
    Until(i64),
}

struct Entry {
    webhook_id: i64,
    /// Milliseconds since the Unix epoch.
    due: i64,
    /// Tells the current heap and queue items from stale ones.
    seq: u64,
}

pub(super) struct Timeline {
    /// Every delivery scheduled here and not taken: due later or due now.
    entries: HashMap<Id, Entry>,
    /// When entries fall due, soonest first (with stale items, skipped).
    timers: BinaryHeap<Reverse<(i64, u64, Id)>>,
    /// Due entries per webhook, oldest first (with stale items, skipped).
    ready: HashMap<i64, VecDeque<(u64, Id)>>,
    /// Webhooks with due entries and room to send, in turn order.
    turns: VecDeque<i64>,
    /// Webhooks with due entries but no room; back in `turns` on `unblock`.
    blocked: HashSet<i64>,
    /// Webhooks with due entries held back by their rate limit, and until
    /// when; back in `turns` then, or on `unthrottle_all`.
    throttled: HashMap<i64, i64>,
    /// When throttled webhooks go back in `turns`, soonest first (with
    /// stale items, skipped).
    releases: BinaryHeap<Reverse<(i64, i64)>>,
    /// Taken and not yet recorded: never scheduled again meanwhile.
    taken: HashSet<Id>,
    next_seq: u64,
    capacity: usize,
    overflowed: bool,
}

impl Timeline {
    /// A schedule of at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Timeline {
        Timeline {
            entries: HashMap::new(),
            timers: BinaryHeap::new(),
            ready: HashMap::new(),
            turns: VecDeque::new(),
            blocked: HashSet::new(),
            throttled: HashMap::new(),
            releases: BinaryHeap::new(),
            taken: HashSet::new(),
            next_seq: 0,
            capacity,
            overflowed: false,
        }
    }

    /// Schedules a delivery at `due` (ms since the epoch), or moves it there.
    /// Ignored while it is taken, and when the schedule is full (which is
    /// remembered: see [`Timeline::overflowed`]).
    pub(super) fn insert(&mut self, id: &str, webhook_id: i64, due: i64) {
        if self.taken.contains(id) {
            return;
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let key: Id = match self.entries.get_key_value(id) {
            Some((_, entry)) if entry.due == due && entry.webhook_id == webhook_id => return,
            Some((key, _)) => key.clone(),
            None if self.entries.len() >= self.capacity => {
                self.overflowed = true;
                return;
            }
            None => Arc::from(id),
        };
        self.entries.insert(
            key.clone(),
            Entry {
                webhook_id,
                due,
                seq,
            },
        );
        self.timers.push(Reverse((due, seq, key)));
    }

    /// Moves the entries due at `now` to their webhook's queue, and gives
    /// the webhooks held back until `now` their turns back.
    pub(super) fn promote(&mut self, now: i64) {
        self.release_throttled(now);
        while let Some(Reverse((due, seq, _))) = self.timers.peek() {
            if *due > now {
                break;
            }
            let seq = *seq;
            let Some(Reverse((_, _, id))) = self.timers.pop() else {
                break;
            };
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            if entry.seq != seq {
                continue;
            }
            let webhook_id = entry.webhook_id;
            let queue = self.ready.entry(webhook_id).or_default();
            queue.push_back((seq, id));
            if queue.len() == 1
                && !self.blocked.contains(&webhook_id)
                && !self.throttled.contains_key(&webhook_id)
            {
                self.turns.push_back(webhook_id);
            }
        }
    }

    /// Gives the webhooks held back until `now` their turns back.
    fn release_throttled(&mut self, now: i64) {
        while let Some(&Reverse((until, webhook_id))) = self.releases.peek() {
            if until > now {
                break;
            }
            self.releases.pop();
            if self.throttled.get(&webhook_id) == Some(&until) {
                self.throttled.remove(&webhook_id);
                self.rejoin(webhook_id);
            }
        }
    }

    /// Gives every webhook held back by its rate limit its turns back (the
    /// limits may have changed); those still held back leave them again
    /// on their next turn.
    pub(super) fn unthrottle_all(&mut self) {
        self.releases.clear();
        let mut throttled: Vec<(i64, i64)> =
            self.throttled.drain().map(|(w, at)| (at, w)).collect();
        // In the order they would have gone.
        throttled.sort_unstable();
        for (_, webhook_id) in throttled {
            self.rejoin(webhook_id);
        }
    }

    /// Puts a webhook back in the turns if it has due entries.
    fn rejoin(&mut self, webhook_id: i64) {
        if self.ready.contains_key(&webhook_id) && !self.blocked.contains(&webhook_id) {
            self.turns.push_back(webhook_id);
        }
    }

    /// When the next entry falls due or the next webhook held back by its
    /// rate limit may send again, if any: the time to wake up at.
    pub(super) fn next_due(&mut self) -> Option<i64> {
        let entry = loop {
            let Some(Reverse((due, seq, id))) = self.timers.peek() else {
                break None;
            };
            if self.entries.get(id).is_some_and(|e| e.seq == *seq) {
                break Some(*due);
            }
            self.timers.pop();
        };
        let release = loop {
            let Some(&Reverse((until, webhook_id))) = self.releases.peek() else {
                break None;
            };
            if self.throttled.get(&webhook_id) == Some(&until) {
                break Some(until);
            }
            self.releases.pop();
        };
        match (entry, release) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes up to `limit` due entries, one per webhook in turn. `room` is
    /// asked before each, with the webhook and the entry's due time; when
    /// it has no place ([`Room::Full`]) the webhook waits for
    /// [`Timeline::unblock`], and when its rate limit holds it back
    /// ([`Room::Until`]) it waits for that time. Taken entries stay out of
    /// the schedule until [`Timeline::finish`].
    pub(super) fn take<P>(
        &mut self,
        limit: usize,
        mut room: impl FnMut(i64, i64) -> Room<P>,
    ) -> Vec<(Id, i64, P)> {
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some(webhook_id) = self.turns.pop_front() else {
                break;
            };
            let Some(queue) = self.ready.get_mut(&webhook_id) else {
                continue;
            };
            // Drop stale items at the front.
            while let Some((seq, id)) = queue.front() {
                if self.entries.get(id).is_some_and(|e| e.seq == *seq) {
                    break;
                }
                queue.pop_front();
            }
            let Some(due) = queue
                .front()
                .and_then(|(_, id)| self.entries.get(id))
                .map(|e| e.due)
            else {
                self.ready.remove(&webhook_id);
                continue;
            };
            let permit = match room(webhook_id, due) {
                Room::Take(permit) => permit,
                Room::Full => {
                    self.blocked.insert(webhook_id);
                    continue;
                }
                Room::Until(at) => {
                    self.throttled.insert(webhook_id, at);
                    self.releases.push(Reverse((at, webhook_id)));
                    continue;
                }
            };
            let Some((_, id)) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                self.ready.remove(&webhook_id);
            } else {
                self.turns.push_back(webhook_id);
            }
            self.entries.remove(&id);
            self.taken.insert(id.clone());
            taken.push((id, webhook_id, permit));
        }
        taken
    }

    /// Gives a blocked webhook its turns back (a place of its freed up).
    pub(super) fn unblock(&mut self, webhook_id: i64) {
        if self.blocked.remove(&webhook_id) && self.ready.contains_key(&webhook_id) {
            self.turns.push_back(webhook_id);
        }
    }

    /// A taken delivery is settled (its outcome recorded, or its lease
    /// refused): it may be scheduled again.
    pub(super) fn finish(&mut self, id: &str) {
        self.taken.remove(id);
    }

    /// Deliveries scheduled (due later or due now), not counting taken ones.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Due deliveries held back by their webhook's rate limit (counting,
    /// for a moment, one rescheduled meanwhile twice).
    pub(super) fn throttled(&self) -> usize {
        self.throttled
            .keys()
            .filter_map(|w| self.ready.get(w))
            .map(VecDeque::len)
            .sum()
    }

    /// Deliveries taken and not yet settled.
    pub(super) fn taken(&self) -> usize {
        self.taken.len()
    }

    /// True (once) if a delivery was left out because the schedule was full.
    pub(super) fn take_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.overflowed)
    }

    /// The most entries it holds.
    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<P>(taken: &[(Id, i64, P)]) -> Vec<&str> {
        taken.iter().map(|(id, _, _)| &**id).collect()
    }

    #[test]
    fn entries_fall_due_in_time_order() {
        let mut t = Timeline::new(10);
        t.insert("b", 1, 20);
        t.insert("a", 1, 10);
        t.insert("c", 1, 30);
        assert_eq!(t.next_due(), Some(10));
        t.promote(20);
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["a", "b"]);
        assert_eq!(t.next_due(), Some(30));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn webhooks_take_turns() {
        let mut t = Timeline::new(10);
        for (i, id) in ["a1", "a2", "a3"].iter().enumerate() {
            t.insert(id, 1, i as i64);
        }
        t.insert("b1", 2, 5);
        t.insert("c1", 3, 6);
        t.promote(10);
        assert_eq!(
            ids(&t.take(4, |_, _| Room::Take(()))),
            ["a1", "b1", "c1", "a2"]
        );
    }

    #[test]
    fn a_webhook_without_room_waits_for_unblock() {
        let mut t = Timeline::new(10);
        t.insert("a1", 1, 0);
        t.insert("a2", 1, 0);
        t.insert("b1", 2, 0);
        t.promote(0);
        let taken = t.take(10, |w, _| if w == 1 { Room::Full } else { Room::Take(()) });
        assert_eq!(ids(&taken), ["b1"]);
        assert!(t.take(10, |_, _| Room::Take(())).is_empty());
        t.unblock(1);
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["a1", "a2"]);
    }

    #[test]
    fn moving_an_entry_leaves_the_old_time_stale() {
        let mut t = Timeline::new(10);
        t.insert("a", 1, 10);
        t.insert("a", 1, 50);
        t.promote(20);
        assert!(t.take(10, |_, _| Room::Take(())).is_empty());
        assert_eq!(t.next_due(), Some(50));
        t.promote(50);
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["a"]);
    }

    #[test]
    fn a_taken_entry_is_not_scheduled_again_until_finished() {
        let mut t = Timeline::new(10);
        t.insert("a", 1, 0);
        t.promote(0);
        assert_eq!(t.take(10, |_, _| Room::Take(())).len(), 1);
        t.insert("a", 1, 0);
        assert_eq!(t.len(), 0);
        assert_eq!(t.taken(), 1);
        t.finish("a");
        t.insert("a", 1, 100);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_due(), Some(100));
    }

    #[test]
    fn a_full_schedule_remembers_what_it_left_out() {
        let mut t = Timeline::new(2);
        t.insert("a", 1, 0);
        t.insert("b", 1, 0);
        t.insert("a", 1, 5);
        assert!(!t.take_overflowed());
        t.insert("c", 1, 0);
        assert_eq!(t.len(), 2);
        assert!(t.take_overflowed());
        assert!(!t.take_overflowed());
    }

    #[test]
    fn a_webhook_held_back_waits_for_its_time_while_the_others_go() {
        let mut t = Timeline::new(10);
        t.insert("a1", 1, 0);
        t.insert("a2", 1, 0);
        t.insert("b1", 2, 0);
        t.insert("b2", 2, 0);
        t.insert("c1", 3, 500);
        t.promote(0);
        let mut asked = Vec::new();
        let taken = t.take(10, |w, due| {
            asked.push((w, due));
            if w == 1 {
                Room::Until(300)
            } else {
                Room::Take(())
            }
        });
        assert_eq!(ids(&taken), ["b1", "b2"]);
        assert_eq!(asked, [(1, 0), (2, 0), (2, 0)]);
        assert_eq!(t.throttled(), 2);
        // The wake-up time is the release, before the next entry's.
        assert_eq!(t.next_due(), Some(300));
        t.promote(299);
        assert!(t.take(10, |_, _| Room::Take(())).is_empty());
        // New due entries of a held-back webhook wait with it.
        t.insert("a3", 1, 100);
        t.promote(299);
        assert!(t.take(10, |_, _| Room::Take(())).is_empty());
        t.promote(300);
        assert_eq!(t.throttled(), 0);
        assert_eq!(t.next_due(), Some(500));
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["a1", "a2", "a3"]);
    }

    #[test]
    fn unthrottling_gives_every_held_back_webhook_its_turns_back() {
        let mut t = Timeline::new(10);
        t.insert("a1", 1, 0);
        t.insert("b1", 2, 0);
        t.promote(0);
        assert!(t.take(10, |w, _| Room::<()>::Until(60_000 - w)).is_empty());
        assert_eq!(t.next_due(), Some(59_998));
        t.unthrottle_all();
        assert_eq!(t.next_due(), None);
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["b1", "a1"]);
        // A stale release changes nothing.
        t.promote(60_000);
        assert!(t.take(10, |_, _| Room::Take(())).is_empty());
    }

    #[test]
    fn a_held_back_webhook_that_later_finds_no_place_is_blocked() {
        let mut t = Timeline::new(10);
        t.insert("a1", 1, 0);
        t.promote(0);
        assert!(t.take(10, |_, _| Room::<()>::Until(10)).is_empty());
        t.unblock(1);
        assert!(
            t.take(10, |_, _| Room::Take(())).is_empty(),
            "not released by a place"
        );
        t.promote(10);
        assert!(t.take(10, |_, _| Room::<()>::Full).is_empty());
        t.unblock(1);
        assert_eq!(ids(&t.take(10, |_, _| Room::Take(()))), ["a1"]);
    }
}
