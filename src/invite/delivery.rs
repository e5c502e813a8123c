//! The invites' deliveries: their mails and the onbind calls of bound addresses, through
//! the delivery queue. Requests queue them and wake a job, one per kind, so that a slow
//! homeserver or mail server never holds a request's worker, and homeservers that do not
//! answer never delay the mails (nor the reverse). The feature starts its jobs itself
//! (`start`, before the listener), with the resolution job that finds invitees in the
//! identity stores.

use super::Invites;
use crate::federation::homeserver::{self, Onbind as Called};
use crate::jobs::{self, Job, Waker};
use crate::notify::template::Placeholders;
use crate::notify::NotifyError;
use crate::state::{
    Claimed, Delivery, DeliveryKind, InviteMail, Onbind, State, StateError, HOLD_MARGIN,
};
use crate::threepid::Medium;
use serde_json::json;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a delivery job looks at the queue unwoken: retries, and items another
/// instance queued or gave up (its lease ran out).
const TICK: Duration = Duration::from_secs(2);

/// What delivering needs from the rest of the server: the keys invites were signed with,
/// the guarded client for homeservers, and our name.
pub struct Outbound<'a> {
    pub keys: &'a crate::crypto::SigningKeys,
    pub client: &'a crate::federation::Client,
    pub server_name: &'a str,
}

/// What the invite jobs use of the server they run in (the `App`).
pub trait Host: Send + Sync + 'static {
    fn invites(&self) -> &Invites;
    fn state(&self) -> &State;
    fn outbound(&self) -> Outbound<'_>;
    fn lookup(&self) -> &crate::lookup::Chain;
}

/// The invites' running jobs.
pub struct Jobs {
    jobs: Vec<Job>,
    stopping: Arc<AtomicBool>,
}

impl Jobs {
    /// The server is stopping: each job ends after what it has in hand, claiming no more
    /// (what is left waits in the queue for the next start or another instance).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        for job in self.jobs {
            job.stop();
        }
    }
}

/// Starts the invites' jobs: the delivery of each kind (at once when woken, else every
/// `TICK`), and the resolution (`invite.resolution`). Before the listener: the first
/// requests' deliveries wake them.
pub fn start<H: Host>(host: &Arc<H>) -> Result<Jobs, String> {
    let invites = host.invites();
    let mut started = Jobs {
        jobs: Vec::new(),
        stopping: invites.stopping.clone(),
    };
    for kind in [DeliveryKind::InviteMail, DeliveryKind::Onbind] {
        let h = host.clone();
        let job = jobs::every_or_woken(kind.as_str(), TICK, invites.waker(kind), move || {
            h.invites().deliver_due(kind, h.state(), &h.outbound())
        })
        .map_err(|e| format!("the {kind} delivery: {e}"))?;
        started.jobs.push(job);
    }
    let h = host.clone();
    let job = jobs::every("invite-resolution", invites.cfg.resolution, move || {
        h.invites().resolve(h.state(), h.lookup())
    })
    .map_err(|e| format!("the invite resolution: {e}"))?;
    started.jobs.push(job);
    Ok(started)
}

impl Invites {
    /// The waker of the job that delivers `kind`.
    fn waker(&self, kind: DeliveryKind) -> &Waker {
        match kind {
            DeliveryKind::InviteMail => &self.mail_job,
            // Not an invite's: the invites never wake nor claim it (`lookup::peers` does).
            DeliveryKind::Onbind | DeliveryKind::PeerPush => &self.onbind_job,
        }
    }

    /// Asks the job of `kind` to run now (before it runs, its first run does the work).
    pub(super) fn wake(&self, kind: DeliveryKind) {
        self.waker(kind).wake();
    }

    /// How long an instance holds an item of `kind` it is delivering: longer than the
    /// slowest delivery its deadlines allow, so that no other instance takes it over
    /// meanwhile; an instance that dies holding one gives it up when this runs out.
    /// Delivery is at least once: one that outlives its lease anyway may be made again by
    /// another instance.
    fn lease(&self, kind: DeliveryKind, out: &Outbound<'_>) -> Duration {
        HOLD_MARGIN
            + RECORD_WAITS_MS
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .sum::<Duration>()
            + match kind {
                DeliveryKind::InviteMail => self.notifier.longest_send(Medium::Email),
                DeliveryKind::Onbind | DeliveryKind::PeerPush => {
                    homeserver::longest_onbind(out.client)
                }
            }
    }

