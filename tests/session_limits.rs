//! The budget of wrong SMS codes against the real binary, on SQLite and on PostgreSQL
//! (there, two instances sharing the database): 5 wrong codes per code sent, 15 over a
//! session's life, never reset; a resend that is refused (429) or whose SMS fails changes
//! nothing — neither the count of wrong codes, racing guesses included, nor the codes the
//! user already has. A code stored after later ones still works; a session that expires
//! while its code is sent stays expired; an instance that dies while sending holds the
//! attempt only as long as its connector's deadlines allow.

use crate::support::fake_homeserver::FakeTwilio;
use crate::support::services::{fresh_database, pg_connection, psql};
use crate::support::{Mxisd, Response, Silent};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const V1: &str = "/_matrix/identity/api/v1";
/// The per-code and lifetime budgets (`session::MAX_FAILURES`, `MAX_LIFETIME_FAILURES`).
const PER_CODE: usize = 5;
const LIFETIME: usize = 15;

/// The instances a test runs against: one on SQLite, or two sharing one PostgreSQL
/// database, each with `extra`.
fn instances(postgres: bool, extra: &str) -> Vec<Mxisd> {
    instances_on(postgres, extra).0
}

/// `instances`, and the PostgreSQL database they share (if they do).
fn instances_on(postgres: bool, extra: &str) -> (Vec<Mxisd>, Option<String>) {
    if !postgres {
        return (vec![Mxisd::start(extra)], None);
    }
    let db = fresh_database("limits");
    let storage = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n",
        pg_connection(&db)
    );
    let both = format!("{storage}{extra}");
    (vec![Mxisd::start(&both), Mxisd::start(&both)], Some(db))
}

/// Sets the expiry of the session `sid` behind the server's back: in the PostgreSQL
/// database `db`, else in `s`'s SQLite file.
fn set_expiry(s: &Mxisd, db: &Option<String>, sid: &str, expires_ts: i64) {
    let sql = format!("UPDATE sessions SET expires_ts = {expires_ts} WHERE sid = '{sid}'");
    match db {
        Some(db) => {
            psql(db, &sql);
        }
        None => {
            let c = rusqlite::Connection::open(s.dir.join("mxisd.db")).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(c.execute(&sql, []).unwrap(), 1);
        }
    }
}

/// Waits (10 s at most) until `done`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Twilio's section, then a per-address limit of `burst` SMS (none more per minute).
fn sms_config(twilio: &FakeTwilio, burst: u32) -> String {
    format!(
        "threepid:\n  medium:\n{}session:\n  rateLimit:\n    perAddress:\n      burst: {burst}\n      perMinute: 0\n",
        twilio.config()
    )
}

/// A number no other test (or earlier run) uses, as typed in the UK.
fn fresh_number() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = (std::process::id() as usize * 100 + N.fetch_add(1, Ordering::SeqCst)) % 100_000;
    format!("07911 8{n:05}")
}

fn request_sms(s: &Mxisd, number: &str, secret: &str, attempt: i64) -> Response {
    s.post(
        &format!("{V1}/validate/msisdn/requestToken"),
        &json!({"client_secret": secret, "country": "GB", "phone_number": number, "send_attempt": attempt}).to_string(),
    )
}

fn submit_sms(s: &Mxisd, sid: &Value, secret: &str, code: &str) -> Response {
    s.post(
        &format!("{V1}/validate/msisdn/submitToken"),
        &json!({"sid": sid, "client_secret": secret, "token": code}).to_string(),
    )
}

/// The SMS the fake accepted for `number` (as Twilio sees it, `+44…`).
fn sms_to(twilio: &FakeTwilio, number: &str) -> usize {
    let e164 = format!("+44{}", number.replace(' ', "").trim_start_matches('0'));
    twilio
        .messages()
        .iter()
        .filter(|(to, _, _)| *to == e164)
        .count()
}

/// A wrong token, different for each `n`: 7 digits, so that it can never be one of the
/// 6-digit codes sent (the race resends codes nobody reads beforehand). It counts as a
/// wrong code all the same.
fn wrong_code(n: usize) -> String {
    format!("{:07}", n % 10_000_000)
}

/// How the guesses of a race were answered.
#[derive(Debug, Default)]
struct Judged {
    /// 400 M_TOKEN_INCORRECT: the guess was checked against the codes.
    wrong: usize,
    /// 400 M_NO_VALID_SESSION: not checked, the session had spent its budget.
    ended: usize,
}

