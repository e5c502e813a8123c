//! `invites`: invites by e-mail until they are delivered (onbind) or expire, each with its
//! ephemeral key. The invite and the mail that announces it are written in one transaction:
//! the mail goes through the delivery queue, so it is sent at least once whatever happens
//! to this instance.

use super::dialect::Row;
use super::queue::{insert_item, new_item_id};
use super::{State, StateError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite<'a> {
    pub token: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    /// What the homeserver sent (JSON), for templates.
    pub fields: &'a str,
    pub ephemeral_public_key: &'a str,
    pub server_key_id: &'a str,
    pub now_ms: i64,
    pub expires_ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub token: String,
    pub medium: String,
    pub address: String,
    pub room_id: String,
    pub sender: String,
    pub fields: String,
    pub server_key_id: String,
}

impl State {
    /// Stores an invite and queues its mail (`mail_kind`, `mail_payload`); the queue item's id.
    pub fn add_invite(
        &self,
        invite: &NewInvite<'_>,
        mail_kind: &str,
        mail_payload: &str,
    ) -> Result<String, StateError> {
        let id = new_item_id()?;
        self.write(|c| {
            c.execute(
                "INSERT INTO invites (token, medium, address, room_id, sender, fields,
                 ephemeral_public_key, server_key_id, created_ts, expires_ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    invite.token.into(),
                    invite.medium.into(),
                    invite.address.into(),
                    invite.room_id.into(),
                    invite.sender.into(),
                    invite.fields.into(),
                    invite.ephemeral_public_key.into(),
                    invite.server_key_id.into(),
                    invite.now_ms.into(),
                    invite.expires_ts.into(),
                ],
            )?;
            insert_item(
                c,
                &id,
                mail_kind,
                mail_payload,
                invite.now_ms,
                invite.now_ms,
            )
        })?;
        Ok(id)
    }

    /// A live invite by its token.
    pub fn invite(&self, token: &str, now_ms: i64) -> Result<Option<InviteRow>, StateError> {
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM invites
                     WHERE token = $1 AND ended_ts IS NULL AND expires_ts > $2"
                ),
                &[token.into(), now_ms.into()],
            )?
            .first()
            .map(invite_row)
            .transpose()
        })
    }

    /// The live invites of (medium, address).
    pub fn live_invites(
        &self,
        medium: &str,
        address: &str,
        now_ms: i64,
    ) -> Result<Vec<InviteRow>, StateError> {
        self.read(|c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM invites WHERE medium = $1 AND address = $2
                     AND ended_ts IS NULL AND expires_ts > $3 ORDER BY created_ts"
                ),
                &[medium.into(), address.into(), now_ms.into()],
            )?
            .iter()
            .map(invite_row)
            .collect()
        })
    }

    /// The addresses live invites wait for, each once.
    pub fn invited_addresses(&self, now_ms: i64) -> Result<Vec<(String, String)>, StateError> {
        self.read(|c| {
            c.query(
                "SELECT DISTINCT medium, address FROM invites
                 WHERE ended_ts IS NULL AND expires_ts > $1",
                &[now_ms.into()],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect()
        })
    }

    /// Ends invites (delivered): their ephemeral keys stop being valid.
    pub fn end_invites(&self, tokens: &[String], now_ms: i64) -> Result<(), StateError> {
        self.write(|c| {
            for token in tokens {
                c.execute(
                    "UPDATE invites SET ended_ts = $1 WHERE token = $2 AND ended_ts IS NULL",
                    &[now_ms.into(), token.as_str().into()],
                )?;
            }
            Ok(())
        })
    }

    /// Whether `public_key` (URL-safe unpadded base64) is the ephemeral key of a live invite.
    pub fn invite_key_is_live(&self, public_key: &str, now_ms: i64) -> Result<bool, StateError> {
        self.read(|c| {
            Ok(!c
                .query(
                    "SELECT 1 FROM invites WHERE ephemeral_public_key = $1
                     AND ended_ts IS NULL AND expires_ts > $2",
                    &[public_key.into(), now_ms.into()],
                )?
                .is_empty())
        })
    }
}

/// The columns every invite query selects, in `invite_row`'s order.
const COLUMNS: &str = "token, medium, address, room_id, sender, fields, server_key_id";

fn invite_row(r: &Row) -> Result<InviteRow, StateError> {
    Ok(InviteRow {
        token: r.text(0)?,
        medium: r.text(1)?,
        address: r.text(2)?,
        room_id: r.text(3)?,
        sender: r.text(4)?,
        fields: r.text(5)?,
        server_key_id: r.text(6)?,
    })
}
