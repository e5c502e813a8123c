-- MSC4004 pushes too large for one request come in parts (mxisd's `mxisd.push_part`, see
-- the README's "Peers"): each part's hashes wait here until the push's last part, which
-- puts them in place of the peer's hashes in one transaction, so lookups never see half a
-- push. One push in parts at a time per peer and pepper; a first part starts it over.
CREATE TABLE peer_push_parts (
    peer       TEXT NOT NULL,
    pepper     TEXT NOT NULL,
    push       TEXT NOT NULL,
    next_part  BIGINT NOT NULL,
    started_ts BIGINT NOT NULL,
    PRIMARY KEY (peer, pepper)
);
CREATE TABLE peer_part_hashes (
    hash   TEXT NOT NULL,
    pepper TEXT NOT NULL,
    peer   TEXT NOT NULL,
    PRIMARY KEY (hash, pepper, peer)
);
CREATE INDEX peer_part_hashes_by_peer ON peer_part_hashes (peer, pepper);