/// Threads guessing codes of the session `sid` while other threads ask for resends of it
/// with ever higher `send_attempt`s, spread over `servers`; how the guesses were answered,
/// and the statuses of the resends.
fn race(servers: &[Mxisd], number: &str, secret: &str, sid: &Value) -> (Judged, Vec<u16>) {
    const GUESSERS: usize = 6;
    const GUESSES: usize = 25;
    const RESENDERS: usize = 3;
    const RESENDS: usize = 25;
    let attempt = AtomicI64::new(2);
    let wrong = AtomicUsize::new(0);
    let ended = AtomicUsize::new(0);
    let statuses = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for g in 0..GUESSERS {
            let (s, wrong, ended) = (&servers[g % servers.len()], &wrong, &ended);
            scope.spawn(move || {
                for i in 0..GUESSES {
                    let r = submit_sms(s, sid, secret, &wrong_code(g * GUESSES + i + 1));
                    match (r.status, r.json()["errcode"].as_str()) {
                        (400, Some("M_TOKEN_INCORRECT")) => wrong.fetch_add(1, Ordering::SeqCst),
                        (400, Some("M_NO_VALID_SESSION")) => ended.fetch_add(1, Ordering::SeqCst),
                        _ => panic!("a guess answered {} {}", r.status, r.text),
                    };
                }
            });
        }
        for t in 0..RESENDERS {
            let (s, attempt, statuses) = (&servers[(t + 1) % servers.len()], &attempt, &statuses);
            scope.spawn(move || {
                for _ in 0..RESENDS {
                    let n = attempt.fetch_add(1, Ordering::SeqCst);
                    let status = request_sms(s, number, secret, n).status;
                    statuses.lock().unwrap().push(status);
                }
            });
        }
    });
    let judged = Judged {
        wrong: wrong.into_inner(),
        ended: ended.into_inner(),
    };
    // Every guess was answered one way or the other (the session never validated).
    assert_eq!(
        judged.wrong + judged.ended,
        GUESSERS * GUESSES,
        "{judged:?}"
    );
    (judged, statuses.into_inner().unwrap())
}

