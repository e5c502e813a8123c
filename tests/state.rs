//! The state layer's own suite, run with the same assertions on SQLite and on the test
//! PostgreSQL: accounts and terms, the pepper, migrations, the delivery queue's claim
//! (racing claimers, expired leases) and the change feed between two handles.

use crate::support::services::{fresh_database, pg_connection};
use crate::support::TempDir;
use mxisd::config::{DbTls, PostgresConfig, StorageConfig, TlsMode};
use mxisd::opaque_id::{ClientSecret, Sid};
use mxisd::state::{
    Bind, Change, ChangeCursor, Changes, Delivery, DeliveryKind, InviteMail, State, BIND_TOPIC,
};
use mxisd::threepid::Medium;
use mxisd::user_id::UserId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every migration, in order: what a database opened by this version has applied.
pub const MIGRATIONS: &[&str] = &[
    "0001_ephemeral_keys",
    "0002_accounts",
    "0003_hashing",
    "0004_delivery_queue",
    "0005_changes",
    "0006_sessions",
    "0007_local_binds",
    "0008_invites",
    "0009_imports",
    "0010_session_resends",
    "0011_drop_ephemeral_keys",
    "0012_remote_sessions",
    "0013_peer_hashes",
    "0014_peer_push_parts",
];

/// The client secret of the sessions here.
static SEC: std::sync::LazyLock<ClientSecret> =
    std::sync::LazyLock::new(|| ClientSecret::parse("sec").unwrap());

fn sid(sid: &str) -> Sid {
    Sid::parse(sid).unwrap()
}

/// Where a test's state lives; opened as often as the test needs (several instances).
enum Db {
    Sqlite(TempDir),
    Postgres(String),
}

impl Db {
    fn both() -> [Db; 2] {
        [
            Db::Sqlite(TempDir::new()),
            Db::Postgres(fresh_database("state")),
        ]
    }

    fn config(&self) -> StorageConfig {
        match self {
            Db::Sqlite(dir) => StorageConfig::Sqlite {
                database: dir.join("state.db"),
            },
            Db::Postgres(name) => StorageConfig::Postgresql(PostgresConfig {
                connection: pg_connection(name),
                username: None,
                password: None,
                timeout: Duration::from_secs(5),
                pool_size: 4,
                tls: DbTls {
                    mode: TlsMode::Disable,
                    ca_file: None,
                },
            }),
        }
    }

    /// The migrations recorded in the database, in order (read beside the state layer).
    fn applied_migrations(&self) -> Vec<String> {
        let sql = "SELECT name FROM schema_migrations ORDER BY name";
        match self {
            Db::Sqlite(dir) => {
                let c = rusqlite::Connection::open(dir.join("state.db")).unwrap();
                let mut names = c.prepare(sql).unwrap();
                let names = names.query_map([], |r| r.get(0)).unwrap();
                names.map(|n| n.unwrap()).collect()
            }
            Db::Postgres(name) => crate::support::services::psql(name, sql)
                .lines()
                .map(str::to_owned)
                .collect(),
        }
    }

    fn open(&self) -> State {
        State::open(&self.config(), 4).unwrap_or_else(|e| panic!("open: {e}"))
    }

