//! One attempt of one delivery: look the webhook up, build the body its
//! format asks for, sign it, send, judge the answer, and decide the
//! delivery's next state. The stages only decide; [`outcome`] turns the
//! decision into the outcome to record, in one place.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};

use super::Scheduler;
use super::clock::Clock;
use crate::delivery::client::{self, AttemptError, Response};
use crate::delivery::formats::{self, discord};
use crate::delivery::retry::{Failure, parse_retry_after};
use crate::delivery::signing::{Keys, SignedHeaders, sign};
use crate::redact;
use crate::registry::model::{Format, Webhook};
use crate::store::deliveries::{Attempt, Claimed, ErrorKind, Outcome, Status, Unreadable};

/// A delivery never attempted and younger than this waits for its webhook
/// to reach the registry, rather than failing.
const YOUNG: TimeDelta = TimeDelta::seconds(60);
/// How often such a delivery looks again.
const YOUNG_RECHECK: TimeDelta = TimeDelta::seconds(2);

const INACTIVE: &str = "the webhook is disabled, deleted, invalid or over its site's limit; replay the delivery once it is active";
const NO_SECRET: &str = "the webhook has no active signing secret";

/// What becomes of a delivery this time.
enum Verdict {
    /// Not sent: the webhook may not have reached the registry yet.
    Wait { until: DateTime<Utc> },
    /// Not sent, and given up with this error.
    GiveUp(String),
    /// Sent, with this answer.
    Sent(Sent),
}

/// A request made, and what came of it.
struct Sent {
    started_at: DateTime<Utc>,
    duration: Duration,
    status_code: Option<i32>,
    snippet: Option<String>,
    answer: Answer,
}

/// A request ready to send.
struct Request {
    /// The webhook as the registry had it: URL, format, own headers.
    webhook: Arc<Webhook>,
    headers: SignedHeaders,
    body: Bytes,
}

enum Answer {
    /// 2xx, at this time.
    Delivered(DateTime<Utc>),
    /// The hook is gone for good (a 410, or a chat service saying its hook
    /// was revoked or deleted): failed, and the webhook disabled.
    Revoked {
        kind: ErrorKind,
        error: String,
        reason: String,
    },
    /// Anything else: retried on schedule, or failed when it is spent.
    Failed {
        kind: ErrorKind,
        message: String,
        failure: Failure,
        retry_after: Option<Duration>,
    },
}

