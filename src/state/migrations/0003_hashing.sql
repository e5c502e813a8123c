-- The pepper of v2 hashed lookups: one row, kept across restarts.
CREATE TABLE hashing_metadata (
    id            BIGINT PRIMARY KEY CHECK (id = 1),
    lookup_pepper TEXT NOT NULL
);
