-- The previous lookup pepper, answered for a grace period after a rotation (`hashing.pepper`).
ALTER TABLE hashing_metadata ADD COLUMN previous_pepper TEXT;
ALTER TABLE hashing_metadata ADD COLUMN rotated_ts BIGINT;
-- MSC4004: the last push of each trusted peer (`lookup.peers`) under each of our peppers;
-- a peer whose last push is older than its `expireAfter` is no longer served.
CREATE TABLE peer_pushes (
    peer      TEXT NOT NULL,
    pepper    TEXT NOT NULL,
    pushed_ts BIGINT NOT NULL,
    hashes    BIGINT NOT NULL,
    PRIMARY KEY (peer, pepper)
);
-- The hashes (under our pepper) of the addresses a peer holds, replaced by each of its pushes.
CREATE TABLE peer_hashes (
    hash   TEXT NOT NULL,
    pepper TEXT NOT NULL,
    peer   TEXT NOT NULL,
    PRIMARY KEY (hash, pepper, peer)
);
CREATE INDEX peer_hashes_by_peer ON peer_hashes (peer, pepper);
