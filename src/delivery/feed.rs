//! The delivery schedule's feed from the change source, in logical
//! replication mode (where it replaces the scheduler's own LISTEN): the
//! deliveries that became pending, as hints. The daemon makes one `Feed`
//! and hands it to both sides; the scheduler subscribes each time it
//! starts, so a restarted scheduler simply subscribes again. A subscriber
//! that falls behind (more than [`CAPACITY`] hints) is told it lagged and
//! reads the outbox in full, as an overflow does in notify mode.

use tokio::sync::broadcast;

/// Hints buffered for a subscriber that is behind.
pub const CAPACITY: usize = 65_536;

/// A delivery to place in the schedule: its id, webhook and due time (ms
/// since the epoch). A hint only: the lease decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub id: String,
    pub webhook_id: i64,
    pub due_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Hint(Hint),
    /// Hints may have been missed (the stream restarted from its slot
    /// after a gap): read the pending deliveries in full.
    Resync,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Feed(broadcast::Sender<Item>);

impl Default for Feed {
    fn default() -> Feed {
        Feed(broadcast::channel(CAPACITY).0)
    }
}

impl Feed {
    /// Sends to every subscriber (none: dropped, as the scheduler reads the
    /// outbox in full when it starts).
    pub fn send(&self, item: Item) {
        let _ = self.0.send(item);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Item> {
        self.0.subscribe()
    }
}
