//! Invites by e-mail: Synapse calls `store-invite` when a member invites an address that
//! no Matrix ID has, puts the keys we answer in the room, and sends no mail itself: we do.
//! Each invite gets a token and an ephemeral ed25519 key; the mail carries a link to the
//! web client and a sign URL holding that key's private half (what matrix-js-sdk uses to
//! join). The invite and its mail are stored in one transaction and the mail is delivered
//! from the queue, at once if it can be, retried with backoff if not. Knows no HTTP.

use crate::config::InviteConfig;
use crate::crypto::{b64, random};
use crate::federation::homeserver::Onbind;
use crate::notify::template::Placeholders;
use crate::notify::{Notifier, NotifyError};
use crate::ratelimit::Buckets;
use crate::state::{NewInvite, QueueItem, State, StateError};
use crate::threepid::Medium;
use ed25519_dalek::SigningKey;
use serde_json::{json, Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The queue's kind for invite mails.
pub const MAIL_KIND: &str = "invite-mail";
/// The queue's kind for onbind calls (a bound address with invites).
pub const ONBIND_KIND: &str = "onbind";

/// What delivering needs from the rest of the server: the keys invites were signed with,
/// the guarded client for homeservers, and our name.
pub struct Outbound<'a> {
    pub keys: &'a crate::crypto::SigningKeys,
    pub client: &'a crate::federation::Client,
    pub server_name: &'a str,
}
/// How long a delivery may hold its queue item, by kind.
#[derive(Debug, Clone, Copy)]
pub struct Leases {
    pub onbind: Duration,
    pub mail: Duration,
}

