//! The scheduler's in-memory schedule of pending deliveries: a timer heap of
//! when each is due, and the due ones queued per webhook and taken in turns.
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

    /// Moves the entries due at `now` to their webhook's queue.
    pub(super) fn promote(&mut self, now: i64) {
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
            if queue.len() == 1 && !self.blocked.contains(&webhook_id) {
                self.turns.push_back(webhook_id);
            }
        }
    }

    /// When the next entry falls due, if any.
    pub(super) fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((due, seq, id))) = self.timers.peek() {
            if self.entries.get(id).is_some_and(|e| e.seq == *seq) {
                return Some(*due);
            }
            self.timers.pop();
        }
        None
    }

    /// Takes up to `limit` due entries, one per webhook in turn. `room`
    /// is asked before each; when it has none (`None`), the webhook waits
    /// for [`Timeline::unblock`]. Taken entries stay out of the schedule
    /// until [`Timeline::finish`].
    pub(super) fn take<P>(
        &mut self,
        limit: usize,
        mut room: impl FnMut(i64) -> Option<P>,
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
            if queue.is_empty() {
                self.ready.remove(&webhook_id);
                continue;
            }
            let Some(permit) = room(webhook_id) else {
                self.blocked.insert(webhook_id);
                continue;
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
        assert_eq!(ids(&t.take(10, |_| Some(()))), ["a", "b"]);
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
        assert_eq!(ids(&t.take(4, |_| Some(()))), ["a1", "b1", "c1", "a2"]);
    }

    #[test]
    fn a_webhook_without_room_waits_for_unblock() {
        let mut t = Timeline::new(10);
        t.insert("a1", 1, 0);
        t.insert("a2", 1, 0);
        t.insert("b1", 2, 0);
        t.promote(0);
        let taken = t.take(10, |w| (w != 1).then_some(()));
        assert_eq!(ids(&taken), ["b1"]);
        assert!(t.take(10, |_| Some(())).is_empty());
        t.unblock(1);
        assert_eq!(ids(&t.take(10, |_| Some(()))), ["a1", "a2"]);
    }

    #[test]
    fn moving_an_entry_leaves_the_old_time_stale() {
        let mut t = Timeline::new(10);
        t.insert("a", 1, 10);
        t.insert("a", 1, 50);
        t.promote(20);
        assert!(t.take(10, |_| Some(())).is_empty());
        assert_eq!(t.next_due(), Some(50));
        t.promote(50);
        assert_eq!(ids(&t.take(10, |_| Some(()))), ["a"]);
    }

    #[test]
    fn a_taken_entry_is_not_scheduled_again_until_finished() {
        let mut t = Timeline::new(10);
        t.insert("a", 1, 0);
        t.promote(0);
        assert_eq!(t.take(10, |_| Some(())).len(), 1);
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
}
