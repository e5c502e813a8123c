-- What was imported once from another server's database (mxisd's or ma1sd's pending
-- invites): a name per import, so that no start imports it twice, whichever instance
-- starts first.
CREATE TABLE imports (
    name        TEXT PRIMARY KEY NOT NULL,
    imported_ts BIGINT NOT NULL,
    count       BIGINT NOT NULL
);