/// A session of `number` started on `s`, with its first code sent: its sid and code.
fn started(s: &Mxisd, twilio: &FakeTwilio, number: &str, secret: &str) -> (Value, String) {
    let r = request_sms(s, number, secret, 1);
    assert_eq!(r.status, 200, "{}\n{}", r.text, s.log());
    let sent = twilio.messages().len();
    (r.json()["sid"].clone(), twilio.code(sent - 1))
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn refused_resends_racing_guesses_never_give_more_than_five_wrong_codes() {
    for postgres in [false, true] {
        let twilio = FakeTwilio::start(&[]);
        let servers = instances(postgres, &sms_config(&twilio, 1));
        let number = fresh_number();
        // Another session of the number on each other instance spends its limit for the
        // number: every resend of the session under test is refused.
        for (i, s) in servers.iter().enumerate().skip(1) {
            assert_eq!(request_sms(s, &number, &format!("other{i}"), 1).status, 200);
        }
        let (sid, code) = started(&servers[0], &twilio, &number, "race");
        let before = sms_to(&twilio, &number);
        let (judged, resends) = race(&servers, &number, "race", &sid);
        assert_eq!(sms_to(&twilio, &number), before, "nothing was resent");
        assert!(resends.contains(&429), "{resends:?}");
        assert!(
            resends.iter().all(|s| [200, 429].contains(s)),
            "{resends:?}"
        );
        assert_eq!(
            judged.wrong, PER_CODE,
            "postgres {postgres}: guesses checked with one code sent: {judged:?}"
        );
        // Still ended: even the right code is refused.
        submit_sms(&servers[0], &sid, "race", &code).assert_error(400, "M_NO_VALID_SESSION");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn failed_resends_racing_guesses_never_give_more_than_five_wrong_codes() {
    for postgres in [false, true] {
        let twilio = FakeTwilio::start(&[]);
        let servers = instances(postgres, &sms_config(&twilio, 1000));
        let number = fresh_number();
        let (sid, code) = started(&servers[0], &twilio, &number, "fail");
        // Twilio is gone: every resend fails.
        drop(twilio);
        let (judged, resends) = race(&servers, &number, "fail", &sid);
        assert!(resends.contains(&500), "{resends:?}");
        assert!(
            resends.iter().all(|s| [200, 500].contains(s)),
            "{resends:?}"
        );
        assert_eq!(
            judged.wrong, PER_CODE,
            "postgres {postgres}: guesses checked with one code sent: {judged:?}"
        );
        submit_sms(&servers[0], &sid, "fail", &code).assert_error(400, "M_NO_VALID_SESSION");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn resends_racing_guesses_give_five_wrong_codes_per_code_sent_and_fifteen_in_all() {
    for postgres in [false, true] {
        // Two codes in all (the first, and one resend let through by the limit: on
        // PostgreSQL one SMS per instance), where the per-code rule bounds the guesses
        // (10) below the lifetime one; then up to 5 SMS per instance, more codes than the
        // lifetime budget allows for.
        let two_codes = if postgres { 1 } else { 2 };
        for (burst, most) in [(two_codes, 2), (5, usize::MAX)] {
            let twilio = FakeTwilio::start(&[]);
            let servers = instances(postgres, &sms_config(&twilio, burst));
            let number = fresh_number();
            let (sid, _) = started(&servers[0], &twilio, &number, "all");
            let (judged, resends) = race(&servers, &number, "all", &sid);
            let sent = sms_to(&twilio, &number);
            assert!(sent <= most, "{sent} codes sent, burst {burst}");
            // Sent, refused by the limit, or refused once the session is over for good.
            assert!(
                resends.iter().all(|s| [200, 400, 429].contains(s)),
                "{resends:?}"
            );
            assert!(
                judged.wrong <= (PER_CODE * sent).min(LIFETIME),
                "postgres {postgres}, burst {burst}: {judged:?} with {sent} codes sent"
            );
        }
    }
}

/// Each code sent opens a window of 5 wrong codes; after 15 in all the session is over:
/// no new code is sent, every guess is refused unchecked.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn fifteen_wrong_codes_end_a_session_for_good() {
    for postgres in [false, true] {
        let twilio = FakeTwilio::start(&[]);
        let servers = instances(postgres, &sms_config(&twilio, 10));
        let number = fresh_number();
        let (sid, code) = started(&servers[0], &twilio, &number, "life");
        let mut guess = 0;
        for window in 0..3 {
            for _ in 0..PER_CODE {
                guess += 1;
                let s = &servers[guess % servers.len()];
                submit_sms(s, &sid, "life", &wrong_code(guess))
                    .assert_error(400, "M_TOKEN_INCORRECT");
            }
            submit_sms(&servers[0], &sid, "life", &code).assert_error(400, "M_NO_VALID_SESSION");
            let r = request_sms(
                &servers[window % servers.len()],
                &number,
                "life",
                window as i64 + 2,
            );
            if window < 2 {
                assert_eq!(r.status, 200, "{}", r.text);
                assert_eq!(r.json()["sid"], sid);
            } else {
                // The lifetime budget is spent: no SMS for a session that can never succeed.
                r.assert_error(400, "M_NO_VALID_SESSION");
            }
        }
        assert_eq!(sms_to(&twilio, &number), 3, "postgres {postgres}");
        let last = twilio.code(twilio.messages().len() - 1);
        for s in &servers {
            submit_sms(s, &sid, "life", &last).assert_error(400, "M_NO_VALID_SESSION");
            submit_sms(s, &sid, "life", &wrong_code(99)).assert_error(400, "M_NO_VALID_SESSION");
        }
    }
}

/// The three codes a user has stay valid through a resend that the limit refuses, and
/// through one whose SMS fails.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_refused_or_failed_resend_keeps_the_codes_already_sent() {
    for postgres in [false, true] {
        for fails in [false, true] {
            let twilio = FakeTwilio::start(&[]);
            // Refused: three SMS, the fourth over the limit. Failed: Twilio gone.
            let burst = if fails { 10 } else { 3 };
            let servers = instances(postgres, &sms_config(&twilio, burst));
            let s = &servers[0];
            let number = fresh_number();
            let (sid, first) = started(s, &twilio, &number, "keep");
            for attempt in 2..=3 {
                assert_eq!(request_sms(s, &number, "keep", attempt).status, 200);
            }
            assert_eq!(sms_to(&twilio, &number), 3);
            let twilio = if fails {
                drop(twilio);
                request_sms(s, &number, "keep", 4).assert_error(500, "M_SEND_ERROR");
                None
            } else {
                request_sms(s, &number, "keep", 4).assert_error(429, "M_LIMIT_EXCEEDED");
                assert_eq!(sms_to(&twilio, &number), 3);
                Some(twilio)
            };
            let r = submit_sms(s, &sid, "keep", &first);
            assert_eq!(
                (r.status, r.json()),
                (200, json!({"success": true})),
                "postgres {postgres}, send fails {fails}: the first code stays valid"
            );
            drop(twilio);
        }
    }
}

/// A code whose SMS went out while later resends were sent and stored counts as the newest
/// when it is stored at last: the rotation (3 codes kept) never drops the code just sent.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_code_stored_after_later_resends_stays_valid() {
    for postgres in [false, true] {
        // The second SMS (the resend of attempt 2) is answered only once released.
        let twilio = FakeTwilio::start_holding(2);
        let servers = instances(postgres, &sms_config(&twilio, 10));
        let number = fresh_number();
        let (sid, _) = started(&servers[0], &twilio, &number, "late");
        std::thread::scope(|scope| {
            let slow = scope.spawn(|| request_sms(&servers[0], &number, "late", 2));
            wait_until("the held SMS", || sms_to(&twilio, &number) == 2);
            for attempt in 3..=5 {
                let s = &servers[attempt % servers.len()];
                let r = request_sms(s, &number, "late", attempt as i64);
                assert_eq!(r.status, 200, "{}", r.text);
            }
            twilio.release();
            let r = slow.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
        });
        assert_eq!(sms_to(&twilio, &number), 5);
        let held = twilio.code(1);
        let r = submit_sms(&servers[0], &sid, "late", &held);
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"success": true})),
            "postgres {postgres}: the code stored last is valid"
        );
    }
}

