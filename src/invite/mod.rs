//! Invites by e-mail: Synapse calls `store-invite` when a member invites an address that
//! no Matrix ID has, puts the keys we answer in the room, and sends no mail itself: we do.
//! Each invite gets a token and an ephemeral ed25519 key; the mail carries a link to the
//! web client and a sign URL holding that key's private half (what matrix-js-sdk uses to
//! join). The invite and its mail are stored in one transaction and the mail is delivered
//! from the queue (`delivery.rs`), at once if it can be, retried with backoff if not.
//! Knows no HTTP.

mod delivery;

pub use delivery::{start, Host, Jobs, Outbound};

use crate::config::InviteConfig;
use crate::crypto::{b64, random};
use crate::notify::Notifier;
use crate::ratelimit::Buckets;
use crate::state::{DeliveryKind, InviteMail, NewInvite, State, StateError};
use crate::threepid::Medium;
use ed25519_dalek::SigningKey;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub struct Invites {
    cfg: InviteConfig,
    /// Wake the delivery jobs (`delivery.rs`), one per kind, when a request queues work.
    mail_job: crate::jobs::Waker,
    onbind_job: crate::jobs::Waker,
    /// The server is stopping (`Jobs::stop`): jobs end after the item in hand.
    stopping: Arc<AtomicBool>,
    notifier: Arc<Notifier>,
    /// `<publicUrl>`: where sign URLs and key validity URLs point.
    public_url: String,
    /// `api/v1` or `v2`: the key validity URLs' paths (v2 when v1 is off).
    key_api: &'static str,
    per_sender: Buckets,
    per_address: Buckets,
}

#[derive(Debug)]
pub enum InviteError {
    Limited(Duration),
    Random(std::io::Error),
    State(StateError),
}

impl fmt::Display for InviteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InviteError::Limited(w) => write!(f, "rate limited for {} ms", w.as_millis()),
            InviteError::Random(e) => write!(f, "no randomness: {e}"),
            InviteError::State(e) => e.fmt(f),
        }
    }
}

impl From<StateError> for InviteError {
    fn from(e: StateError) -> Self {
        InviteError::State(e)
    }
}

/// Longest `room_id` and `sender` store-invite keeps, in bytes (Matrix IDs are at most 255).
pub const ID_MAX: usize = 255;
/// Longest `room_avatar_url` store-invite keeps, in bytes.
pub const AVATAR_URL_MAX: usize = 1024;
/// Display fields (room name, alias, sender's name, room type) longer than this many
/// characters are cut in the mail, with an ellipsis.
pub const DISPLAY_MAX: usize = 255;

/// `text` cut to `DISPLAY_MAX` characters (on a character boundary), an ellipsis added
/// where it was cut.
fn display(text: &str) -> String {
    match text.char_indices().nth(DISPLAY_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// How store-invite keeps an optional field the spec or mxisd's templates know.
#[derive(Clone, Copy)]
enum Keep {
    /// Shown in the mail: cut to `DISPLAY_MAX` characters, with an ellipsis.
    Display,
    /// Kept up to `AVATAR_URL_MAX` bytes (a longer `room_avatar_url` is refused before).
    Url,
    /// Kept up to `ID_MAX` bytes, else left out (cutting would make it wrong).
    Id,
}

/// The optional fields store-invite keeps (the spec's, and what Synapse sent mxisd);
/// anything else a homeserver sends is ignored, never refused (Synapse adds fields over
/// time), and never stored.
const KEPT: [(&str, Keep); 9] = [
    ("room_alias", Keep::Display),
    ("room_avatar_url", Keep::Url),
    ("room_join_rules", Keep::Display),
    ("room_name", Keep::Display),
    ("room_type", Keep::Display),
    ("sender_display_name", Keep::Display),
    ("sender_avatar_url", Keep::Url),
    ("guest_access_token", Keep::Id),
    ("guest_user_id", Keep::Id),
];

/// A kept field whose value is neither a string nor null: its name.
#[derive(Debug, PartialEq, Eq)]
pub struct NotText(pub &'static str);

/// The optional fields of a store-invite request as they are kept, bounded: display
/// fields cut, an over-long URL or ID left out, null taken as absent.
pub fn kept_fields(params: &Map<String, Value>) -> Result<Map<String, Value>, NotText> {
    let mut kept = Map::new();
    for (name, keep) in KEPT {
        let text = match params.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(t)) => t,
            Some(_) => return Err(NotText(name)),
        };
        let value = match keep {
            Keep::Display => display(text),
            Keep::Url if text.len() <= AVATAR_URL_MAX => text.clone(),
            Keep::Id if text.len() <= ID_MAX => text.clone(),
            Keep::Url | Keep::Id => continue,
        };
        kept.insert(name.to_owned(), Value::String(value));
    }
    Ok(kept)
}

/// What store-invite was given, its address normalised.
pub struct StoreInvite<'a> {
    pub address: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    /// The optional fields as [`kept_fields`] keeps them (room name, alias, avatars,
    /// display names, ...).
    pub fields: &'a Map<String, Value>,
}