impl Scheduler {
    /// One attempt of one delivery, as an outcome to record.
    pub(super) async fn attempt(&self, clock: &Clock, delivery: Claimed) -> Outcome {
        let now = clock.now();
        metrics::histogram!("plausible_webhooks_delivery_lag_seconds").record(
            (now - delivery.next_attempt_at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64(),
        );
        let verdict = match self.prepare(&delivery, now) {
            Ok(request) => {
                let result = self
                    .client
                    .post(
                        &request.webhook.url,
                        &request.headers,
                        &request.webhook.headers,
                        request.body.clone(),
                    )
                    .await;
                Verdict::Sent(judge(result, &request, now, clock))
            }
            Err(verdict) => verdict,
        };
        let retry_at = self.retry_at(&delivery, &verdict, clock);
        outcome(&delivery, verdict, retry_at, now)
    }

    /// The request to make (the webhook's URL, the body its format asks
    /// for, signed), or why none is made.
    fn prepare(&self, delivery: &Claimed, now: DateTime<Utc>) -> Result<Request, Verdict> {
        let Some(webhook) = self.registry.webhook(delivery.webhook_id) else {
            // A webhook created a moment ago may not have reached the
            // registry yet: a young delivery never tried waits a little.
            if delivery.attempts == 0 && now - delivery.inserted_at < YOUNG {
                return Err(Verdict::Wait {
                    until: now + YOUNG_RECHECK,
                });
            }
            return Err(Verdict::GiveUp(INACTIVE.into()));
        };
        let body = body(&webhook, delivery).map_err(Verdict::GiveUp)?;
        // The signature is over the bytes sent.
        let headers = sign(&delivery.id, now, &body, Keys::of(&webhook))
            .ok_or_else(|| Verdict::GiveUp(NO_SECRET.into()))?;
        Ok(Request {
            webhook,
            headers,
            body,
        })
    }

    /// When a failed request is tried again, if the schedule allows.
    fn retry_at(
        &self,
        delivery: &Claimed,
        verdict: &Verdict,
        clock: &Clock,
    ) -> Option<DateTime<Utc>> {
        let Verdict::Sent(Sent {
            answer:
                Answer::Failed {
                    failure,
                    retry_after,
                    ..
                },
            ..
        }) = verdict
        else {
            return None;
        };
        let number = delivery.attempts + 1;
        let wait = self.retry.next_wait(
            number as u32,
            *failure,
            *retry_after,
            jitter(&delivery.id, number),
        )?;
        Some(clock.now() + TimeDelta::from_std(wait).unwrap_or_default())
    }
}

/// The body sent: the stored payload for `standard`, a chat message built
/// from it now for `slack` and `discord` (the outbox keeps one canonical
/// body; see ARCHITECTURE.md).
fn body(webhook: &Webhook, delivery: &Claimed) -> Result<Bytes, String> {
    formats::render(webhook.format, &delivery.payload).map_err(|e| e.to_string())
}

/// Judges a request's result.
fn judge(
    result: Result<Response, AttemptError>,
    request: &Request,
    started_at: DateTime<Utc>,
    clock: &Clock,
) -> Sent {
    let duration = match &result {
        Ok(response) => response.duration,
        Err(e) => e.duration,
    };
    metrics::histogram!("plausible_webhooks_delivery_attempt_duration_seconds")
        .record(duration.as_secs_f64());
    let sent = |status_code, snippet, answer| Sent {
        started_at,
        duration,
        status_code,
        snippet,
        answer,
    };
    let response = match result {
        Ok(r) if (100..=599).contains(&r.status) => r,
        Ok(r) => {
            return sent(
                None,
                None,
                failed(
                    ErrorKind::Protocol,
                    format!("invalid HTTP status {}", r.status),
                    Failure::Other,
                ),
            );
        }
        Err(e) => {
            let failure = if e.kind == client::ErrorKind::Timeout {
                Failure::Timeout
            } else {
                Failure::Other
            };
            // A library's error may quote the URL: shown as redacted.
            let message = redact::in_text(
                &e.message,
                request.webhook.url.as_str(),
                request.webhook.format.url_is_secret(),
            );
            return sent(None, None, failed(kind_of(e.kind), message, failure));
        }
    };
    let status = response.status;
    let gone = revoked(request.webhook.format, &response);
    let answer = match (status, gone) {
        (200..=299, _) => Answer::Delivered(clock.now()),
        (_, Some(revoked)) => revoked,
        _ => {
            let (kind, message) = match status {
                300..=399 => (
                    ErrorKind::Redirect,
                    format!("HTTP {status}: redirects are not followed"),
                ),
                429 => (ErrorKind::RateLimited, format!("HTTP {status}")),
                _ => (ErrorKind::Status, format!("HTTP {status}")),
            };
            Answer::Failed {
                kind,
                message,
                failure: if status == 429 {
                    Failure::TooManyRequests
                } else {
                    Failure::Other
                },
                retry_after: retry_after(request.webhook.format, &response, clock.now()),
            }
        }
    };
    sent(Some(i32::from(status)), Some(response.snippet), answer)
}

/// Whether the answer says the hook is gone for good: a chat service's
/// revoked or deleted hook, or a 410 from any receiver.
fn revoked(format: Format, response: &Response) -> Option<Answer> {
    if let Some(r) = formats::revoked(format, response.status, &response.snippet) {
        return Some(Answer::Revoked {
            kind: ErrorKind::Revoked,
            error: r.error,
            reason: r.reason,
        });
    }
    (response.status == 410).then(|| Answer::Revoked {
        kind: ErrorKind::Gone,
        error: "the endpoint answered 410 Gone".into(),
        reason: "the endpoint answered 410 Gone, asking not to be called again".into(),
    })
}

/// The wait the answer asks for: `Retry-After`, and for Discord also the
/// JSON body's `retry_after` and `X-RateLimit-Reset-After`; the longest
/// of those given.
fn retry_after(format: Format, response: &Response, now: DateTime<Utc>) -> Option<Duration> {
    let header = response
        .retry_after
        .as_deref()
        .and_then(|v| parse_retry_after(v, now));
    if format != Format::Discord {
        return header;
    }
    let body = (response.status == 429)
        .then(|| discord::retry_after(&response.snippet))
        .flatten();
    let reset = response
        .reset_after
        .as_deref()
        .and_then(discord::reset_after)
        .filter(|_| response.status == 429);
    [header, body, reset].into_iter().flatten().max()
}

fn failed(kind: ErrorKind, message: String, failure: Failure) -> Answer {
    Answer::Failed {
        kind,
        message,
        failure,
        retry_after: None,
    }
}

/// The store's kind for a failure without a response.
fn kind_of(kind: client::ErrorKind) -> ErrorKind {
    match kind {
        client::ErrorKind::Blocked => ErrorKind::Blocked,
        client::ErrorKind::Dns => ErrorKind::Dns,
        client::ErrorKind::Connect => ErrorKind::Connect,
        client::ErrorKind::Timeout => ErrorKind::Timeout,
        client::ErrorKind::Protocol => ErrorKind::Protocol,
    }
}

/// The delivery's new state, from what was decided: the one place an
/// attempt's outcome is built.
fn outcome(
    delivery: &Claimed,
    verdict: Verdict,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Outcome {
    let mut outcome = Outcome {
        id: delivery.id.clone(),
        webhook_id: delivery.webhook_id,
        lease_token: delivery.lease_token.clone(),
        status: Status::Failed,
        requested: false,
        next_attempt_at: None,
        attempted_at: now,
        status_code: None,
        error: None,
        delivered_at: None,
        attempt: None,
        disable: None,
    };
    let sent = match verdict {
        Verdict::Wait { until } => {
            outcome.status = Status::Pending;
            outcome.next_attempt_at = Some(until);
            outcome.attempted_at = delivery.last_attempt_at.unwrap_or(now);
            return outcome;
        }
        Verdict::GiveUp(error) => {
            outcome.error = Some(error);
            return outcome;
        }
        Verdict::Sent(sent) => sent,
    };
    outcome.requested = true;
    outcome.status_code = sent.status_code;
    let mut attempt = Attempt {
        started_at: sent.started_at,
        duration_ms: millis(sent.duration),
        status_code: sent.status_code,
        error_kind: None,
        error: None,
        snippet: sent.snippet,
    };
    let result = match sent.answer {
        Answer::Delivered(at) => {
            crate::telemetry::event_delivered(delivery.triggered_at, at);
            outcome.status = Status::Succeeded;
            outcome.delivered_at = Some(at);
            "succeeded"
        }
        Answer::Revoked {
            kind,
            error,
            reason,
        } => {
            attempt.error_kind = Some(kind);
            attempt.error = Some(error.clone());
            outcome.error = Some(error);
            outcome.disable = Some(reason);
            kind.as_str()
        }
        Answer::Failed { kind, message, .. } => {
            attempt.error_kind = Some(kind);
            attempt.error = Some(message.clone());
            outcome.error = Some(message);
            match retry_at {
                Some(at) => {
                    outcome.status = Status::Pending;
                    outcome.next_attempt_at = Some(at);
                    "retry"
                }
                None => "failed",
            }
        }
    };
    outcome.attempt = Some(attempt);
    metrics::counter!("plausible_webhooks_deliveries_total", "result" => result).increment(1);
    outcome
}

/// A leased delivery that cannot be read, failed with why.
pub(super) fn unreadable(delivery: Unreadable, now: DateTime<Utc>) -> Outcome {
    tracing::warn!(delivery_id = %delivery.id, problem = %delivery.problem, "failing a delivery that cannot be read");
    Outcome {
        id: delivery.id,
        webhook_id: delivery.webhook_id,
        lease_token: delivery.lease_token,
        status: Status::Failed,
        requested: false,
        next_attempt_at: None,
        attempted_at: now,
        status_code: None,
        error: Some(delivery.problem),
        delivered_at: None,
        attempt: None,
        disable: None,
    }
}

fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// A number in [0, 1), different for each attempt of each delivery.
fn jitter(id: &str, attempt: i32) -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    id.hash(&mut hasher);
    attempt.hash(&mut hasher);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
