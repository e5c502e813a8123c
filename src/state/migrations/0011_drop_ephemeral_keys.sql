-- Invites keep their own ephemeral keys (0008_invites); nothing ever wrote this table
-- after that, and no release had it.
DROP TABLE IF EXISTS ephemeral_public_keys;