/// What store-invite answers.
pub struct Stored {
    pub token: String,
    /// URL-safe unpadded base64, as the spec gives ephemeral keys.
    pub ephemeral_public_key: String,
    pub display_name: String,
}

impl Invites {
    pub fn new(cfg: &InviteConfig, notifier: Arc<Notifier>, public_url: &str, v1: bool) -> Invites {
        Invites {
            mail_job: crate::jobs::Waker::new(),
            onbind_job: crate::jobs::Waker::new(),
            stopping: Arc::default(),
            per_sender: Buckets::new(cfg.per_sender.burst, cfg.per_sender.per_minute),
            per_address: Buckets::new(cfg.per_address.burst, cfg.per_address.per_minute),
            cfg: cfg.clone(),
            notifier,
            public_url: public_url.to_owned(),
            key_api: if v1 { "api/v1" } else { "v2" },
        }
    }

    /// Where a long-term key (`ephemeral` false) or an invite's key is checked.
    pub fn key_validity_url(&self, ephemeral: bool) -> String {
        let which = if ephemeral { "ephemeral/" } else { "" };
        format!(
            "{}/_matrix/identity/{}/pubkey/{which}isvalid",
            self.public_url, self.key_api
        )
    }

    /// Stores the invite and queues its mail.
    pub fn store(
        &self,
        state: &State,
        server_key_id: &str,
        r: &StoreInvite<'_>,
    ) -> Result<Stored, InviteError> {
        self.per_sender
            .try_take(r.sender)
            .map_err(InviteError::Limited)?;
        if let Err(wait) = self.per_address.try_take(r.address) {
            self.per_sender.refund(r.sender);
            return Err(InviteError::Limited(wait));
        }
        let token = random::string_from(random::ALPHANUMERIC, 32).map_err(InviteError::Random)?;
        let mut seed = [0u8; 32];
        random::fill(&mut seed).map_err(InviteError::Random)?;
        let key = SigningKey::from_bytes(&seed);
        let ephemeral_public_key = b64::encode_url_safe(key.verifying_key().as_bytes());
        let mail = InviteMail {
            address: r.address.to_owned(),
            token: token.clone(),
            values: self.mail_values(r, &token, &b64::encode(&seed)),
        };
        let now = crate::now_ms();
        let expires_ts = self
            .cfg
            .expiration
            .map_or(i64::MAX, |e| now.saturating_add(e.as_millis() as i64));
        state.add_invite(
            &NewInvite {
                token: &token,
                medium: Medium::Email,
                address: r.address,
                room_id: r.room_id,
                sender: r.sender,
                fields: &stored_fields(r).to_string(),
                ephemeral_public_key: &ephemeral_public_key,
                server_key_id,
                now_ms: now,
                expires_ts,
            },
            mail,
        )?;
        self.wake(DeliveryKind::InviteMail);
        Ok(Stored {
            display_name: redacted(r.address),
            token,
            ephemeral_public_key,
        })
    }

