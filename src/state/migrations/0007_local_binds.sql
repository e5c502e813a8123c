-- Binds made here (binds.local.enabled): 3PID (normalised) -> Matrix ID. Every change is
-- also written to the change feed, numbered: `seq` is the number of the last change.
CREATE TABLE local_binds (
    medium     TEXT NOT NULL,
    address    TEXT NOT NULL,
    mxid       TEXT NOT NULL,
    ts         BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after  BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX local_binds_by_mxid ON local_binds (mxid);
