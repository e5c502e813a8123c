-- Wrong tokens over a session's whole life (`failed_attempts` counts those since the last
-- code sent; this one is never reset), and the resend being sent: its `send_attempt`, the
-- hash of its token (which names the reservation) and until when it holds. A resend
-- changes nothing else until its notification is sent.
ALTER TABLE sessions ADD COLUMN lifetime_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN pending_attempt BIGINT;
ALTER TABLE sessions ADD COLUMN pending_token TEXT;
ALTER TABLE sessions ADD COLUMN pending_until BIGINT;
UPDATE sessions SET lifetime_failures = failed_attempts;