pub struct Invites {
    cfg: InviteConfig,
    /// How long an instance holds an item it is delivering (onbind, mail): longer than
    /// the slowest delivery its deadlines allow, so that no other instance takes it over
    /// meanwhile; an instance that dies holding one gives it up when this runs out.
    leases: Leases,
    /// Wake the delivery jobs (`main.rs`), one per kind: requests queue work and a job does
    /// it, so a slow homeserver or mail server never holds a request's worker, and
    /// homeservers that do not answer never delay the mails (nor the reverse).
    mail_job: OnceLock<crate::jobs::Waker>,
    onbind_job: OnceLock<crate::jobs::Waker>,
    /// The server is stopping: jobs end after the item in hand, claiming no more (what is
    /// left waits in the queue for the next start or another instance).
    stopping: AtomicBool,
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

/// What store-invite was given, its address normalised.
pub struct Request<'a> {
    pub address: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    /// Every field the homeserver sent (room name, alias, avatars, display names, ...).
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
    pub fn new(
        cfg: &InviteConfig,
        notifier: Arc<Notifier>,
        leases: Leases,
        public_url: &str,
        v1: bool,
    ) -> Invites {
        Invites {
            leases,
            mail_job: OnceLock::new(),
            onbind_job: OnceLock::new(),
            stopping: AtomicBool::new(false),
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
        r: &Request<'_>,
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
        let payload = json!({
            "address": r.address,
            "token": token,
            "values": self.mail_values(r, &token, &b64::encode(&seed)),
        });
        let now = crate::now_ms();
        let expires_ts = self
            .cfg
            .expiration
            .map_or(i64::MAX, |e| now.saturating_add(e.as_millis() as i64));
        state.add_invite(
            &NewInvite {
                token: &token,
                medium: Medium::Email.as_str(),
                address: r.address,
                room_id: r.room_id,
                sender: r.sender,
                fields: &Value::Object(r.fields.clone()).to_string(),
                ephemeral_public_key: &ephemeral_public_key,
                server_key_id,
                now_ms: now,
                expires_ts,
            },
            MAIL_KIND,
            &payload.to_string(),
        )?;
        wake(&self.mail_job);
        Ok(Stored {
            display_name: redacted(r.address),
            token,
            ephemeral_public_key,
        })
    }

    /// mxisd's invite placeholders, and what a client needs to join by e-mail.
    fn mail_values(&self, r: &Request<'_>, token: &str, private_key: &str) -> Map<String, Value> {
        let field = |name: &str| {
            r.fields
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let enc = crate::urlencoded::encode;
        let sender_name = display(&field("sender_display_name"));
        let room_name = display(&field("room_name"));
        let room_alias = display(&field("room_alias"));
        let room_type = display(&field("room_type"));
        // Not refused (Synapse would fail the invite), left out of the mail.
        let sender_avatar_url = Some(field("sender_avatar_url"))
            .filter(|u| u.len() <= AVATAR_URL_MAX)
            .unwrap_or_default();
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
        let mut v = Map::new();
        let mut set = |k: &str, val: String| {
            v.insert(k.to_owned(), Value::String(val));
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

    /// When (medium, address) gets bound to `mxid`: if invites wait for it, queues the
    /// call that tells the homeserver of `mxid`, which the delivery job makes at once.
    pub fn on_bind(&self, state: &State, bind: crate::state::Bind<'_>) {
        let (medium, address, mxid) = (bind.medium.as_str(), bind.address, bind.mxid.as_str());
        let pending = match state.live_invites(medium, address, crate::now_ms()) {
            Ok(p) => p,
            Err(e) => {
                log::error!("invites of a newly bound address could not be read: {e}");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        let payload = json!({ "medium": medium, "address": address, "mxid": mxid }).to_string();
        // Already on its way (an earlier bind or resolution, being retried).
        if state.is_queued(ONBIND_KIND, &payload).unwrap_or(false) {
            return;
        }
        match state.enqueue(ONBIND_KIND, &payload, crate::now_ms()) {
            Ok(_) => wake(&self.onbind_job),
            Err(e) => log::error!(
                "the onbind of {} invites could not be queued: {e}",
                pending.len()
            ),
        }
    }

    /// The resolution job: pending invites whose address an identity store now maps (a
    /// directory gained the invitee) are delivered as if bound. Only this server's stores:
    /// asking other servers would leak the invites.
    pub fn resolve(&self, state: &State, lookup: &crate::lookup::Chain) {
        let addresses = match state.invited_addresses(crate::now_ms()) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("invite resolution: pending invites could not be read: {e}");
                return;
            }
        };
        for (medium, address) in addresses {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            let Some(m) = Medium::parse(&medium) else {
                continue;
            };
            match lookup.find(crate::requester::Requester::Unknown, m, &address) {
                Ok(Some(mxid)) => match crate::user_id::UserId::parse(&mxid) {
                    Some(mxid) => self.on_bind(
                        state,
                        crate::state::Bind {
                            medium: m,
                            address: &address,
                            mxid: &mxid,
                        },
                    ),
                    None => log::warn!("invite resolution: a store answered a bad Matrix ID"),
                },
                Ok(None) => {}
                Err(e) => log::warn!("invite resolution: {e}"),
            }
        }
    }

    /// The server is stopping: deliveries and resolution end after what is in hand.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The waker of the job that delivers `kind` (`MAIL_KIND` or `ONBIND_KIND`).
    pub fn set_delivery(&self, kind: &str, waker: crate::jobs::Waker) {
        let slot = match kind {
            MAIL_KIND => &self.mail_job,
            _ => &self.onbind_job,
        };
        let _ = slot.set(waker);
    }

    /// A delivery job's run: every due item of `kind`, each claimed just before it is
    /// delivered (its lease starts then, never while earlier items are delivered).
    pub fn deliver_due(&self, kind: &str, state: &State, out: &Outbound<'_>) {
        let lease = match kind {
            MAIL_KIND => self.leases.mail,
            _ => self.leases.onbind,
        };
        while !self.stopping.load(Ordering::Relaxed) {
            match state.claim(kind, 1, lease, crate::now_ms()) {
                Ok(items) if items.is_empty() => break,
                Ok(items) => {
                    for item in items {
                        self.deliver(state, out, &item);
                    }
                }
                Err(e) => {
                    log::warn!("{kind}: the queue could not be read: {e}");
                    break;
                }
            }
        }
    }

    fn deliver(&self, state: &State, out: &Outbound<'_>, item: &QueueItem) {
        let outcome = match item.kind.as_str() {
            ONBIND_KIND => self.call_onbind(state, out, item),
            _ => self.send(state, item),
        };
        let done = match outcome {
            Ok(()) => state.complete(&item.id),
            // The same mail would fail the same way until the invite expires: ended now,
            // said in the log (the invite itself stays, for a bind of its address).
            Err(e) if e.is_permanent() => {
                log::error!(
                    "{} {} (attempt {}): {e}; not tried again",
                    item.kind,
                    item.id,
                    item.attempts
                );
                state.complete(&item.id)
            }
            Err(e) => {
                let shift = (item.attempts - 1).clamp(0, 20) as u32;
                let (first, max) = self.cfg.retry;
                let wait = (first.as_millis() as i64)
                    .saturating_mul(1 << shift)
                    .min(max.as_millis() as i64);
                log::warn!(
                    "{} {} (attempt {}): {e}; again in {} s",
                    item.kind,
                    item.id,
                    item.attempts,
                    wait / 1000
                );
                state.retry_at(item, crate::now_ms() + wait).map(drop)
            }
        };
        if let Err(e) = done {
            log::warn!(
                "{} {}: the queue could not be updated: {e}",
                item.kind,
                item.id
            );
        }
    }

    /// Tells the homeserver of the bound mxid about the address's live invites, each signed
    /// with the server key in use when it was made; ends them once delivered. A homeserver
    /// that calls the request malformed is not asked again (logged).
    fn call_onbind(
        &self,
        state: &State,
        out: &Outbound<'_>,
        item: &QueueItem,
    ) -> Result<(), NotifyError> {
        let failed = |e: &dyn fmt::Display| NotifyError::Send(e.to_string());
        let bound: Value = serde_json::from_str(&item.payload).map_err(|e| failed(&e))?;
        let text = |k: &str| bound[k].as_str().unwrap_or_default().to_owned();
        let (medium, address, mxid) = (text("medium"), text("address"), text("mxid"));
        let invites = state
            .live_invites(&medium, &address, crate::now_ms())
            .map_err(|e| failed(&e))?;
        if invites.is_empty() {
            return Ok(()); // delivered meanwhile, or expired
        }
        let mut entries = Vec::new();
        for invite in &invites {
            let mut signed = json!({ "mxid": mxid, "token": invite.token });
            let key = out
                .keys
                .find(&invite.server_key_id)
                .unwrap_or_else(|| out.keys.current());
            crate::crypto::sign_json(&mut signed, out.server_name, &key.id, key.signing_key())
                .map_err(|e| failed(&e))?;
            entries.push(json!({
                "medium": medium, "address": address, "mxid": mxid,
                "room_id": invite.room_id, "sender": invite.sender,
                "token": invite.token, "signed": signed,
            }));
        }
        let body =
            json!({ "medium": medium, "address": address, "mxid": mxid, "invites": entries });
        let server = crate::user_id::UserId::parse(&mxid)
            .map(|u| u.server().to_owned())
            .unwrap_or_default();
        let tokens: Vec<String> = invites.iter().map(|i| i.token.clone()).collect();
        match crate::federation::homeserver::onbind(out.client, &server, &body) {
            Onbind::Delivered => {
                log::info!("onbind: {} invites delivered to {server}", tokens.len());
                state
                    .end_invites(&tokens, crate::now_ms())
                    .map_err(|e| failed(&e))
            }
            Onbind::Refused(why) => {
                log::error!(
                    "onbind: {why}; the {} invites are ended, not sent again",
                    tokens.len()
                );
                // Ended, or the resolution job would find them again at every run.
                state
                    .end_invites(&tokens, crate::now_ms())
                    .map_err(|e| failed(&e))
            }
            Onbind::Retry(why) => Err(NotifyError::Send(why)),
        }
    }

    /// Sends an item's mail, unless its invite ended meanwhile (then there is nothing to
    /// send, and the item is done).
    fn send(&self, state: &State, item: &QueueItem) -> Result<(), NotifyError> {
        let payload: Value = serde_json::from_str(&item.payload)
            .map_err(|e| NotifyError::Send(format!("unreadable queue item: {e}")))?;
        let token = payload["token"].as_str().unwrap_or_default();
        match state.invite(token, crate::now_ms()) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => return Err(NotifyError::Send(e.to_string())),
        }
        let address = payload["address"].as_str().unwrap_or_default();
        let mut values = Placeholders::new();
        if let Some(map) = payload["values"].as_object() {
            for (k, v) in map {
                values.set(k, v.as_str().unwrap_or_default());
            }
        }
        self.notifier.invite(Medium::Email, address, &values)
    }
}

/// Asks a delivery job to run now (before it runs, its first tick does the work).
fn wake(job: &OnceLock<crate::jobs::Waker>) {
    if let Some(w) = job.get() {
        w.wake();
    }
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
    use super::{display, redacted, DISPLAY_MAX};

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