/// A session that expires while a resend is being sent is not revived by storing its code:
/// it stays expired, and the code sent does not validate it.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_session_expired_while_its_code_is_sent_stays_expired() {
    for postgres in [false, true] {
        let twilio = FakeTwilio::start_holding(2);
        let (servers, db) = instances_on(postgres, &sms_config(&twilio, 10));
        let number = fresh_number();
        let (sid, _) = started(&servers[0], &twilio, &number, "gone");
        std::thread::scope(|scope| {
            let slow = scope.spawn(|| request_sms(&servers[0], &number, "gone", 2));
            wait_until("the held SMS", || sms_to(&twilio, &number) == 2);
            // Expired (and not yet swept) while the SMS is under way.
            set_expiry(&servers[0], &db, sid.as_str().unwrap(), 1);
            twilio.release();
            slow.join().unwrap().assert_error(400, "M_SESSION_EXPIRED");
        });
        let sent = twilio.code(1);
        submit_sms(&servers[0], &sid, "gone", &sent).assert_error(400, "M_SESSION_EXPIRED");
    }
}

/// The `threepid.medium.msisdn` section sending through a Twilio at `port` on loopback.
fn twilio_at(port: u16) -> String {
    format!(
        "threepid:\n  medium:\n    msisdn:\n      connectors:\n        twilio:\n          accountSid: ACtest\n          authToken: secret-token\n          number: '+15550001111'\n          baseUrl: 'http://127.0.0.1:{port}'\n"
    )
}

/// An instance killed while it sends a resend holds its attempt (a retry elsewhere sends
/// nothing) only for as long as the send could have taken under the connector's deadlines
/// (here 1 + 3 s, and the margin): then a retry of the same attempt is sent. Shared
/// databases only (on SQLite the killed instance was the only one).
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn an_instance_killed_while_sending_holds_the_attempt_only_for_its_deadlines() {
    let twilio = FakeTwilio::start(&[]);
    let silent = Silent::start();
    let db = fresh_database("limits");
    let common = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\nfederation:\n  connectTimeout: 1\n  timeout: 3\n",
        pg_connection(&db)
    );
    // The first sends into a Twilio that never answers; the other to the fake.
    let mut dying = Mxisd::start(&format!("{common}{}", twilio_at(silent.port)));
    let other = Mxisd::start(&format!("{common}{}", twilio_at(twilio.port)));
    let number = fresh_number();
    let (sid, _) = started(&other, &twilio, &number, "dead");
    let body = json!({"client_secret": "dead", "country": "GB", "phone_number": number, "send_attempt": 2}).to_string();
    let mut conn = dying.connect();
    write!(
        conn,
        "POST {V1}/validate/msisdn/requestToken HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_until("the send to Twilio", || {
        silent.accepted.load(Ordering::SeqCst) > 0
    });
    dying.signal("KILL");
    assert!(dying.wait_exit(Duration::from_secs(10)).is_some());
    // Its reservation holds: the retry elsewhere answers the session and sends nothing.
    let r = request_sms(&other, &number, "dead", 2);
    assert_eq!((r.status, &r.json()["sid"]), (200, &sid), "{}", r.text);
    assert_eq!(sms_to(&twilio, &number), 1);
    // Then it lapses (4 s of deadlines and the margin; far less than this bound).
    let deadline = Instant::now() + Duration::from_secs(60);
    while sms_to(&twilio, &number) == 1 {
        assert!(
            Instant::now() < deadline,
            "the dead instance's reservation still holds"
        );
        std::thread::sleep(Duration::from_millis(500));
        let r = request_sms(&other, &number, "dead", 2);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(sms_to(&twilio, &number), 2);
    drop(conn);
}
