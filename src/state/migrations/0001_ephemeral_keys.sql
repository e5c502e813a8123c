-- Ephemeral public keys handed out with e-mail invites (store-invite); answered by
-- GET /pubkey/ephemeral/isvalid. Stored in URL-safe unpadded base64, as the spec gives them.
CREATE TABLE ephemeral_public_keys (
    public_key  TEXT PRIMARY KEY NOT NULL,
    created_ts  BIGINT NOT NULL,
    verify_count BIGINT NOT NULL DEFAULT 0
);
