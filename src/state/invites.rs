//! `invites`: invites by e-mail until they are delivered (onbind) or expire, each with its
//! ephemeral key. The invite and the mail that announces it are written in one transaction:
//! the mail goes through the delivery queue, so it is sent at least once whatever happens
//! to this instance.

use super::delivery::{Delivery, InviteMail};
use super::dialect::{Kind, Row, Tx, Value};
use super::queue::{insert_item, new_item_id};
use super::{State, StateError};
use crate::threepid::Medium;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite<'a> {
    pub token: &'a str,
    pub medium: Medium,
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
    pub medium: Medium,
    pub address: String,
    pub room_id: String,
    pub sender: String,
    pub fields: String,
    pub server_key_id: String,
}

impl State {
    /// Stores an invite and queues its mail; the queue item's id.
    pub fn add_invite(
        &self,
        invite: &NewInvite<'_>,
        mail: InviteMail,
    ) -> Result<String, StateError> {
        let id = new_item_id()?;
        let (mail_kind, mail_payload) = Delivery::InviteMail(mail).to_stored()?;
        self.transaction(|c| {
            c.execute(
                "INSERT INTO invites (token, medium, address, room_id, sender, fields,
                 ephemeral_public_key, server_key_id, created_ts, expires_ts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    invite.token.into(),
                    invite.medium.as_str().into(),
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
                &mail_payload,
                invite.now_ms,
                invite.now_ms,
            )
        })?;
        Ok(id)
    }

