//! The budget of wrong SMS codes against the real binary, on SQLite and on PostgreSQL
//! (there, two instances sharing the database): 5 wrong codes per code sent, 15 over a
//! session's life, never reset; a resend that is refused (429) or whose SMS fails changes
//! nothing — neither the count of wrong codes, racing guesses included, nor the codes the
//! user already has.

use crate::support::fake_homeserver::FakeTwilio;
use crate::support::services::{fresh_database, pg_connection};
use crate::support::{Mxisd, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

const V1: &str = "/_matrix/identity/api/v1";
/// The per-code and lifetime budgets (`session::MAX_FAILURES`, `MAX_LIFETIME_FAILURES`).
const PER_CODE: usize = 5;
const LIFETIME: usize = 15;

/// The instances a test runs against: one on SQLite, or two sharing one PostgreSQL
/// database, each with `extra`.
fn instances(postgres: bool, extra: &str) -> Vec<Mxisd> {
    if !postgres {
        return vec![Mxisd::start(extra)];
    }
    let storage = format!(
        "storage:\n  backend: postgresql\n  provider:\n    postgresql:\n      connection: '{}'\n{extra}",
        pg_connection(&fresh_database("limits"))
    );
    vec![Mxisd::start(&storage), Mxisd::start(&storage)]
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
fn resends_racing_guesses_give_five_wrong_codes_per_code_sent_and_fifteen_in_all() {
    for postgres in [false, true] {
        let twilio = FakeTwilio::start(&[]);
        // Up to 5 SMS per instance: more codes than the lifetime budget allows for.
        let servers = instances(postgres, &sms_config(&twilio, 5));
        let number = fresh_number();
        let (sid, _) = started(&servers[0], &twilio, &number, "all");
        let (judged, resends) = race(&servers, &number, "all", &sid);
        let sent = sms_to(&twilio, &number);
        // Sent, refused by the limit, or refused once the session is over for good.
        assert!(
            resends.iter().all(|s| [200, 400, 429].contains(s)),
            "{resends:?}"
        );
        assert!(
            judged.wrong <= (PER_CODE * sent).min(LIFETIME),
            "postgres {postgres}: {judged:?} with {sent} codes sent"
        );
    }
}

/// Each code sent opens a window of 5 wrong codes; after 15 in all the session is over:
/// no new code is sent, every guess is refused unchecked.
#[test]
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
