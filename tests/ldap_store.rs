//! The LDAP / Active Directory identity store against a real slapd (tests/services): 2,000+
//! fixture users (so listing pages past slapd's 500-entry limit), AD-style attributes,
//! filter injection, and a directory that goes down and comes back.

use crate::lookup::agreeing_lookups;
use crate::support;
use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::services::{ensure_up, get};
use crate::support::slapd::OwnSlapd;
use crate::support::{Mxisd, Response, TempDir};
use mxisd::crypto::hash::lookup_hash;
use serde_json::{json, Value};

fn ldap_config(port: &str, extra: &str) -> String {
    // The fixtures are OpenLDAP's: user ids in `uid` (mxisd's default is AD's
    // sAMAccountName), unless the test sets its own.
    let uid = if extra.contains("activeDirectory") {
        ""
    } else {
        "  attribute:\n    uid:\n      value: uid\n"
    };
    format!(
        "ldap:\n  enabled: true\n  connection:\n    host: '127.0.0.1'\n    port: {port}\n    bindDn: '{}'\n    bindPassword: '{}'\n    baseDNs: ['ou=people,{}']\n    timeout: 2\n{uid}{extra}lookup:\n  defaultRegion: GB\n{}",
        get("LDAP_ADMIN_DN"),
        get("LDAP_ADMIN_PASSWORD"),
        get("LDAP_BASE"),
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    )
}

/// The LDAP config with extra `ldap.connection` lines (TLS settings).
fn ldap_config_with_connection(port: &str, connection: &str) -> String {
    ldap_config(port, "").replace("    timeout: 2\n", &format!("    timeout: 2\n{connection}"))
}

fn lookup(s: &Mxisd, medium: &str, address: &str) -> Value {
    let address = address
        .replace('@', "%40")
        .replace('+', "%2B")
        .replace('*', "%2A")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace(' ', "%20");
    s.get(&format!(
        "/_matrix/identity/api/v1/lookup?medium={medium}&address={address}"
    ))
    .json()
}