    /// When (medium, address) gets bound to `mxid`: if invites wait for it, queues the
    /// call that tells the homeserver of `mxid`, which the delivery job makes at once.
    pub fn on_bind(&self, state: &State, bind: crate::state::Bind<'_>) {
        let (medium, address) = (bind.medium, bind.address);
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
        let onbind = Delivery::Onbind(Onbind {
            medium,
            address: address.to_owned(),
            mxid: bind.mxid.clone(),
        });
        // Already on its way (an earlier bind or resolution, being retried).
        if state.is_delivery_queued(&onbind).unwrap_or(false) {
            return;
        }
        match state.queue_delivery(&onbind, crate::now_ms()) {
            Ok(_) => self.wake(DeliveryKind::Onbind),
            Err(e) => log::error!(
                "the onbind of {} invites could not be queued: {e}",
                pending.len()
            ),
        }
    }

    /// The resolution job: pending invites whose address an identity store now maps (a
    /// directory gained the invitee), or another identity server does (mxisd's
    /// `invite.resolution.recursive`, when `lookup.recursive.enabled`), are delivered as if
    /// bound.
    fn resolve(&self, state: &State, lookup: &crate::lookup::Chain) {
        let addresses = match state.invited_addresses(crate::now_ms()) {
            Ok(a) => a,
            Err(e) => {
                log::warn!("invite resolution: pending invites could not be read: {e}");
                return;
            }
        };
        for (m, address) in addresses {
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            let asker = if self.cfg.resolution_recursive {
                crate::lookup::Asker::Server
            } else {
                crate::lookup::Asker::Local
            };
            match lookup.find(asker, m, &address) {
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

    /// A delivery job's run: every due item of `kind`, each claimed just before it is
    /// delivered (its lease starts then, never while earlier items are delivered).
    fn deliver_due(&self, kind: DeliveryKind, state: &State, out: &Outbound<'_>) {
        let lease = self.lease(kind, out);
        while !self.stopping.load(Ordering::Relaxed) {
            match state.claim_deliveries(kind, 1, lease, crate::now_ms()) {
                Ok(claimed) if claimed.is_empty() => break,
                Ok(claimed) => {
                    for item in claimed {
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

    fn deliver(&self, state: &State, out: &Outbound<'_>, claimed: &Claimed) {
        let outcome = match &claimed.delivery {
            Delivery::InviteMail(mail) => self.send(state, mail),
            Delivery::Onbind(bound) => self.call_onbind(state, out, bound),
            // Never claimed here: the invite jobs claim their own kinds only.
            Delivery::PeerPush(_) => return,
        };
        let (kind, id, attempt) = (claimed.delivery.kind(), claimed.id(), claimed.attempts());
        let done = match outcome {
            Ok(()) => recorded(&format!("{kind} {id}: delivered"), || {
                state.delivered(claimed)
            }),
            // The same mail would fail the same way until the invite expires: ended now,
            // said in the log (the invite itself stays, for a bind of its address).
            Err(e) if e.is_permanent() => {
                log::error!("{kind} {id} (attempt {attempt}): {e}; not tried again");
                state.delivered(claimed)
            }
            Err(e) => {
                let (first, max) = self.cfg.retry;
                let wait = claimed.backoff_ms(first, max);
                log::warn!(
                    "{kind} {id} (attempt {attempt}): {e}; again in {} s",
                    wait / 1000
                );
                state
                    .retry_delivery_at(claimed, crate::now_ms() + wait)
                    .map(drop)
            }
        };
        if let Err(e) = done {
            log::warn!("{kind} {id}: the queue could not be updated: {e}");
        }
    }

    /// Tells the homeserver of the bound mxid about the address's live invites, each signed
    /// with the server key in use when it was made; ends them once delivered. A homeserver
    /// that calls the request malformed is not asked again (logged).
    fn call_onbind(
        &self,
        state: &State,
        out: &Outbound<'_>,
        bound: &Onbind,
    ) -> Result<(), NotifyError> {
        let failed = |e: &dyn fmt::Display| NotifyError::Send(e.to_string());
        let (address, mxid) = (&bound.address, bound.mxid.as_str());
        let medium = bound.medium.as_str();
        let invites = state
            .live_invites(bound.medium, address, crate::now_ms())
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
        let server = crate::user_id::UserId::parse(mxid)
            .map(|u| u.server().to_owned())
            .unwrap_or_default();
        let tokens: Vec<String> = invites.iter().map(|i| i.token.clone()).collect();
        match homeserver::onbind(out.client, &server, &body) {
            Called::Delivered => {
                log::info!("onbind: {} invites delivered to {server}", tokens.len());
                recorded("onbind: the delivered invites ended", || {
                    state.end_invites(&tokens, crate::now_ms())
                })
                .map_err(|e| failed(&e))
            }
            Called::Refused(why) => {
                log::error!(
                    "onbind: {why}; the {} invites are ended, not sent again",
                    tokens.len()
                );
                // Ended, or the resolution job would find them again at every run.
                state
                    .end_invites(&tokens, crate::now_ms())
                    .map_err(|e| failed(&e))
            }
            Called::Retry(why) => Err(NotifyError::Send(why)),
        }
    }

    /// Sends an invite's mail, unless the invite ended meanwhile (then there is nothing to
    /// send, and the item is done).
    fn send(&self, state: &State, mail: &InviteMail) -> Result<(), NotifyError> {
        match state.invite(&mail.token, crate::now_ms()) {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(e) => return Err(NotifyError::Send(e.to_string())),
        }
        let mut values = Placeholders::new();
        for (name, value) in &mail.values {
            values.set(name, value.as_str());
        }
        self.notifier.invite(Medium::Email, &mail.address, &values)
    }
}

/// The waits between tries to record a delivery already made (a mail sent, an onbind the
/// homeserver took): a database that restarts (about a second) is back before the last
/// one, and the delivery is not made a second time. Every try failing, the item is
/// delivered again once its lease runs out (at least once); the lease counts these waits.
const RECORD_WAITS_MS: [u64; 5] = [250, 500, 1_000, 2_000, 4_000];

/// `record`, tried again after each of `RECORD_WAITS_MS` while it fails.
fn recorded<T>(what: &str, record: impl FnMut() -> Result<T, StateError>) -> Result<T, StateError> {
    recorded_after(&RECORD_WAITS_MS, what, record)
}

fn recorded_after<T>(
    waits_ms: &[u64],
    what: &str,
    mut record: impl FnMut() -> Result<T, StateError>,
) -> Result<T, StateError> {
    let mut waits = waits_ms.iter();
    loop {
        match record() {
            Ok(done) => return Ok(done),
            Err(e) => match waits.next() {
                Some(&ms) => {
                    log::warn!("{what}, but not recorded: {e}; trying again in {ms} ms");
                    std::thread::sleep(Duration::from_millis(ms));
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    fn down() -> StateError {
        StateError::Unavailable {
            store: "test",
            why: "the database restarts".into(),
        }
    }

    #[test]
    fn a_delivery_made_is_recorded_once_the_state_is_back() {
        let mut tries = 0;
        let done = recorded_after(&[1, 1, 1], "test", || {
            tries += 1;
            if tries < 3 {
                Err(down())
            } else {
                Ok(tries)
            }
        });
        assert_eq!(done.unwrap(), 3);
    }

    #[test]
    fn recording_is_given_up_after_the_last_wait() {
        let mut tries = 0;
        let done: Result<(), _> = recorded_after(&[1, 1], "test", || {
            tries += 1;
            Err(down())
        });
        assert!(done.is_err());
        assert_eq!(tries, 3, "once, then after each wait");
        // The lease covers every wait, so no other instance takes the item meanwhile.
        assert_eq!(RECORD_WAITS_MS.iter().sum::<u64>(), 7_750);
    }
}
