//! Synapse logins against the directory: the test Synapse loads our password-auth module
//! (`etc/synapse/`, configured as the README's "Synapse logins" says) pointed at the mxisd
//! on `SYNAPSE_AUTH_PORT`, which only this test runs: with the static store and slapd,
//! then stopped, then replaced by a socket that never answers.

use crate::support::services::{ensure_up, get};
use crate::support::slapd::OwnSlapd;
use crate::support::{self, Mxisd, Response, Silent, TempDir};
use crate::synapse::client_api;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn login(identifier: Value, password: &str) -> Response {
    let body = json!({"type": "m.login.password", "identifier": identifier, "password": password});
    Response::from(
        support::agent()
            .post(client_api("/_matrix/client/v3/login"))
            .send(body.to_string()),
    )
}

fn by_name(localpart: &str) -> Value {
    json!({"type": "m.id.user", "user": localpart})
}

/// A successful login's (user id, access token).
fn logged_in(r: &Response, mxisd: &Mxisd) -> (String, String) {
    assert_eq!(r.status, 200, "{}\n{}", r.text, mxisd.log());
    let body = r.json();
    (
        body["user_id"].as_str().unwrap().to_owned(),
        body["access_token"].as_str().unwrap().to_owned(),
    )
}

fn client_get(path: &str, token: &str) -> Value {
    let r = Response::from(
        support::agent()
            .get(client_api(path))
            .header("Authorization", &format!("Bearer {token}"))
            .call(),
    );
    assert_eq!(r.status, 200, "{path}: {}", r.text);
    r.json()
}

fn display_name(user_id: &str, token: &str) -> Value {
    client_get(
        &format!("/_matrix/client/v3/profile/{user_id}/displayname"),
        token,
    )["displayname"]
        .clone()
}

