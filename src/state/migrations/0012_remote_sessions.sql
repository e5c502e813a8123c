-- Remote 3PID sessions (mxisd's seed 004): a session of ours continued on another identity
-- server on the user's behalf. One per session of ours, gone with it. `remote_secret` is
-- ours, made for that server (the user's own secret never leaves); `bind_mxid` is the user
-- bound here before the remote validated, bound there once it has.
CREATE TABLE remote_sessions (
    sid           TEXT PRIMARY KEY NOT NULL REFERENCES sessions (sid) ON DELETE CASCADE,
    server        TEXT NOT NULL,
    remote_sid    TEXT NOT NULL,
    remote_secret TEXT NOT NULL,
    created_ts    BIGINT NOT NULL,
    validated_ts  BIGINT,
    bind_mxid     TEXT,
    bound_ts      BIGINT
);