    /// A live invite by its token.
    pub fn invite(&self, token: &str, now_ms: i64) -> Result<Option<InviteRow>, StateError> {
        self.autocommit(|c| {
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
        medium: Medium,
        address: &str,
        now_ms: i64,
    ) -> Result<Vec<InviteRow>, StateError> {
        self.autocommit(|c| {
            c.query(
                &format!(
                    "SELECT {COLUMNS} FROM invites WHERE medium = $1 AND address = $2
                     AND ended_ts IS NULL AND expires_ts > $3 ORDER BY created_ts"
                ),
                &[medium.as_str().into(), address.into(), now_ms.into()],
            )?
            .iter()
            .map(invite_row)
            .collect()
        })
    }

    /// The addresses live invites wait for, each once (a medium this version does not know,
    /// from an import, is left out: nothing could look it up).
    pub fn invited_addresses(&self, now_ms: i64) -> Result<Vec<(Medium, String)>, StateError> {
        self.autocommit(|c| {
            c.query(
                "SELECT DISTINCT medium, address FROM invites
                 WHERE ended_ts IS NULL AND expires_ts > $1",
                &[now_ms.into()],
            )?
            .iter()
            .filter_map(|r| match r.text(0).map(|m| Medium::parse(&m)) {
                Ok(Some(medium)) => Some(r.text(1).map(|address| (medium, address))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
        })
    }

    /// Ends invites (delivered): their ephemeral keys stop being valid.
    pub fn end_invites(&self, tokens: &[String], now_ms: i64) -> Result<(), StateError> {
        self.transaction(|c| {
            for token in tokens {
                c.execute(
                    "UPDATE invites SET ended_ts = $1 WHERE token = $2 AND ended_ts IS NULL",
                    &[now_ms.into(), token.as_str().into()],
                )?;
            }
            Ok(())
        })
    }

    /// Whether `public_key` (URL-safe unpadded base64) is the ephemeral key of a live
    /// invite. Reads only: the endpoint that asks is unauthenticated.
    pub fn ephemeral_key_is_valid(&self, public_key: &str) -> Result<bool, StateError> {
        if public_key.is_empty() {
            return Ok(false); // what invites imported from mxisd have: no ephemeral key
        }
        let now_ms = crate::now_ms();
        self.autocommit(|c| {
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
        medium: r.parsed(1, "invites.medium", Medium::parse)?,
        address: r.text(2)?,
        room_id: r.text(3)?,
        sender: r.text(4)?,
        fields: r.text(5)?,
        server_key_id: r.text(6)?,
    })
}

/// The `imports` name of mxisd's and ma1sd's pending invites.
const MXISD_INVITES: &str = "mxisd_invites";

impl State {
    /// Imports once the pending invites that mxisd or ma1sd left in this database (their
    /// table `invite_3pid`, when an operator points us at their SQLite file or PostgreSQL
    /// database): how many, or `None` when an earlier start did. They keep their tokens,
    /// rooms and senders, and get a full lifetime (`expires_ts`) from now, as mxisd kept
    /// no creation time. Their mails were sent by mxisd; their onbind is signed with
    /// `server_key_id` (mxisd's replies named its long-term key, which a taken-over key
    /// store keeps), and they have no ephemeral key.
    pub fn import_mxisd_invites(
        &self,
        server_key_id: &str,
        now_ms: i64,
        expires_ts: i64,
    ) -> Result<Option<u64>, StateError> {
        // The table the unqualified SELECT below reads, wherever the search path finds it.
        let exists = match self.db.kind() {
            Kind::Sqlite => {
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'invite_3pid'"
            }
            Kind::Postgres => "SELECT 1 WHERE to_regclass('invite_3pid') IS NOT NULL",
        };
        // Under the migration lock: instances starting together wait for the one importing
        // (however long it takes), then find the import recorded.
        self.run(Tx::Migrate, &mut |c| {
            let first = c.execute(
                "INSERT INTO imports (name, imported_ts, count) VALUES ($1, $2, 0)
                 ON CONFLICT (name) DO NOTHING",
                &[MXISD_INVITES.into(), now_ms.into()],
            )?;
            if first == 0 {
                return Ok(None);
            }
            if c.query(exists, &[])?.is_empty() {
                return Ok(Some(0));
            }
            // ORMLite quoted its names: `roomId` keeps its case on PostgreSQL.
            let rows = c.query(
                "SELECT token, sender, medium, address, \"roomId\", properties FROM invite_3pid",
                &[],
            )?;
            let mut count = 0;
            for r in &rows {
                let Some(invite) = mxisd_invite(r) else {
                    continue;
                };
                count += c.execute(
                    "INSERT INTO invites (token, medium, address, room_id, sender, fields,
                     ephemeral_public_key, server_key_id, created_ts, expires_ts)
                     VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $9)
                     ON CONFLICT (token) DO NOTHING",
                    &[
                        invite.token.as_str().into(),
                        invite.medium.as_str().into(),
                        invite.address.as_str().into(),
                        invite.room_id.as_str().into(),
                        invite.sender.as_str().into(),
                        invite.fields.as_str().into(),
                        server_key_id.into(),
                        now_ms.into(),
                        expires_ts.into(),
                    ],
                )?;
            }
            c.execute(
                "UPDATE imports SET count = $1 WHERE name = $2",
                &[(count as i64).into(), MXISD_INVITES.into()],
            )?;
            Ok(Some(count))
        })
    }
}

/// One of mxisd's invite rows, its address normalised as ours are; `None` (logged) for a
/// row we cannot take: another medium, or a value missing or not text (a row hand-edited
/// or damaged must not keep the server from starting).
fn mxisd_invite(r: &Row) -> Option<InviteRow> {
    let text = |i: usize| match r.0.get(i) {
        Some(Value::Text(t)) if !t.is_empty() => Some(t.clone()),
        _ => None,
    };
    let row = (text(0), text(1), text(2), text(3), text(4));
    let (Some(token), Some(sender), Some(medium), Some(raw_address), Some(room_id)) = row else {
        log::warn!("a pending invite of mxisd (invite_3pid) is not imported: a value is missing or not text");
        return None;
    };
    if Medium::parse(&medium.to_ascii_lowercase()) != Some(Medium::Email) {
        log::warn!(
            "mxisd's pending invite for a {medium} is not imported: only e-mail invites are"
        );
        return None;
    }
    let Some(address) = crate::threepid::email(&raw_address) else {
        log::warn!("a pending e-mail invite of mxisd is not imported: its address is not one");
        return None;
    };
    // Its properties: what the homeserver sent (a JSON object of strings), for templates.
    let fields = text(5)
        .filter(|p| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(p).is_ok())
        .unwrap_or_else(|| "{}".into());
    Some(InviteRow {
        token,
        medium: Medium::Email,
        address,
        room_id,
        sender,
        fields,
        server_key_id: String::new(),
    })
}
