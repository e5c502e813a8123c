//! What the delivery queue (`queue.rs`) carries: one `Delivery` per kind of work, each a
//! struct of the fields its delivery needs. A queue row holds it as (kind, payload): the
//! kind is the variant's name (serde's tag), the payload its fields as JSON. This file is
//! the only place that turns one into the other.
//!
//! Every instance sharing the queue reads these rows, older and newer builds alike during
//! a rolling upgrade, and rows outlive the build that wrote them: a kind is never renamed,
//! a field never renamed nor retyped, a new field comes with a default. Fields a build
//! does not know are ignored (a newer build may add some). A kind a build does not know is
//! never claimed by it (claims ask for a `DeliveryKind`): it waits for an instance that
//! knows it.

use super::StateError;
use crate::threepid::Medium;
use crate::user_id::UserId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A piece of work delivered at least once, by whichever instance claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload")]
pub enum Delivery {
    #[serde(rename = "invite-mail")]
    InviteMail(InviteMail),
    #[serde(rename = "onbind")]
    Onbind(Onbind),
    #[serde(rename = "peer-push")]
    PeerPush(PeerPushItem),
}

/// An invite's mail: sent to `address` unless the invite of `token` ended meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteMail {
    pub address: String,
    pub token: String,
    /// The mail's placeholders (mxisd's names), fixed when the invite was stored.
    pub values: BTreeMap<String, String>,
}

/// The call that tells `mxid`'s homeserver about the live invites of (medium, address),
/// now bound to `mxid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Onbind {
    pub medium: Medium,
    pub address: String,
    pub mxid: UserId,
}

/// A push of our hashes to the peer of that name (`lookup.peers`, MSC4004): its pepper
/// fetched, our listing hashed with it, sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPushItem {
    pub peer: String,
}

/// The kinds of `Delivery`, which claims ask for (each delivered by its own job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    InviteMail,
    Onbind,
    PeerPush,
}

impl DeliveryKind {
    /// The stored kind: the variant's serde name (a test keeps them equal).
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::InviteMail => "invite-mail",
            DeliveryKind::Onbind => "onbind",
            DeliveryKind::PeerPush => "peer-push",
        }
    }
}

impl fmt::Display for DeliveryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Delivery {
    pub fn kind(&self) -> DeliveryKind {
        match self {
            Delivery::InviteMail(_) => DeliveryKind::InviteMail,
            Delivery::Onbind(_) => DeliveryKind::Onbind,
            Delivery::PeerPush(_) => DeliveryKind::PeerPush,
        }
    }

    /// (kind, payload) as a queue row holds them. The payload's keys are sorted (serde_json
    /// maps), as the first builds wrote them, so that equal deliveries are equal text.
    pub(super) fn to_stored(&self) -> Result<(&'static str, String), StateError> {
        let tagged = serde_json::to_value(self).map_err(|e| StateError::Io(e.into()))?;
        Ok((self.kind().as_str(), tagged["payload"].to_string()))
    }

    /// The delivery a queue row of `kind` holds; an error if its payload is not one of
    /// that kind (or the kind is not one of ours).
    pub(super) fn from_stored(kind: &str, payload: &str) -> Result<Delivery, serde_json::Error> {
        let payload: serde_json::Value = serde_json::from_str(payload)?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "payload": payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> Delivery {
        Delivery::InviteMail(InviteMail {
            address: "bob@example.net".into(),
            token: "tok".into(),
            values: BTreeMap::from([
                ("ROOM_NAME".to_owned(), "Tea".to_owned()),
                ("INVITE_TOKEN".to_owned(), "tok".to_owned()),
            ]),
        })
    }

    fn onbind() -> Delivery {
        Delivery::Onbind(Onbind {
            medium: Medium::Email,
            address: "bob@example.net".into(),
            mxid: UserId::parse("@bob:example.net").unwrap(),
        })
    }

    /// The rows the first builds wrote (`json!` objects, keys sorted) are written and read
    /// the same: an item queued before an upgrade is delivered after it, and the onbind
    /// already queued is found equal (not queued twice).
    #[test]
    fn rows_keep_the_first_builds_shape() {
        let rows = [
            (
                mail(),
                "invite-mail",
                r#"{"address":"bob@example.net","token":"tok","values":{"INVITE_TOKEN":"tok","ROOM_NAME":"Tea"}}"#,
            ),
            (
                onbind(),
                "onbind",
                r#"{"address":"bob@example.net","medium":"email","mxid":"@bob:example.net"}"#,
            ),
        ];
        for (delivery, kind, payload) in rows {
            assert_eq!(delivery.to_stored().unwrap(), (kind, payload.to_owned()));
            assert_eq!(Delivery::from_stored(kind, payload).unwrap(), delivery);
            assert_eq!(delivery.kind().as_str(), kind);
        }
    }

    #[test]
    fn fields_of_newer_builds_are_ignored_and_a_missing_one_is_an_error() {
        let newer = r#"{"medium":"email","address":"a@b.c","mxid":"@a:b.c","via":"x"}"#;
        assert!(matches!(
            Delivery::from_stored("onbind", newer),
            Ok(Delivery::Onbind(_))
        ));
        for (kind, payload) in [
            ("onbind", r#"{"medium":"email","address":"a@b.c"}"#),
            (
                "onbind",
                r#"{"medium":"fax","address":"a@b.c","mxid":"@a:b.c"}"#,
            ),
            (
                "invite-mail",
                r#"{"address":"a@b.c","token":"t","values":{"A":1}}"#,
            ),
            ("invite-mail", "not JSON"),
            ("future-kind", "{}"),
        ] {
            assert!(Delivery::from_stored(kind, payload).is_err(), "{payload}");
        }
    }
}
