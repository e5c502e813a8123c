-- 3PID validation sessions: one per (medium, address, client_secret) while it lives. The
-- address is normalised (e-mail case-folded, phone numbers E.164). Tokens are kept only as
-- SHA-256 hashes; every token issued for a session stays valid until it validates or
-- expires.
CREATE TABLE sessions (
    sid             TEXT PRIMARY KEY NOT NULL,
    medium          TEXT NOT NULL,
    address         TEXT NOT NULL,
    client_secret   TEXT NOT NULL,
    next_link       TEXT,
    send_attempt    BIGINT NOT NULL,
    created_ts      BIGINT NOT NULL,
    expires_ts      BIGINT NOT NULL,
    validated_ts    BIGINT,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    UNIQUE (medium, address, client_secret)
);
CREATE INDEX sessions_by_expiry ON sessions (expires_ts);
CREATE TABLE session_tokens (
    sid        TEXT NOT NULL REFERENCES sessions (sid) ON DELETE CASCADE,
    token_hash TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (sid, token_hash)
);
