-- v2 accounts: users who registered with an OpenID token from their homeserver, their
-- access tokens (only a SHA-256 hash is kept), and the terms URLs they accepted.
CREATE TABLE accounts (
    user_id    TEXT PRIMARY KEY NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES accounts (user_id),
    created_ts BIGINT NOT NULL
);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE TABLE accepted_terms_urls (
    user_id TEXT NOT NULL REFERENCES accounts (user_id),
    url     TEXT NOT NULL,
    PRIMARY KEY (user_id, url)
);
