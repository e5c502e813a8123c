//! The README's "From zero to Synapse and Element over HTTPS": its nginx block, as written,
//! in front of a running mxisd, with the test CA's certificate; a client asks for the public
//! key and makes a hashed lookup over HTTPS, as Element does.

use crate::support::balancer::Balancer;
use crate::support::fake_homeserver::{federation_config, v2_token, FakeHomeserver};
use crate::support::free_port;
use crate::support::services::get;
use crate::support::Mxisd;
use mxisd::crypto::hash::lookup_hash;
use serde_json::{json, Value};
use std::process::Command;

/// The README's nginx block that the text says this test runs.
fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```nginx\n   # mxisd behind nginx with TLS\n")
        .expect("the README's HTTPS block");
    let body = &readme[start + "```nginx\n".len()..];
    let end = body.find("```").unwrap();
    // The block is indented under a list item.
    body[..end]
        .lines()
        .map(|l| l.strip_prefix("   ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `curl` over HTTPS, trusting the test CA: (status, body).
fn curl(url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
    let ca = format!("{}/tls/ca.pem", get("MXISD_TEST_DIR"));
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--cacert", &ca, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d", &b.to_string()]);
    }
    let out = cmd.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_readme_https_block_serves_element_s_requests() {
    let hs = FakeHomeserver::start("127.0.0.1", 0, &[]);
    let s = Mxisd::start(&format!(
        "http:\n  trustedProxies: ['127.0.0.1']\nmemory:\n  enabled: true\n  identities:\n    - username: alice\n      threepids:\n        - medium: email\n          address: alice@example.org\n{}",
        federation_config("  ipRangeWhitelist: ['127.0.0.0/8']\n")
    ));
    s.wait_hash_index();
    let block = readme_block();
    let port = free_port();
    let certs = format!("{}/tls", get("MXISD_TEST_DIR"));
    let site = block
        .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
        .replace("server_name id.example.org;", "server_name localhost;")
        .replace(
            "/etc/ssl/certs/id.example.org.pem",
            &format!("{certs}/server.pem"),
        )
        .replace(
            "/etc/ssl/private/id.example.org.key",
            &format!("{certs}/server.key"),
        )
        .replace("http://127.0.0.1:8090", &format!("http://{}", s.addr));
    assert!(
        site.contains(&port.to_string()) && site.contains(&s.addr.to_string()),
        "the README's block changed:\n{block}"
    );
    let _nginx = Balancer::serve("127.0.0.1", port, &site);
    let base = format!("https://localhost:{port}/_matrix/identity/v2");

    let (status, body) = curl(&format!("{base}/pubkey/ed25519:0"), None, None);
    assert_eq!(status, 200, "{body}");
    let direct = s.get("/_matrix/identity/v2/pubkey/ed25519:0").json();
    let through: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(through["public_key"], direct["public_key"]);

    let token = v2_token(&s, &hs, "carol");
    let (status, body) = curl(&format!("{base}/hash_details"), Some(&token), None);
    assert_eq!(status, 200, "{body}");
    let pepper = serde_json::from_str::<Value>(&body).unwrap()["lookup_pepper"]
        .as_str()
        .unwrap()
        .to_owned();
    let hash = lookup_hash("alice@example.org", "email", &pepper);
    let ask = json!({"algorithm": "sha256", "pepper": pepper, "addresses": [hash]});
    let (status, body) = curl(&format!("{base}/lookup"), Some(&token), Some(&ask));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"mappings": {hash: "@alice:example.org"}})
    );
    // `/_matrix-internal` is not proxied.
    let (status, _) = curl(
        &format!("https://localhost:{port}/_matrix-internal/identity/v1/check_credentials"),
        None,
        Some(&json!({})),
    );
    assert_eq!(status, 404);
}