    /// mxisd's invite placeholders, and what a client needs to join by e-mail (the
    /// display fields already cut by [`kept_fields`]).
    fn mail_values(
        &self,
        r: &StoreInvite<'_>,
        token: &str,
        private_key: &str,
    ) -> BTreeMap<String, String> {
        let field = |name: &str| {
            r.fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let enc = crate::urlencoded::encode;
        let sender_name = field("sender_display_name");
        let room_name = field("room_name");
        let room_alias = field("room_alias");
        let room_type = field("room_type");
        let sender_avatar_url = field("sender_avatar_url");
        let or = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_owned()
            } else {
                a.to_owned()
            }
        };
        let sign_url = format!(
            "{}/_matrix/identity/api/v1/sign-ed25519?token={}&private_key={}",
            self.public_url,
            enc(token),
            enc(private_key)
        );
        let join_url = format!(
            "{}/#/room/{}?email={}&signurl={}&room_name={}&room_avatar_url={}&inviter_name={}&room_type={}",
            self.cfg.client_url,
            enc(&or(&room_alias, r.room_id)),
            enc(r.address),
            enc(&sign_url),
            enc(&room_name),
            enc(&field("room_avatar_url")),
            enc(&or(&sender_name, r.sender)),
            enc(&room_type),
        );
        let mut v = BTreeMap::new();
        let mut set = |k: &str, val: String| {
            v.insert(k.to_owned(), val);
        };
        set("SENDER_ID", r.sender.to_owned());
        set("SENDER_NAME", sender_name.clone());
        set("SENDER_NAME_OR_ID", or(&sender_name, r.sender));
        set("SENDER_AVATAR_URL", sender_avatar_url);
        set("INVITE_MEDIUM", "email".into());
        set("INVITE_ADDRESS", r.address.to_owned());
        set("INVITE_ADDRESS_URL_ENCODED", enc(r.address));
        set("ROOM_ID", r.room_id.to_owned());
        set("ROOM_NAME", room_name.clone());
        set(
            "ROOM_NAME_OR_ID",
            or(&or(&room_name, &room_alias), r.room_id),
        );
        set("ROOM_ALIAS", room_alias);
        set("ROOM_AVATAR_URL", field("room_avatar_url"));
        set("INVITE_TOKEN", token.to_owned());
        set("EPHEMERAL_PRIVATE_KEY", private_key.to_owned());
        set("SIGN_URL", sign_url);
        set("JOIN_URL", join_url);
        v
    }
}

/// What the invite row keeps of the request: its kept fields and its four required ones.
fn stored_fields(r: &StoreInvite<'_>) -> Value {
    let mut fields = r.fields.clone();
    for (name, value) in [
        ("medium", Medium::Email.as_str()),
        ("address", r.address),
        ("room_id", r.room_id),
        ("sender", r.sender),
    ] {
        fields.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    Value::Object(fields)
}

/// The spec's redacted `display_name`: local part and domain each cut to their first
/// three characters (one if they are short), as sydent does.
pub fn redacted(address: &str) -> String {
    fn cut(part: &str) -> String {
        let chars: Vec<char> = part.chars().collect();
        match chars.len() {
            n if n > 3 => format!("{}...", chars[..3].iter().collect::<String>()),
            n if n > 1 => format!("{}...", chars[0]),
            _ => "...".into(),
        }
    }
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{}", cut(local), cut(domain)),
        None => cut(address),
    }
}

#[cfg(test)]
mod tests {
    use super::{display, kept_fields, redacted, NotText, DISPLAY_MAX};
    use serde_json::json;

    #[test]
    fn only_known_fields_are_kept_and_bounded() {
        let params = json!({
            "room_name": "x".repeat(60 * 1024), "room_type": null, "new_field": "y",
            "sender_avatar_url": "z".repeat(2000), "guest_access_token": "t",
        });
        let kept = kept_fields(params.as_object().unwrap()).unwrap();
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(
            kept["room_name"].as_str().unwrap().chars().count(),
            DISPLAY_MAX + 1
        );
        assert_eq!(kept["guest_access_token"], "t");
        for bad in [json!(5), json!({}), json!(["a"]), json!(true)] {
            let params = json!({ "room_avatar_url": bad });
            assert_eq!(
                kept_fields(params.as_object().unwrap()),
                Err(NotText("room_avatar_url"))
            );
        }
    }

    #[test]
    fn display_fields_are_cut_on_a_character_boundary() {
        assert_eq!(display("Tea"), "Tea");
        let long = "日本語".repeat(100);
        let cut = display(&long);
        assert_eq!(cut.chars().count(), DISPLAY_MAX + 1);
        assert!(cut.ends_with('…'));
        assert!(long.starts_with(cut.trim_end_matches('…')));
        let exact = "я".repeat(DISPLAY_MAX);
        assert_eq!(display(&exact), exact);
    }

    #[test]
    fn display_names_are_redacted_as_sydent_does() {
        assert_eq!(redacted("alice@example.org"), "ali...@exa...");
        assert_eq!(redacted("bo@x.io"), "b...@x.i...");
        assert_eq!(redacted("a@b"), "...@...");
    }
}
