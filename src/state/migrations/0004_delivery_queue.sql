-- Work to be delivered at least once (invite callbacks, mails): claimed by one instance at
-- a time for a lease; a lease that ran out is claimed again.
CREATE TABLE delivery_queue (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    next_attempt_ts BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    claimed_until   BIGINT
);
CREATE INDEX delivery_queue_due ON delivery_queue (kind, next_attempt_ts);