fn hashed(s: &Mxisd, token: &str, pairs: &[(&str, &str)]) -> Value {
    let pepper = s.pepper(token);
    let hashes: Vec<String> = pairs
        .iter()
        .map(|(a, m)| lookup_hash(a, m, &pepper))
        .collect();
    let body = json!({"algorithm": "sha256", "pepper": pepper, "addresses": hashes});
    let r = Response::from(
        support::agent()
            .post(s.url("/_matrix/identity/v2/lookup"))
            .header("Authorization", &format!("Bearer {token}"))
            .send(body.to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["mappings"].clone()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn users_only_in_ldap_are_found_by_mail_and_phone_v1_and_v2() {
    ensure_up();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), ""));
    assert_eq!(
        lookup(&s, "email", "Alice@Example.org")["mxid"],
        "@alice:example.org"
    );
    // Stored as '+44 20 7946 0001'.
    assert_eq!(
        lookup(&s, "msisdn", "442079460001")["mxid"],
        "@alice:example.org"
    );
    assert_eq!(
        lookup(&s, "email", "user1999@example.org")["mxid"],
        "@user1999:example.org"
    );
    assert_eq!(lookup(&s, "email", "nobody@example.org"), json!({}));

    // The hash index holds every user: listing paged past slapd's 500-entry limit.
    // 2,003 users, each with a mail and a phone number.
    assert!(
        s.wait_for_log("hash index ready: 4006 hashes"),
        "{}",
        s.log()
    );
    let token = v2_token(&s, &hs, "reader");
    let found = hashed(
        &s,
        &token,
        &[
            ("user1999@example.org", "email"),
            ("12125551999", "msisdn"),
            ("442079460001", "msisdn"),
        ],
    );
    assert_eq!(found.as_object().unwrap().len(), 3, "{found}");
    assert!(found
        .as_object()
        .unwrap()
        .values()
        .any(|v| v == "@user1999:example.org"));
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn active_directory_attributes() {
    ensure_up();
    let extra = "  activeDirectory: true\n  attribute:\n    uid:\n      type: uid\n      value: userPrincipalName\n";
    let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), extra));
    // userPrincipalName Dave@corp.example: the user part, lower-cased.
    assert_eq!(
        lookup(&s, "email", "dave@example.org")["mxid"],
        "@dave:example.org"
    );
    // Users without the attribute have no Matrix ID.
    assert_eq!(lookup(&s, "email", "alice@example.org"), json!({}));
    let extra = "  activeDirectory: true\n";
    let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), extra)); // sAMAccountName
    assert_eq!(
        lookup(&s, "msisdn", "33123456789")["mxid"],
        "@dave:example.org"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn filter_injection_matches_nothing() {
    ensure_up();
    let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), ""));
    for address in [
        "*@*",
        "*)(uid=*)(mail=*@example.org",
        "alice@example.org)(|(uid=*",
        "a\\2a@example.org",
    ] {
        assert_eq!(lookup(&s, "email", address), json!({}), "{address}");
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_directory_that_goes_down_is_503_and_recovers() {
    ensure_up();
    let dir = TempDir::new();
    let slapd = OwnSlapd::start(&dir, "3891");
    let s = Mxisd::start(&ldap_config("3891", ""));
    assert_eq!(
        lookup(&s, "email", "bob@example.org")["mxid"],
        "@bob:example.org"
    );
    slapd.stop();
    let body = s
        .get("/_matrix/identity/api/v1/lookup?medium=email&address=bob%40example.org")
        .assert_error(503, "M_UNKNOWN");
    assert!(body["error"].as_str().unwrap().contains("ldap"), "{body}");
    slapd.restart();
    assert_eq!(
        lookup(&s, "email", "bob@example.org")["mxid"],
        "@bob:example.org"
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_wrong_bind_password_is_503_naming_the_store() {
    ensure_up();
    let config = ldap_config(get("LDAP_PORT"), "").replace(
        &format!("bindPassword: '{}'", get("LDAP_ADMIN_PASSWORD")),
        "bindPassword: 'wrong'",
    );
    let s = Mxisd::start(&config);
    s.get("/_matrix/identity/api/v1/lookup?medium=email&address=alice%40example.org")
        .assert_error(503, "M_UNKNOWN");
    assert!(s.wait_for_log("binding as"), "{}", s.log());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn ldaps_and_starttls_with_an_internal_ca() {
    ensure_up();
    let ca = format!("{}/tls/ca.pem", get("MXISD_TEST_DIR"));
    // LDAPS on its own port, StartTLS on the plain one: both trust the CA file.
    for (port, tls) in [
        (get("LDAPS_PORT"), "tls: true"),
        (get("LDAP_PORT"), "startTls: true"),
    ] {
        let connection = format!("    {tls}\n    caFile: '{ca}'\n");
        let s = Mxisd::start(&ldap_config_with_connection(port, &connection));
        assert_eq!(
            lookup(&s, "email", "bob@example.org")["mxid"],
            "@bob:example.org",
            "{tls}: {}",
            s.log()
        );
    }

    // Without the CA the server's certificate is not trusted: the store fails, loudly.
    let config = ldap_config_with_connection(
        get("LDAPS_PORT"),
        "    tls: true
",
    );
    let s = Mxisd::start(&config);
    s.get("/_matrix/identity/api/v1/lookup?medium=email&address=bob%40example.org")
        .assert_error(503, "M_UNKNOWN");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn hashed_lookups_keep_the_last_complete_index_while_the_directory_is_down() {
    ensure_up();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let slapd = OwnSlapd::start(&dir, "3892");
    let s = Mxisd::start(
        &ldap_config("3892", "").replace("lookup:\n", "hashing:\n  refreshInterval: 1\nlookup:\n"),
    );
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    let before = hashed(&s, &token, &[("bob@example.org", "email")]);
    assert_eq!(before.as_object().unwrap().len(), 1, "{before}");

    slapd.stop();
    // Refreshes fail now; the previous, complete index keeps answering.
    assert!(s.wait_for_log("hash index not refreshed"), "{}", s.log());
    assert_eq!(hashed(&s, &token, &[("bob@example.org", "email")]), before);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_directory_may_stay_out_of_the_hash_index() {
    ensure_up();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    // mxisd's docs say `ldap.lookup`, its code reads `ldap.identity.lookup`: both work.
    for switch in ["  lookup: false\n", "  identity:\n    lookup: false\n"] {
        let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), switch));
        s.wait_hash_index();
        assert!(
            s.log().contains("hash index ready: 0 hashes"),
            "{}",
            s.log()
        );
        assert_eq!(
            lookup(&s, "email", "alice@example.org")["mxid"],
            "@alice:example.org"
        );
        let token = v2_token(&s, &hs, "reader");
        assert_eq!(
            hashed(&s, &token, &[("alice@example.org", "email")]),
            json!({})
        );
    }
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn netiq_is_the_ldap_store_under_another_name() {
    ensure_up();
    let s = Mxisd::start(&ldap_config(get("LDAP_PORT"), "").replacen("ldap:\n", "netiq:\n", 1));
    assert_eq!(
        lookup(&s, "email", "alice@example.org")["mxid"],
        "@alice:example.org"
    );
}

/// Users of the filter tests, added to a slapd of the test's own: `ivy` is staff, `jack` a
/// disabled account, `kim` has no `employeeType` (so `(employeeType=staff)` leaves her out),
/// `lee` has a second address where the e-mail template does not look.
const FILTER_USERS: &str = "\
dn: uid=ivy,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: ivy
cn: ivy
sn: Example
employeeType: staff
mail: ivy@example.org
mobile: +44 7700 900101
telephoneNumber: +44 20 7946 0101

dn: uid=jack,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: jack
cn: jack
sn: Example
employeeType: disabled
mail: jack@example.org
mobile: +44 7700 900102
userPassword: jackpw

dn: uid=kim,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: kim
cn: kim
sn: Example
mail: kim@example.org
mobile: +44 7700-900 103
userPassword: kimpw

dn: uid=lee,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: lee
cn: lee
sn: Example
employeeType: staff
mail: Lee@Example.org
description: lee.alt@example.org
mobile: +44 7700 900104
";

/// The slapd of the filter tests, on `port`, with `FILTER_USERS`.
fn filter_slapd(dir: &TempDir, port: &'static str) -> OwnSlapd {
    let slapd = OwnSlapd::start(dir, port);
    slapd.add(&FILTER_USERS.replace("dc=example,dc=org", get("LDAP_BASE")));
    slapd
}

/// The addresses of the filter tests, as (address, medium).
const FILTER_ADDRESSES: [(&str, &str); 12] = [
    ("ivy@example.org", "email"),
    ("447700900101", "msisdn"),
    ("442079460101", "msisdn"),
    ("jack@example.org", "email"),
    ("447700900102", "msisdn"),
    ("kim@example.org", "email"),
    ("447700900103", "msisdn"),
    ("lee@example.org", "email"),
    ("lee.alt@example.org", "email"),
    ("447700900104", "msisdn"),
    ("alice@example.org", "email"),
    ("442079460001", "msisdn"),
];

/// The addresses of `FILTER_ADDRESSES` that v1, v2 `none` and v2 `sha256` lookups find
/// (asserting the three agree).
fn found(s: &Mxisd, token: &str) -> Vec<&'static str> {
    let answers = agreeing_lookups(s, token, &FILTER_ADDRESSES);
    FILTER_ADDRESSES
        .iter()
        .zip(answers)
        .filter(|(_, mxid)| mxid.is_some())
        .map(|((address, _), _)| *address)
        .collect()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn hashed_lookups_answer_what_single_lookups_answer_under_filters_and_templates() {
    ensure_up();
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let dir = TempDir::new();
    let _slapd = filter_slapd(&dir, "3917");
    let with_filters = |extra: &str| {
        ldap_config("3917", extra).replace(
            "      value: uid\n",
            "      value: uid\n    threepid:\n      email: ['mail', 'description']\n",
        )
    };

    // The global filter leaves out kim; the lookup filter, which replaces it as in mxisd
    // 1.4, lets her in and leaves out the disabled jack. The templates look at `mail` and
    // `mobile` only, not at `description` and `telephoneNumber`.
    let s = Mxisd::start(&with_filters(
        "  filter: '(employeeType=staff)'\n  identity:\n    filter: '(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))'\n    medium:\n      email: '(mail=%3pid)'\n      msisdn: '(|(mobile=%3pid)(mobile=+%3pid))'\n",
    ));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    assert_eq!(
        found(&s, &token),
        [
            "ivy@example.org",
            "447700900101",
            "kim@example.org",
            "447700900103",
            "lee@example.org",
            "447700900104",
            "alice@example.org",
        ]
    );

    // Without templates, every attribute of the medium; without a lookup filter, the
    // global one (kim and alice out).
    let s = Mxisd::start(&with_filters("  filter: '(employeeType=staff)'\n"));
    s.wait_hash_index();
    let token = v2_token(&s, &hs, "reader");
    assert_eq!(
        found(&s, &token),
        [
            "ivy@example.org",
            "447700900101",
            "442079460101",
            "lee@example.org",
            "lee.alt@example.org",
            "447700900104",
        ]
    );
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn a_flows_own_filter_replaces_the_global_one_as_in_mxisd_1_4() {
    ensure_up();
    let dir = TempDir::new();
    let _slapd = filter_slapd(&dir, "3918");
    let check = |s: &Mxisd, user: &str, password: &str| {
        let r = s.post(
            "/_matrix-internal/identity/v1/check_credentials",
            &json!({"user": {"id": user, "password": password}}).to_string(),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["auth"]["success"].clone()
    };
    // kim has no employeeType: the global filter refuses her, the login filter lets her in.
    let global = "  filter: '(employeeType=staff)'\n";
    let s = Mxisd::start(&ldap_config("3918", global));
    assert_eq!(check(&s, "@kim:example.org", "kimpw"), false);
    let s = Mxisd::start(&ldap_config(
        "3918",
        &format!("{global}  auth:\n    filter: '(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))'\n"),
    ));
    assert_eq!(check(&s, "@kim:example.org", "kimpw"), true);
    assert_eq!(check(&s, "@kim:example.org", "wrong"), false);
    assert_eq!(check(&s, "@jack:example.org", "jackpw"), false);
    // The login filter is for logins: lookups keep the global filter.
    assert_eq!(lookup(&s, "email", "kim@example.org"), json!({}));
}
