-- The change feed of what instances serve from memory (local binds for the hash index):
-- every change gets the next number of `change_seq`, whose row lock serialises writers,
-- so numbers become visible in order and a reader polling "after n" misses none.
CREATE TABLE change_seq (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO change_seq (id, seq) VALUES (1, 0);
CREATE TABLE changes (
    seq        BIGINT PRIMARY KEY NOT NULL,
    topic      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