/// The account's 3PIDs, as (medium, address).
fn threepids(token: &str) -> Vec<(String, String)> {
    let list = client_get("/_matrix/client/v3/account/3pid", token);
    list["threepids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["medium"].as_str().unwrap().to_owned(),
                t["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// mxisd for Synapse's users, on the port the module calls: the static store and slapd.
fn mxisd_for_synapse(dir: TempDir, slapd: &OwnSlapd, tag: &str) -> Mxisd {
    let config = dir.join("mxisd.yaml");
    let text = format!(
        "matrix:\n  domain: '{server}'\nserver:\n  port: {port}\nkey:\n  path: '{keys}'\nstorage:\n  provider:\n    sqlite:\n      database: '{db}'\nmemory:\n  enabled: true\n  identities:\n    - username: dora{tag}\n      password: dorapw\n      displayName: Dora Static\n      threepids:\n        - medium: email\n          address: dora{tag}@example.org\n    - username: nameless{tag}\n      password: namelesspw\n      threepids:\n        - medium: email\n          address: nameless{tag}@example.org\nldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {ldap}\n    bindDn: '{dn}'\n    bindPassword: '{pw}'\n    baseDNs: ['ou=people,{base}']\n    timeout: 2\n  attribute:\n    uid:\n      value: uid\n",
        server = get("SYNAPSE_SERVER_NAME"),
        port = get("SYNAPSE_AUTH_PORT"),
        keys = dir.join("keys").display(),
        db = dir.join("mxisd.db").display(),
        ldap = slapd.port,
        dn = get("LDAP_ADMIN_DN"),
        pw = get("LDAP_ADMIN_PASSWORD"),
        base = get("LDAP_BASE"),
    );
    std::fs::write(&config, text).unwrap();
    Mxisd::spawn(dir, &config)
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn synapse_logs_directory_users_in_through_our_module() {
    ensure_up();
    // Synapse keeps its accounts across runs: every user here is new.
    let tag = format!("{}x{}", std::process::id(), mxisd::now_ms() % 1_000_000_000);
    // Synapse gives a phone number to one account only: a new one each run too.
    let phone = format!("{:06}", mxisd::now_ms() % 1_000_000);
    let slapd_dir = TempDir::new();
    let slapd = OwnSlapd::start(&slapd_dir, "3894");
    slapd.add(&format!(
        "dn: uid=carol{tag},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: carol{tag}\ncn: Carol\nsn: Directory\ndisplayName: Carol Directory\nmail: Carol{tag}@Example.org\ntelephoneNumber: +44 7911 {phone}\nuserPassword: carolpw\n",
        base = get("LDAP_BASE")
    ));
    let mut s = mxisd_for_synapse(TempDir::new(), &slapd, &tag);
    let server = get("SYNAPSE_SERVER_NAME");

    // The static store: the first login creates the account with the store's profile.
    let dora = format!("dora{tag}");
    let dora_email = format!("dora{tag}@example.org");
    let (user_id, token) = logged_in(&login(by_name(&dora), "dorapw"), &s);
    assert_eq!(user_id, format!("@{dora}:{server}"));
    assert_eq!(display_name(&user_id, &token), "Dora Static");
    assert_eq!(
        threepids(&token),
        vec![("email".into(), dora_email.clone())]
    );
    // A wrong password, then the e-mail address as identifier; repeated logins add no
    // second copy of a 3PID.
    login(by_name(&dora), "wrong").assert_error(403, "M_FORBIDDEN");
    let by_email = json!({"type": "m.id.thirdparty", "medium": "email", "address": dora_email});
    let (again, _) = logged_in(&login(by_email.clone(), "dorapw"), &s);
    assert_eq!(again, user_id);
    login(by_email, "wrong").assert_error(403, "M_FORBIDDEN");
    // Typed with capitals, as Synapse's own logins allow.
    let (again, _) = logged_in(&login(by_name(&dora.to_uppercase()), "dorapw"), &s);
    assert_eq!(again, user_id);
    assert_eq!(threepids(&token), vec![("email".into(), dora_email)]);

    // A user without a display name: the first login works (Synapse's default name).
    let nameless = format!("nameless{tag}");
    let (user_id, token) = logged_in(&login(by_name(&nameless), "namelesspw"), &s);
    assert_eq!(display_name(&user_id, &token), nameless.as_str());

    // slapd: the directory's display name, e-mail address and phone number.
    let carol = format!("carol{tag}");
    let (user_id, token) = logged_in(&login(by_name(&carol), "carolpw"), &s);
    assert_eq!(display_name(&user_id, &token), "Carol Directory");
    let mut pids = threepids(&token);
    pids.sort();
    assert_eq!(
        pids,
        vec![
            ("email".into(), format!("carol{tag}@example.org")),
            ("msisdn".into(), format!("447911{phone}"))
        ]
    );
    login(by_name(&carol), "wrong").assert_error(403, "M_FORBIDDEN");

    // mxisd stopped: refused at once (the connection is refused), not after the timeout.
    s.signal("TERM");
    s.wait_exit(Duration::from_secs(20)).unwrap();
    let started = Instant::now();
    login(by_name(&dora), "dorapw").assert_error(403, "M_FORBIDDEN");
    let timeout = Duration::from_secs(get("SYNAPSE_AUTH_TIMEOUT").parse().unwrap());
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());

    // mxisd replaced by a socket that never answers: the login waits for the module's
    // timeout and is refused; meanwhile Synapse serves other requests.
    let silent = Silent::start_on(get("SYNAPSE_AUTH_PORT").parse().unwrap());
    let started = Instant::now();
    let name = dora.clone();
    let hung = std::thread::spawn(move || login(by_name(&name), "dorapw"));
    std::thread::sleep(Duration::from_millis(500));
    let other = Response::from(
        support::agent()
            .get(client_api("/_matrix/client/versions"))
            .call(),
    );
    assert_eq!(other.status, 200);
    assert!(
        !hung.is_finished(),
        "the other request was answered while the login waits"
    );
    let r = hung.join().unwrap();
    r.assert_error(403, "M_FORBIDDEN");
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(5),
        "{waited:?}"
    );
    // A login by address is asked again by user id by Synapse (it knows dora's address):
    // that second ask is not a second wait. (Another password than the login above, whose
    // timeout the module remembers for that attempt only.)
    let by_email = json!({"type": "m.id.thirdparty", "medium": "email", "address": format!("dora{tag}@example.org")});
    let started = Instant::now();
    login(by_email, "another try").assert_error(403, "M_FORBIDDEN");
    let waited = started.elapsed();
    assert!(waited >= timeout && waited < timeout * 2, "{waited:?}");
    let log =
        std::fs::read_to_string(format!("{}/synapse/synapse.log", get("MXISD_TEST_DIR"))).unwrap();
    assert!(
        log.contains(&format!(
            "mxisd gave no answer a moment ago; login of @dora{tag}:{server} refused"
        )),
        "the second ask was not a second wait"
    );
    drop(silent);
    assert!(
        log.contains(&format!(
            "mxisd gave no answer within {} s for @dora{tag}:{server}; login refused",
            timeout.as_secs()
        )),
        "Synapse's log says why"
    );
}

/// The YAML lines of `text` from `modules:` to the end of its block: comments and
/// trailing blanks dropped, indentation made relative to `modules:`.
fn modules_block(text: &str) -> Vec<String> {
    let start = text.find("modules:\n").expect("a modules: block");
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = start - line_start;
    let mut lines = Vec::new();
    for line in text[line_start..].lines() {
        let code = line.split(" #").next().unwrap_or_default().trim_end();
        if code.trim().is_empty() || code.trim_start().starts_with('#') {
            continue;
        }
        if code.trim_start().starts_with("```")
            || (!lines.is_empty() && !code.starts_with(&" ".repeat(indent + 1)))
        {
            break;
        }
        lines.push(code[indent.min(code.len())..].to_owned());
    }
    lines
}

/// The README's "Synapse logins" block is what the test Synapse runs with, its endpoint
/// port and timeout aside.
#[test]
fn the_readme_block_is_what_the_test_synapse_loads() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("## Synapse logins against your directory")
        .nth(1)
        .unwrap();
    let config =
        std::fs::read_to_string(format!("{root}/tests/services/synapse/homeserver.yaml")).unwrap();
    let ours = modules_block(&config)
        .into_iter()
        .map(|l| {
            l.replace("@AUTH_PORT@", "8090")
                .replace("@AUTH_TIMEOUT@", "5")
        })
        .collect::<Vec<_>>();
    assert!(ours.len() > 10, "{ours:?}");
    assert_eq!(modules_block(section), ours);
}
