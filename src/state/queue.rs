//! `delivery_queue`: work delivered at least once (invite callbacks, mails), whichever
//! instance takes it. A claim hands due items to one instance for a lease; the claimer
//! completes an item (deleted) or puts it back for later; a lease that ran out (the
//! claimer died) makes the item claimable again. Consumers make delivery idempotent.
//!
//! Callers see only `Delivery` values (`delivery.rs`): `queue_delivery`,
//! `is_delivery_queued`, `claim_deliveries`, `delivered`, `retry_delivery_at`. Below them,
//! private to this file, the rows' (kind, payload) text (`enqueue`, `claim`, ...).

use super::delivery::{Delivery, DeliveryKind};
use super::dialect::{Conn, Kind, Row};
use super::{State, StateError};
use std::time::Duration;

/// A claimed row, as stored.
#[derive(Debug)]
struct QueueItem {
    id: String,
    kind: String,
    payload: String,
    /// Claims so far, this one included.
    attempts: i64,
    /// This claim (instance and a nonce): only its holder may put the item back.
    claim: String,
}

/// A delivery claimed for a lease: what to deliver, and the claim that holds it.
#[derive(Debug)]
pub struct Claimed {
    pub delivery: Delivery,
    item: QueueItem,
}

impl Claimed {
    /// The queue item's id, for the log.
    pub fn id(&self) -> &str {
        &self.item.id
    }

    /// Claims so far, this one included.
    pub fn attempts(&self) -> i64 {
        self.item.attempts
    }

    /// How long to wait before the next attempt, in ms: `first` after the first, doubled
    /// after each one since, never more than `max`.
    pub fn backoff_ms(&self, first: Duration, max: Duration) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let shift = (self.attempts() - 1).clamp(0, 20) as u32;
        ms(first).saturating_mul(1 << shift).min(ms(max))
    }
}

impl State {
    /// Queues `delivery`, due at `due_ms`; its id.
    pub fn queue_delivery(&self, delivery: &Delivery, due_ms: i64) -> Result<String, StateError> {
        let (kind, payload) = delivery.to_stored()?;
        self.enqueue(kind, &payload, due_ms)
    }

    /// Whether `delivery` is queued (not delivered yet).
    pub fn is_delivery_queued(&self, delivery: &Delivery) -> Result<bool, StateError> {
        let (kind, payload) = delivery.to_stored()?;
        self.is_queued(kind, &payload)
    }

    /// Up to `limit` due deliveries of `kind`, claimed for `lease` (as `claim`). An item
    /// of the kind whose payload this build cannot read is ended here, in the log: no
    /// attempt can deliver it. Items of kinds this build does not know are never claimed.
    pub fn claim_deliveries(
        &self,
        kind: DeliveryKind,
        limit: i64,
        lease: Duration,
        now_ms: i64,
    ) -> Result<Vec<Claimed>, StateError> {
        let mut claimed = Vec::new();
        for item in self.claim(kind.as_str(), limit, lease, now_ms)? {
            match Delivery::from_stored(&item.kind, &item.payload) {
                Ok(delivery) => claimed.push(Claimed { delivery, item }),
                Err(e) => {
                    log::error!(
                        "{} {} (attempt {}): unreadable payload ({e}); not tried again",
                        item.kind,
                        item.id,
                        item.attempts
                    );
                    self.complete(&item.id)?;
                }
            }
        }
        Ok(claimed)
    }

    /// `claimed` was delivered (or can never be): gone.
    pub fn delivered(&self, claimed: &Claimed) -> Result<(), StateError> {
        self.complete(&claimed.item.id)
    }

    /// `claimed` failed: due again at `due_ms` (as `retry_at`); whether it still held it.
    pub fn retry_delivery_at(&self, claimed: &Claimed, due_ms: i64) -> Result<bool, StateError> {
        self.retry_at(&claimed.item, due_ms)
    }

    /// Queues `payload` under `kind`, due at `due_ms`; its id.
    fn enqueue(&self, kind: &str, payload: &str, due_ms: i64) -> Result<String, StateError> {
        let id = new_item_id()?;
        self.autocommit(|c| insert_item(c, &id, kind, payload, crate::now_ms(), due_ms))?;
        Ok(id)
    }