    /// A second instance: another process on PostgreSQL; on SQLite (one process only)
    /// the same handle.
    fn second(&self, first: &Arc<State>) -> Arc<State> {
        match self {
            Db::Sqlite(_) => first.clone(),
            Db::Postgres(_) => Arc::new(self.open()),
        }
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn accounts_tokens_and_terms() {
    for db in Db::both() {
        let s = db.open();
        s.add_token("@a:example.org", "hash-1", 1000).unwrap();
        s.add_token("@a:example.org", "hash-2", 1001).unwrap();
        assert_eq!(
            s.token_user("hash-1").unwrap().as_deref(),
            Some("@a:example.org")
        );
        assert_eq!(s.token_user("hash-9").unwrap(), None);
        assert!(s.delete_token("hash-1").unwrap());
        assert!(!s.delete_token("hash-1").unwrap());
        assert_eq!(s.token_user("hash-1").unwrap(), None);
        assert_eq!(
            s.token_user("hash-2").unwrap().as_deref(),
            Some("@a:example.org")
        );
        let urls = vec!["https://t/1".to_owned(), "https://t/2".to_owned()];
        s.accept_terms_urls("@a:example.org", &urls).unwrap();
        s.accept_terms_urls("@a:example.org", &urls[..1]).unwrap(); // again: no error
        let mut got = s.accepted_terms_urls("@a:example.org").unwrap();
        got.sort();
        assert_eq!(got, urls, "{}", s.store());
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_pepper_is_decided_once() {
    for db in Db::both() {
        let s = db.open();
        assert_eq!(s.pepper_or_insert("first").unwrap(), "first");
        drop(s);
        let s = db.open();
        assert_eq!(
            s.pepper_or_insert("second").unwrap(),
            "first",
            "{}",
            s.store()
        );
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn migrations_are_recorded_and_applied_once() {
    for db in Db::both() {
        let first = db.open();
        let store = first.store();
        first.add_token("@m:example.org", "hash-m", 1000).unwrap();
        drop(first);
        assert_eq!(db.applied_migrations(), MIGRATIONS, "{store}");
        // Opened again, nothing is applied twice: what the first open wrote is still there.
        let again = db.open();
        assert_eq!(db.applied_migrations(), MIGRATIONS, "{store}");
        assert_eq!(
            again.token_user("hash-m").unwrap().as_deref(),
            Some("@m:example.org"),
            "{}",
            again.store()
        );
        assert!(!again.ephemeral_key_is_valid("nope").unwrap());
    }
}

#[test]
fn a_second_process_is_kept_off_an_sqlite_database() {
    let db = Db::Sqlite(TempDir::new());
    let _first = db.open();
    let e = State::open(&db.config(), 2)
        .err()
        .expect("a second open must fail");
    assert!(
        e.to_string()
            .contains("several instances need storage.backend: postgresql"),
        "{e}"
    );
}

/// An onbind delivery for `address` (from its serde form: `Medium` is the crate's own).
fn onbind(address: &str) -> Delivery {
    let delivery = serde_json::json!({
        "kind": "onbind",
        "payload": {"medium": "email", "address": address, "mxid": "@bob:example.org"},
    });
    serde_json::from_value(delivery).unwrap()
}

/// An invite's mail for the invite of `token`.
fn invite_mail(token: &str) -> Delivery {
    Delivery::InviteMail(InviteMail {
        address: "bob@example.org".into(),
        token: token.into(),
        values: BTreeMap::from([("INVITE_TOKEN".to_owned(), token.to_owned())]),
    })
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn racing_claimers_each_get_an_item_once() {
    for db in Db::both() {
        let a = Arc::new(db.open());
        let b = db.second(&a);
        let due: Vec<Delivery> = (0..60)
            .map(|i| onbind(&format!("bob{i}@example.org")))
            .collect();
        let ids: Vec<String> = due
            .iter()
            .map(|d| a.queue_delivery(d, 0).unwrap())
            .collect();
        let mail = invite_mail("another kind");
        a.queue_delivery(&mail, 0).unwrap();
        let later = onbind("not-due-yet@example.org");
        a.queue_delivery(&later, i64::MAX / 2).unwrap();
        // Each queue item's id, with every delivery claimed under it.
        let claimed: Arc<Mutex<HashMap<String, Vec<Delivery>>>> = Arc::default();
        let claimers: Vec<_> = [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .map(|s| {
                let claimed = claimed.clone();
                std::thread::spawn(move || loop {
                    let batch = s
                        .claim_deliveries(
                            DeliveryKind::Onbind,
                            3,
                            Duration::from_secs(60),
                            mxisd::now_ms(),
                        )
                        .unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for c in batch {
                        assert_eq!(c.attempts(), 1);
                        let mut claimed = claimed.lock().unwrap();
                        let entry = claimed.entry(c.id().to_owned()).or_default();
                        entry.push(c.delivery.clone());
                        drop(claimed);
                        s.delivered(&c).unwrap();
                    }
                })
            })
            .collect();
        for c in claimers {
            c.join().unwrap();
        }
        let claimed = claimed.lock().unwrap();
        assert_eq!(claimed.len(), 60, "{}: every due item claimed", a.store());
        for (id, delivery) in ids.iter().zip(&due) {
            assert_eq!(
                claimed.get(id),
                Some(&vec![delivery.clone()]),
                "{}: claimed once, as queued",
                a.store()
            );
            assert!(!a.is_delivery_queued(delivery).unwrap());
        }
        assert!(
            a.is_delivery_queued(&later).unwrap(),
            "{}: the item not due yet stays",
            a.store()
        );
        // Another kind's item is left to its own claims.
        let mails = a
            .claim_deliveries(DeliveryKind::InviteMail, 10, Duration::from_secs(60), 1)
            .unwrap();
        assert_eq!(
            mails.iter().map(|c| &c.delivery).collect::<Vec<_>>(),
            [&mail],
            "{}",
            a.store()
        );
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_expired_lease_is_claimed_again_and_a_retry_waits() {
    for db in Db::both() {
        let a = Arc::new(db.open());
        let b = db.second(&a);
        let claim = |s: &State, now_ms: i64| {
            s.claim_deliveries(
                DeliveryKind::InviteMail,
                10,
                Duration::from_secs(30),
                now_ms,
            )
            .unwrap()
        };
        let mail = invite_mail("tok");
        let id = a.queue_delivery(&mail, 1_000).unwrap();
        assert!(claim(&a, 999).is_empty(), "{}: not due yet", a.store());
        let now = 10_000;
        let first = claim(&a, now);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].id(), &first[0].delivery), (id.as_str(), &mail));
        assert!(claim(&b, now + 29_999).is_empty(), "{}", a.store());
        // The claimer died: its lease ran out.
        let again = claim(&b, now + 30_000);
        assert_eq!(again.len(), 1, "{}", a.store());
        assert_eq!((again[0].id(), again[0].attempts()), (id.as_str(), 2));
        // The first claim no longer holds it: it cannot put it back.
        assert!(!a.retry_delivery_at(&first[0], now + 1).unwrap());
        // A retry by the holder puts it back for later, free for anyone then.
        assert!(b.retry_delivery_at(&again[0], now + 60_000).unwrap());
        assert!(claim(&a, now + 59_999).is_empty(), "{}", a.store());
        let third = claim(&a, now + 60_000);
        assert_eq!(third.len(), 1, "{}", a.store());
        assert_eq!(third[0].attempts(), 3);
        a.delivered(&third[0]).unwrap();
        assert!(!a.is_delivery_queued(&mail).unwrap());
        assert!(claim(&b, now + 120_000).is_empty());
    }
}

/// Binds `address` to `@a:example.org` as the server does (the bind and its change in one
/// transaction); the change's number.
fn bind(s: &State, address: &str) -> i64 {
    let now = mxisd::now_ms();
    s.bind(a_bind(address, &A), (now, now, now + 60_000))
        .unwrap()
}

/// The Matrix ID the change-feed tests bind.
static A: std::sync::LazyLock<UserId> =
    std::sync::LazyLock::new(|| UserId::parse("@a:example.org").unwrap());

fn a_bind<'a>(address: &'a str, mxid: &'a UserId) -> Bind<'a> {
    Bind {
        medium: Medium::Email,
        address,
        mxid,
    }
}

/// Removes `bind`'s bind of `address`; the change's number.
fn unbind(s: &State, address: &str) -> i64 {
    s.unbind(a_bind(address, &A))
        .unwrap()
        .expect("a bind to remove")
}

/// What a change of the binds says: (address, Matrix ID), no Matrix ID for an unbind.
fn bind_change(c: &Change) -> (String, Option<String>) {
    assert_eq!(c.topic, BIND_TOPIC);
    let body: serde_json::Value = serde_json::from_str(&c.body).unwrap();
    let text = |key: &str| body[key].as_str().map(str::to_owned);
    (text("address").unwrap(), text("mxid"))
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_change_feed_is_read_in_order_by_another_instance() {
    for db in Db::both() {
        let a = Arc::new(db.open());
        let b = db.second(&a);
        let start = b.change_cursor().unwrap();
        let mut seqs: Vec<i64> = (0..4)
            .map(|i| bind(&a, &format!("a{i}@example.org")))
            .collect();
        seqs.push(unbind(&a, "a0@example.org"));
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        let (changes, cursor) = b.changes_after(start, 3).unwrap();
        let Changes::New(first) = changes else {
            panic!("a gap")
        };
        let bound = Some("@a:example.org".to_owned());
        assert_eq!(
            first.iter().map(bind_change).collect::<Vec<_>>(),
            [
                ("a0@example.org".to_owned(), bound.clone()),
                ("a1@example.org".to_owned(), bound.clone()),
                ("a2@example.org".to_owned(), bound.clone()),
            ]
        );
        let (changes, cursor) = b.changes_after(cursor, 100).unwrap();
        let Changes::New(rest) = changes else {
            panic!("a gap")
        };
        assert_eq!(
            rest.iter().map(bind_change).collect::<Vec<_>>(),
            [
                ("a3@example.org".to_owned(), bound.clone()),
                ("a0@example.org".to_owned(), None),
            ]
        );
        assert_eq!(
            b.changes_after(cursor, 100).unwrap().0,
            Changes::New(vec![])
        );
        // Pruned beyond a reader: it is told to rebuild.
        assert!(a.prune_changes(i64::MAX).unwrap() >= 4);
        assert_eq!(
            b.changes_after(start, 100).unwrap().0,
            Changes::Gap,
            "{}",
            a.store()
        );
        assert_eq!(
            b.changes_after(cursor, 100).unwrap().0,
            Changes::New(vec![])
        );
        assert_eq!(
            b.change_cursor().unwrap(),
            ChangeCursor(*seqs.last().unwrap())
        );
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_reader_polling_during_concurrent_writes_sees_every_change_in_order() {
    for db in Db::both() {
        let a = Arc::new(db.open());
        let b = db.second(&a);
        let start = b.change_cursor().unwrap();
        // Three writers, each binding and unbinding addresses of its own: 30 changes each.
        let writers: Vec<_> = [a.clone(), b.clone(), a.clone()]
            .into_iter()
            .enumerate()
            .map(|(w, s)| {
                std::thread::spawn(move || {
                    (0..15)
                        .flat_map(|i| {
                            let address = format!("w{w}-{i}@example.org");
                            [bind(&s, &address), unbind(&s, &address)]
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Polls while they write: numbers must arrive in order, with no hole and no gap
        // (a change committed after a higher-numbered one would show as a hole).
        let mut seen = Vec::new();
        let mut cursor = start;
        while seen.len() < 90 {
            // A writer that failed ends the polling: its join says why.
            let finished = writers.iter().all(|w| w.is_finished());
            let (changes, next) = b.changes_after(cursor, 7).unwrap();
            match changes {
                Changes::New(new) if new.is_empty() && finished => break,
                Changes::New(new) => seen.extend(new.iter().map(|c| c.seq)),
                Changes::Gap => panic!("{}: a gap after {cursor:?}", a.store()),
            }
            cursor = next;
        }
        let mut written: Vec<i64> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        written.sort();
        assert_eq!(
            written,
            (start.0 + 1..=start.0 + 90).collect::<Vec<_>>(),
            "{}",
            a.store()
        );
        assert_eq!(seen, written, "{}: seen in order", a.store());
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn pruning_keeps_changes_newer_than_the_cut() {
    for db in Db::both() {
        let s = db.open();
        let start = s.change_cursor().unwrap();
        for i in 0..3 {
            bind(&s, &format!("p{i}@example.org"));
        }
        // Nothing is older than a minute ago: nothing goes.
        assert_eq!(s.prune_changes(mxisd::now_ms() - 60_000).unwrap(), 0);
        assert!(matches!(s.changes_after(start, 10).unwrap().0, Changes::New(c) if c.len() == 3));
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn instances_opening_an_empty_postgresql_database_together_migrate_once() {
    let db = Db::Postgres(fresh_database("race"));
    let config = db.config();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let openers: Vec<_> = (0..4)
        .map(|i| {
            let (config, barrier) = (config.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let s = State::open(&config, 2).map_err(|e| e.to_string())?;
                s.pepper_or_insert(&format!("pepper {i}"))
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    // Each ended up on the same migrated database: one pepper, decided by one of them.
    let peppers: Vec<String> = openers
        .into_iter()
        .map(|o| o.join().unwrap().unwrap())
        .collect();
    assert!(peppers[0].starts_with("pepper "), "{peppers:?}");
    assert!(peppers.iter().all(|p| *p == peppers[0]), "{peppers:?}");
    assert_eq!(db.open().pepper_or_insert("later").unwrap(), peppers[0]);
    let names = db.applied_migrations();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique);
    assert_eq!(names, MIGRATIONS);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn sessions_are_found_validated_and_swept() {
    use mxisd::state::{FailureBudget, Requested, SentToken, Submitted, TokenRequest};
    const BUDGET: FailureBudget = FailureBudget {
        per_code: 5,
        lifetime: 15,
    };
    for db in Db::both() {
        let s = db.open();
        fn request<'a>(attempt: i64, token: &'a str, sid: &'a Sid, now: i64) -> TokenRequest<'a> {
            TokenRequest {
                medium: Medium::Email,
                address: "a@example.org",
                client_secret: &SEC,
                send_attempt: attempt,
                next_link: None,
                token_hash: token,
                fresh_sid: sid,
                now_ms: now,
                expires_ts: now + 1_000,
                reserved_until: now + 100,
                budget: BUDGET,
            }
        }
        let sent = |attempt: i64, token: &str, now: i64| {
            assert!(s
                .token_sent(&SentToken {
                    sid: &sid("sid1"),
                    medium: Medium::Email,
                    token_hash: token,
                    send_attempt: attempt,
                    next_link: None,
                    now_ms: now,
                    expires_ts: now + 1_000,
                })
                .unwrap());
        };
        let first = s
            .request_token(&request(1, "t1", &sid("sid1"), 10_000))
            .unwrap();
        assert_eq!(
            first,
            Requested::Send {
                sid: sid("sid1"),
                created: true
            }
        );
        assert_eq!(
            s.request_token(&request(1, "t2", &sid("sid2"), 10_001))
                .unwrap(),
            Requested::Unchanged { sid: sid("sid1") }
        );
        assert_eq!(
            s.submit_token(&sid("sid1"), &SEC, "t9", 10_001, BUDGET)
                .unwrap(),
            Submitted::Wrong {
                failed_attempts: 1,
                lifetime_failures: 1
            }
        );
        // A resend is reserved: the same attempt again (another instance) sends nothing,
        // and nothing else changed until it is sent.
        let resent = s
            .request_token(&request(2, "t2", &sid("sid2"), 10_002))
            .unwrap();
        assert_eq!(
            resent,
            Requested::Send {
                sid: sid("sid1"),
                created: false
            }
        );
        assert_eq!(
            s.request_token(&request(2, "t3", &sid("sid2"), 10_002))
                .unwrap(),
            Requested::Unchanged { sid: sid("sid1") }
        );
        let row = s.session(&sid("sid1")).unwrap().unwrap();
        assert_eq!(
            (row.send_attempt, row.failed_attempts, row.expires_ts),
            (1, 1, 11_000)
        );
        // Given up (not sent): the retry of the same attempt is sent.
        s.release_request(&sid("sid1"), "t2", false).unwrap();
        assert!(matches!(
            s.request_token(&request(2, "t2", &sid("sid2"), 10_003))
                .unwrap(),
            Requested::Send { .. }
        ));
        sent(2, "t2", 10_003);
        let row = s.session(&sid("sid1")).unwrap().unwrap();
        assert_eq!(
            (row.send_attempt, row.failed_attempts, row.lifetime_failures),
            (2, 0, 1),
            "{}",
            s.store()
        );
        assert_eq!(
            s.submit_token(
                &sid("sid1"),
                &ClientSecret::parse("nope").unwrap(),
                "t1",
                10_003,
                BUDGET
            )
            .unwrap(),
            Submitted::NoSession
        );
        let Submitted::Validated(row) = s
            .submit_token(&sid("sid1"), &SEC, "t1", 10_004, BUDGET)
            .unwrap()
        else {
            panic!("{}: the first token stays valid", s.store())
        };
        assert_eq!(row.validated_ts, Some(10_004));
        assert_eq!(
            s.submit_token(&sid("sid1"), &SEC, "t2", 20_000, BUDGET)
                .unwrap(),
            Submitted::Expired
        );
        // A new session whose first code was not sent goes when given up.
        let sid4 = sid("sid4");
        let other = TokenRequest {
            address: "c@example.org",
            ..request(1, "t4", &sid4, 10_000)
        };
        assert!(matches!(
            s.request_token(&other).unwrap(),
            Requested::Send { created: true, .. }
        ));
        s.release_request(&sid("sid4"), "t4", true).unwrap();
        assert!(s.session(&sid("sid4")).unwrap().is_none());
        // The sweep forgets what expired, and only that.
        s.request_token(&TokenRequest {
            address: "b@example.org",
            expires_ts: 99_000,
            ..request(1, "t3", &sid("sid3"), 10_000)
        })
        .unwrap();
        assert_eq!(s.sweep_sessions(50_000).unwrap(), 1, "{}", s.store());
        assert!(s.session(&sid("sid1")).unwrap().is_none());
        assert!(s.session(&sid("sid3")).unwrap().is_some());
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_resend_given_up_or_sent_again_keeps_the_codes_delivered() {
    use mxisd::state::{FailureBudget, Requested, SentToken, Submitted, TokenRequest};
    const BUDGET: FailureBudget = FailureBudget {
        per_code: 5,
        lifetime: 15,
    };
    for db in Db::both() {
        let s = db.open();
        let store = s.store();
        let sidm = sid("sidm");
        let request = |attempt: i64, token: &str, now: i64| {
            s.request_token(&TokenRequest {
                medium: Medium::Msisdn,
                address: "447700900001",
                client_secret: &SEC,
                send_attempt: attempt,
                next_link: None,
                token_hash: token,
                fresh_sid: &sidm,
                now_ms: now,
                expires_ts: now + 100_000,
                reserved_until: now + 100,
                budget: BUDGET,
            })
            .unwrap()
        };
        let resent = |attempt: i64, token: &str, now: i64| {
            assert!(matches!(
                request(attempt, token, now),
                Requested::Send { created: false, .. }
            ));
            assert!(s
                .token_sent(&SentToken {
                    sid: &sidm,
                    medium: Medium::Msisdn,
                    token_hash: token,
                    send_attempt: attempt,
                    next_link: None,
                    now_ms: now,
                    expires_ts: now + 100_000,
                })
                .unwrap());
        };
        let valid = |token: &str| {
            matches!(
                s.submit_token(&sid("sidm"), &SEC, token, 50_000, BUDGET)
                    .unwrap(),
                Submitted::Validated(_)
            )
        };
        assert!(matches!(
            request(1, "c1", 1_000),
            Requested::Send { created: true, .. }
        ));
        // A resend whose new code happens to equal the delivered one is given up: that
        // stored nothing, so the delivered code stays.
        assert!(matches!(
            request(2, "c1", 2_000),
            Requested::Send { created: false, .. }
        ));
        s.release_request(&sid("sidm"), "c1", false).unwrap();
        assert!(valid("c1"), "{store}: the delivered code stays");
        resent(2, "c2", 3_000);
        resent(3, "c3", 4_000);
        // Sent again (the same 6 digits drawn): it is the newest code now, so the next
        // code sent drops c2, not it.
        resent(4, "c1", 5_000);
        resent(5, "c4", 6_000);
        for (token, kept) in [("c1", true), ("c2", false), ("c3", true), ("c4", true)] {
            assert_eq!(valid(token), kept, "{store}: {token}");
        }
    }
}

/// The sweep takes a session's row before its tokens, in the order `token_sent` does (it
/// locks the session, then stores and rotates its tokens): deleting the tokens first
/// deadlocks with it on PostgreSQL. Here a transaction in the place of `token_sent` holds
/// the session while the sweep runs, then deletes its tokens.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_sweep_locks_a_session_before_its_tokens() {
    use mxisd::state::{FailureBudget, Requested, TokenRequest};
    let name = fresh_database("state");
    let s = Arc::new(Db::Postgres(name.clone()).open());
    let created = s
        .request_token(&TokenRequest {
            medium: Medium::Msisdn,
            address: "447700900001",
            client_secret: &SEC,
            send_attempt: 1,
            next_link: None,
            token_hash: "t1",
            fresh_sid: &sid("sid1"),
            now_ms: 1_000,
            expires_ts: 2_000,
            reserved_until: 1_100,
            budget: FailureBudget {
                per_code: 5,
                lifetime: 15,
            },
        })
        .unwrap();
    assert!(matches!(created, Requested::Send { created: true, .. }));
    let mut c = postgres::Client::connect(&pg_connection(&name), postgres::NoTls).unwrap();
    let mut tx = c.transaction().unwrap();
    tx.query(
        "SELECT sid FROM sessions WHERE sid = 'sid1' FOR UPDATE",
        &[],
    )
    .unwrap();
    let sweeper = {
        let s = s.clone();
        std::thread::spawn(move || s.sweep_sessions(5_000))
    };
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while crate::support::services::psql(&name, waiting).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never waited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    tx.execute("DELETE FROM session_tokens WHERE sid = 'sid1'", &[])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(sweeper.join().unwrap().unwrap(), 1);
    assert!(s.session(&sid("sid1")).unwrap().is_none());
}

/// Applies the migrations before `upto` as their SQL files are written, recording them,
/// to a database that `run` executes statements on: what an older version left.
fn apply_migrations_before(upto: &str, mut run: impl FnMut(&str)) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/state/migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    run("CREATE TABLE schema_migrations (name TEXT PRIMARY KEY NOT NULL, applied_ts BIGINT NOT NULL)");
    for file in files {
        let name = file.file_stem().unwrap().to_str().unwrap().to_owned();
        if name.as_str() >= upto {
            break;
        }
        run(&std::fs::read_to_string(&file).unwrap());
        run(&format!(
            "INSERT INTO schema_migrations (name, applied_ts) VALUES ('{name}', 1)"
        ));
    }
}

/// 0010 on a database holding sessions: the wrong tokens they had so far count for their
/// whole life.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn migration_0010_counts_the_wrong_tokens_so_far_for_good() {
    for db in Db::both() {
        let mut sqlite = match &db {
            Db::Sqlite(dir) => Some(rusqlite::Connection::open(dir.join("state.db")).unwrap()),
            Db::Postgres(_) => None,
        };
        let mut run = |sql: &str| match (&mut sqlite, &db) {
            (Some(c), _) => c.execute_batch(sql).unwrap(),
            (None, Db::Postgres(name)) => {
                crate::support::services::psql(name, sql);
            }
            (None, Db::Sqlite(_)) => unreachable!(),
        };
        apply_migrations_before("0010", &mut run);
        run("INSERT INTO sessions (sid, medium, address, client_secret, send_attempt, created_ts, expires_ts, failed_attempts) VALUES ('old', 'email', 'a@example.org', 'sec', 1, 1, 9999999999999, 4)");
        drop(sqlite);
        let s = db.open();
        assert_eq!(db.applied_migrations(), MIGRATIONS, "{}", s.store());
        let row = s.session(&sid("old")).unwrap().unwrap();
        assert_eq!(
            (row.failed_attempts, row.lifetime_failures),
            (4, 4),
            "{}",
            s.store()
        );
    }
}

/// Runs `sql` on `db` beside the state's own connections: rows written as nothing of
/// ours would write them.
fn run_sql(db: &Db, sql: &str) {
    match db {
        Db::Sqlite(dir) => rusqlite::Connection::open(dir.join("state.db"))
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
        Db::Postgres(name) => {
            crate::support::services::psql(name, sql);
        }
    }
}

/// The state reads its rows into typed values (medium, Matrix ID, sid, client secret) at
/// its edge: a row that does not parse is an error naming its column, not a panic, nor a
/// value passed on.
#[test]
fn rows_that_do_not_parse_are_errors_naming_their_column() {
    for db in Db::both() {
        let s = db.open();
        let store = s.store();
        let session = |sid: &str, medium: &str, secret: &str| {
            format!("INSERT INTO sessions (sid, medium, address, client_secret, send_attempt, created_ts, expires_ts) VALUES ('{sid}', '{medium}', 'a@example.org', '{secret}', 1, 1, 9999999999999)")
        };
        run_sql(&db, &session("fax", "fax", "sec"));
        run_sql(&db, &session("spaced", "email", "a secret"));
        run_sql(&db, &session("ok", "msisdn", "sec"));
        for (sid, column) in [
            ("fax", "sessions.medium"),
            ("spaced", "sessions.client_secret"),
        ] {
            let e = s.session(&self::sid(sid)).unwrap_err().to_string();
            assert!(e.contains(column), "{store}: {e}");
            assert!(!e.contains("a secret"), "{store}: {e}");
        }
        let ok = s.session(&sid("ok")).unwrap().unwrap();
        assert_eq!((ok.medium, ok.client_secret), (Medium::Msisdn, SEC.clone()));
        run_sql(&db, "INSERT INTO local_binds (medium, address, mxid, ts, not_before, not_after, seq) VALUES ('email', 'a@example.org', 'alice', 1, 1, 2, 1)");
        let e = s.local_binds(&mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("local_binds.mxid"), "{store}: {e}");
        let e = s.bound(Medium::Email, "a@example.org").unwrap_err();
        assert!(e.to_string().contains("local_binds.mxid"), "{store}: {e}");
    }
}

/// mxisd's (ORMLite's) table of pending invites, here without its NOT NULLs so that a
/// damaged row can be written: `"roomId"` keeps its case on PostgreSQL, as ORMLite quoted it.
const MXISD_INVITES: &str =
    "CREATE TABLE \"invite_3pid\" (\"id\" VARCHAR(255), \"token\" VARCHAR(255), \
    \"sender\" VARCHAR(255), \"medium\" VARCHAR(255), \"address\" VARCHAR(255), \
    \"roomId\" VARCHAR(255), \"properties\" VARCHAR(255), PRIMARY KEY (\"id\"))";

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn mxisd_invites_are_imported_once_and_damaged_rows_skipped() {
    for db in Db::both() {
        let rows = [
            "('a', 'tok-a', '@s:example.org', 'email', 'A@Example.org', '!r:example.org', '{\"room_name\":\"R\"}')",
            "('b', 'tok-b', NULL, 'email', 'b@example.org', '!r:example.org', NULL)",
            "('c', 'tok-c', '@s:example.org', 'msisdn', '447911123456', '!r:example.org', NULL)",
        ];
        let setup = format!(
            "{MXISD_INVITES}; INSERT INTO invite_3pid VALUES {}",
            rows.join(", ")
        );
        match &db {
            Db::Sqlite(dir) => rusqlite::Connection::open(dir.join("state.db"))
                .unwrap()
                .execute_batch(&setup)
                .unwrap(),
            Db::Postgres(name) => {
                crate::support::services::psql(name, &setup);
            }
        }
        // Two instances start together on PostgreSQL: one imports, the other finds it done.
        let first = Arc::new(db.open());
        let second = db.second(&first);
        let now = mxisd::now_ms();
        let results: Vec<_> = [first.clone(), second.clone()]
            .into_iter()
            .map(|s| {
                std::thread::spawn(move || s.import_mxisd_invites("ed25519:0", now, now + 60_000))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
        let mut sorted = results.clone();
        sorted.sort();
        assert_eq!(sorted, [None, Some(1)], "{}", first.store());
        let live = first
            .live_invites(Medium::Email, "a@example.org", now)
            .unwrap();
        assert_eq!(live.len(), 1, "{}", first.store());
        assert_eq!(live[0].token, "tok-a");
        assert_eq!(live[0].room_id, "!r:example.org");
        assert_eq!(live[0].fields, "{\"room_name\":\"R\"}");
        assert_eq!(
            first
                .import_mxisd_invites("ed25519:0", now, now + 60_000)
                .unwrap(),
            None
        );
        drop(second);
    }
}
