//! Binds made here (`binds.local.enabled`): kept in our state, served to lookups after the
//! identity stores, and applied to the hash index at once by the instance that made them
//! and, through the change feed, within a second by the others. Knows no HTTP.

use crate::lookup::hash_index::HashIndex;
use crate::state::{Bind, ChangeCursor, Changes, State, StateError, BIND_TOPIC};
use crate::threepid::Medium;
use crate::user_id::UserId;
use serde::Deserialize;

/// How long changes stay in the feed: an instance away for longer reloads every bind.
const FEED_KEEP_MS: i64 = 24 * 3600 * 1000;
/// Polls between two prunings of the feed (an hour at the follower's 500 ms).
const PRUNE_EVERY: u32 = 7200;

/// Records a bind and applies it to this instance's index.
pub fn bind(
    state: &State,
    index: &HashIndex,
    bind: Bind<'_>,
    validity: (i64, i64, i64),
) -> Result<(), StateError> {
    let seq = state.bind(bind, validity)?;
    index.apply_local(bind.medium, bind.address, Some(bind.mxid), seq);
    Ok(())
}

/// Removes a bind of `mxid`; whether there was one.
pub fn unbind(state: &State, index: &HashIndex, bind: Bind<'_>) -> Result<bool, StateError> {
    match state.unbind(bind)? {
        Some(seq) => {
            index.apply_local(bind.medium, bind.address, None, seq);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// A change of the feed's `bind` topic, as `State::bind` and `State::unbind` write it.
#[derive(Deserialize)]
struct BindChange {
    medium: String,
    address: String,
    mxid: Option<String>,
}

impl BindChange {
    /// Its medium and Matrix ID typed (`None` for the mxid of an unbind); `None` if either
    /// does not parse.
    fn typed(&self) -> Option<(Medium, Option<UserId>)> {
        let medium = Medium::parse(&self.medium)?;
        match &self.mxid {
            None => Some((medium, None)),
            Some(mxid) => Some((medium, Some(UserId::parse(mxid)?))),
        }
    }
}

/// Reads the change feed for the binds other instances make.
#[derive(Default)]
pub struct Follower {
    cursor: Option<ChangeCursor>,
    polls: u32,
}

impl Follower {
    /// One poll: loads every bind the first time (or after missing changes), else applies
    /// the new changes.
    pub fn poll(&mut self, state: &State, index: &HashIndex) {
        if let Err(e) = self.try_poll(state, index) {
            log::warn!("binds: following the change feed failed (retrying): {e}");
        }
        self.polls = self.polls.wrapping_add(1);
        if self.polls % PRUNE_EVERY == 1 {
            match state.prune_changes(crate::now_ms() - FEED_KEEP_MS) {
                Ok(0) => {}
                Ok(n) => log::info!("change feed: {n} old changes pruned"),
                Err(e) => log::warn!("change feed: pruning failed: {e}"),
            }
        }
    }

    fn try_poll(&mut self, state: &State, index: &HashIndex) -> Result<(), StateError> {
        let Some(mut cursor) = self.cursor else {
            return self.reload(state, index);
        };
        loop {
            let (changes, next) = state.changes_after(cursor, 1000)?;
            match changes {
                Changes::Gap => {
                    log::warn!("binds: changes were pruned before this instance read them; reloading every bind");
                    return self.reload(state, index);
                }
                Changes::New(list) if list.is_empty() => return Ok(()),
                Changes::New(list) => {
                    for change in list.iter().filter(|c| c.topic == BIND_TOPIC) {
                        match serde_json::from_str::<BindChange>(&change.body) {
                            Ok(b) => match b.typed() {
                                Some((medium, mxid)) => {
                                    index.apply_local(medium, &b.address, mxid.as_ref(), change.seq)
                                }
                                None => log::error!(
                                    "change {}: a bind of an unknown medium or Matrix ID",
                                    change.seq
                                ),
                            },
                            Err(e) => log::error!("change {}: not a bind: {e}", change.seq),
                        }
                    }
                    cursor = next;
                    self.cursor = Some(next);
                    if index.local_wants_reload() {
                        // The changes since the last reload, kept in a map, made compact.
                        return self.reload(state, index);
                    }
                }
            }
        }
    }

    /// The cursor first (changes after it are applied next, again if need be), then the
    /// binds themselves.
    fn reload(&mut self, state: &State, index: &HashIndex) -> Result<(), StateError> {
        let cursor = state.change_cursor()?;
        index.load_local(|each| state.local_binds(each), cursor.0)?;
        self.cursor = Some(cursor);
        Ok(())
    }
}
