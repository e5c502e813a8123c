-- Invites by e-mail (store-invite): until the address is bound and the invitee's
-- homeserver told (onbind), or the invite expires. The ephemeral key's public half is kept
-- here (its validity is the invite's); the private half only goes into the invite mail.
-- `server_key_id` is the long-term key in use when the invite was made, which signs its
-- onbind even after a rotation. `fields` holds what the homeserver sent, for templates.
CREATE TABLE invites (
    token                TEXT PRIMARY KEY NOT NULL,
    medium               TEXT NOT NULL,
    address              TEXT NOT NULL,
    room_id              TEXT NOT NULL,
    sender               TEXT NOT NULL,
    fields               TEXT NOT NULL,
    ephemeral_public_key TEXT NOT NULL,
    server_key_id        TEXT NOT NULL,
    created_ts           BIGINT NOT NULL,
    expires_ts           BIGINT NOT NULL,
    ended_ts             BIGINT
);
CREATE INDEX invites_by_address ON invites (medium, address);
CREATE INDEX invites_by_ephemeral_key ON invites (ephemeral_public_key);
