//! A dedicated LISTEN connection, driven through `poll_message`, its
//! notifications forwarded on a bounded queue. The change stream and the
//! delivery scheduler each hold one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;

use super::{PgTarget, StoreError};

/// Notifications waiting to be applied; past this the queue overflows and
/// its owner reads what it follows in full instead.
const QUEUE: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub channel: String,
    pub payload: String,
}

pub(crate) struct Listener {
    /// Closes when the connection does.
    pub notifications: mpsc::Receiver<Notification>,
    overflow: Arc<AtomicBool>,
    // Dropping the client closes the connection.
    _client: tokio_postgres::Client,
}

impl Listener {
    /// Connects and LISTENs on `channels`. Notifications sent after this
    /// returns are all delivered (or the overflow flag is raised).
    pub async fn connect(pg: &PgTarget, channels: &[&str]) -> Result<Listener, StoreError> {
        let (client, mut connection) = pg.connect().await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let n = Notification {
                            channel: n.channel().to_string(),
                            payload: n.payload().to_string(),
                        };
                        match tx.try_send(n) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                flag.store(true, Ordering::Release);
                            }
                            // The session ended; so does this connection.
                            Err(mpsc::error::TrySendError::Closed(_)) => break,
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(notice = %notice.message(), "postgres notice");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "listening connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        for channel in channels {
            client
                .batch_execute(&format!("LISTEN {channel}"))
                .await
                .map_err(StoreError::Query)?;
        }
        Ok(Listener {
            notifications: rx,
            overflow,
            _client: client,
        })
    }

    /// True (once) if notifications were dropped since the last call.
    pub fn take_overflow(&self) -> bool {
        self.overflow.swap(false, Ordering::AcqRel)
    }
}