    /// Up to `limit` items of `kind` due at `now_ms` and not held by anyone, claimed for
    /// `lease`. PostgreSQL skips rows another claim is taking; SQLite has one writer at a
    /// time. Leases are in the instances' own clocks: keep them in step (NTP).
    fn claim(
        &self,
        kind: &str,
        limit: i64,
        lease: Duration,
        now_ms: i64,
    ) -> Result<Vec<QueueItem>, StateError> {
        let skip_locked = match self.db.kind() {
            Kind::Postgres => "FOR UPDATE SKIP LOCKED",
            Kind::Sqlite => "",
        };
        let sql = format!(
            "UPDATE delivery_queue
             SET claimed_by = $1, claimed_until = $2, attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM delivery_queue
                 WHERE kind = $3 AND next_attempt_ts <= $4
                   AND (claimed_until IS NULL OR claimed_until <= $4)
                 ORDER BY next_attempt_ts LIMIT $5 {skip_locked})
             RETURNING id, kind, payload, attempts, claimed_by"
        );
        let until = now_ms.saturating_add(lease.as_millis() as i64);
        let claim = self.new_claim()?;
        self.transaction(|c| {
            c.query(
                &sql,
                &[
                    claim.as_str().into(),
                    until.into(),
                    kind.into(),
                    now_ms.into(),
                    limit.into(),
                ],
            )?
            .iter()
            .map(item)
            .collect()
        })
    }

    /// The item was delivered: gone, whoever holds it now.
    fn complete(&self, id: &str) -> Result<(), StateError> {
        self.autocommit(|c| c.execute("DELETE FROM delivery_queue WHERE id = $1", &[id.into()]))?;
        Ok(())
    }

    /// Delivery failed: due again at `due_ms`, free for anyone then. Only while `item`'s
    /// claim still holds it (its lease may have run out and another claim taken it);
    /// whether it did.
    fn retry_at(&self, item: &QueueItem, due_ms: i64) -> Result<bool, StateError> {
        self.autocommit(|c| {
            Ok(c.execute(
                "UPDATE delivery_queue
                 SET next_attempt_ts = $1, claimed_by = NULL, claimed_until = NULL
                 WHERE id = $2 AND claimed_by = $3",
                &[
                    due_ms.into(),
                    item.id.as_str().into(),
                    item.claim.as_str().into(),
                ],
            )? > 0)
        })
    }

    /// Whether an item of `kind` with exactly `payload` is queued (not delivered yet).
    fn is_queued(&self, kind: &str, payload: &str) -> Result<bool, StateError> {
        self.autocommit(|c| {
            Ok(!c
                .query(
                    "SELECT 1 FROM delivery_queue WHERE kind = $1 AND payload = $2",
                    &[kind.into(), payload.into()],
                )?
                .is_empty())
        })
    }
}

impl State {
    /// A claim of this instance: its id and a nonce, so that two claims of one instance
    /// (a lease that ran out, claimed again) are told apart.
    fn new_claim(&self) -> Result<String, StateError> {
        let nonce = crate::crypto::random::string_from(crate::crypto::random::ALPHANUMERIC, 12)
            .map_err(StateError::Io)?;
        Ok(format!("{} {nonce}", self.instance))
    }
}

/// A new queue item's id.
pub(super) fn new_item_id() -> Result<String, StateError> {
    crate::crypto::random::string_from(crate::crypto::random::ALPHANUMERIC, 24)
        .map_err(StateError::Io)
}

/// Inserts a queue item inside `c`'s transaction (with the data it is about).
pub(super) fn insert_item(
    c: &mut dyn Conn,
    id: &str,
    kind: &str,
    payload: &str,
    now_ms: i64,
    due_ms: i64,
) -> Result<(), StateError> {
    c.execute(
        "INSERT INTO delivery_queue (id, kind, payload, created_ts, next_attempt_ts)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            id.into(),
            kind.into(),
            payload.into(),
            now_ms.into(),
            due_ms.into(),
        ],
    )?;
    Ok(())
}

fn item(r: &Row) -> Result<QueueItem, StateError> {
    Ok(QueueItem {
        id: r.text(0)?,
        kind: r.text(1)?,
        payload: r.text(2)?,
        attempts: r.int(3)?,
        claim: r.text(4)?,
    })
}

/// What is queued of one kind: how many items, and when the oldest was queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub kind: String,
    pub items: i64,
    pub oldest_ms: i64,
}

impl State {
    /// The delivery queue's items by kind (not delivered yet, claimed or not).
    pub fn delivery_queue_depth(&self) -> Result<Vec<QueueDepth>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT kind, COUNT(*), MIN(created_ts) FROM delivery_queue GROUP BY kind ORDER BY kind",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(QueueDepth {
                    kind: r.text(0)?,
                    items: r.int(1)?,
                    oldest_ms: r.int(2)?,
                })
            })
            .collect()
        })
    }
}
