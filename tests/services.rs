//! The test services of `tests/services/` answer for real: an LDAP search finds a fixture, a
//! SQL select answers, an SRV query answers, a sent mail is stored.

use crate::support::services::{ensure_up, get, port, psql};
use std::process::Command;
use std::time::{Duration, Instant};

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn slapd_finds_a_fixture_user_and_checks_its_password() {
    ensure_up();
    let url = format!("ldap://127.0.0.1:{}", port("LDAP_PORT"));
    let base = format!("ou=people,{}", get("LDAP_BASE"));
    let found = output(Command::new("ldapsearch").args([
        "-x",
        "-LLL",
        "-H",
        &url,
        "-b",
        &base,
        "(mail=alice@example.org)",
        "uid",
        "telephoneNumber",
    ]));
    assert!(found.contains("uid: alice"), "{found}");
    assert!(
        found.contains("telephoneNumber: +44 20 7946 0001"),
        "{found}"
    );
    let dn = format!("uid=bob,{base}");
    let who = output(Command::new("ldapwhoami").args(["-x", "-H", &url, "-D", &dn, "-w", "bobpw"]));
    assert_eq!(who.trim(), format!("dn:{dn}"));
    let wrong = Command::new("ldapwhoami")
        .args(["-x", "-H", &url, "-D", &dn, "-w", "nope"])
        .output()
        .unwrap();
    assert!(!wrong.status.success());
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn postgresql_answers_a_select() {
    ensure_up();
    let psql = |sql: &str| psql(get("PG_DB"), sql);
    psql("CREATE TABLE IF NOT EXISTS services_probe (medium TEXT, address TEXT)");
    psql("DELETE FROM services_probe");
    psql("INSERT INTO services_probe VALUES ('email', 'alice@example.org')");
    assert_eq!(
        psql("SELECT address FROM services_probe WHERE medium = 'email'").trim(),
        "alice@example.org"
    );
    assert!(psql("SHOW server_version").trim().len() >= 2);
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn dnsmasq_answers_srv_and_address_queries() {
    ensure_up();
    let dig = |kind: &str, name: &str| {
        output(Command::new("dig").args([
            "+short",
            "+time=2",
            "+tries=2",
            "@127.0.0.1",
            "-p",
            get("DNS_PORT"),
            kind,
            name,
        ]))
    };
    assert_eq!(
        dig("SRV", "_matrix-identity._tcp.example.net").trim(),
        "10 5 8090 id.example.net."
    );
    assert_eq!(dig("A", "id.example.net").trim(), "127.0.0.1");
    assert_eq!(dig("A", "private.example.net").trim(), "10.0.0.1");
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_smtp_sink_stores_a_sent_mail() {
    ensure_up();
    let token = format!("token-{}", std::process::id());
    let script = format!(
        "import smtplib\nfrom email.message import EmailMessage\nm = EmailMessage()\nm['From'] = 'id@example.org'\nm['To'] = 'alice@example.org'\nm['Subject'] = 'probe'\nm.set_content('{token}')\ns = smtplib.SMTP('127.0.0.1', {}, timeout=5)\ns.send_message(m)\ns.quit()\n",
        port("SMTP_PORT")
    );
    output(Command::new("/usr/bin/python3").args(["-c", &script]));
    let maildir = std::path::Path::new(get("MXISD_TEST_DIR")).join("smtp/maildir/new");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = std::fs::read_dir(&maildir)
            .map(|dir| {
                dir.filter_map(Result::ok).any(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .contains(&token)
                })
            })
            .unwrap_or(false);
        if stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mail with {token} not stored in {}",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
