//! What the Debian package ships (`[package.metadata.deb]` in Cargo.toml): every file it
//! names is in the checkout, and the Synapse module it installs loads in Synapse.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The source paths of the package's assets (but the binary, which `cargo deb` builds).
fn asset_sources() -> Vec<String> {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).unwrap();
    let assets = manifest
        .split("assets = [")
        .nth(1)
        .and_then(|rest| rest.split("\n]").next())
        .expect("[package.metadata.deb] assets");
    assets
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[\"")?.split('"').next())
        .filter(|source| !source.starts_with("target/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_packaged_file_is_in_the_checkout() {
    let sources = asset_sources();
    assert!(
        sources.contains(&"etc/synapse/mxisd_password_auth.py".to_owned()),
        "{sources:?}"
    );
    for source in sources {
        let dir = Path::new(ROOT).join(source.trim_end_matches("/*"));
        assert!(dir.exists(), "{source} is packaged but missing");
    }
}

/// The module loads as Synapse loads it, under Synapse's own Python with its module API
/// (`tests/services/synapse/check_module.py`): a wrong import, a ModuleApi method Synapse
/// does not have, or a callback registered with the wrong arguments fails here.
#[test]
#[ignore = "needs root and the test services: bash tests/run.sh"]
fn the_synapse_module_loads_in_synapse() {
    crate::support::services::ensure_up();
    let python = Path::new(crate::support::services::get("SYNAPSE_VENV")).join("bin/python");
    assert!(
        python.is_file(),
        "no Synapse venv at {}: run bash tests/services/up.sh",
        python.display()
    );
    let out = Command::new(python)
        .arg(Path::new(ROOT).join("tests/services/synapse/check_module.py"))
        .env("PYTHONPATH", Path::new(ROOT).join("etc/synapse"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What it checked against Synapse: the module's calls, found in its source.
    for used in [
        "ModuleApi.register_user",
        "ModuleApi.check_user_exists",
        "SimpleHttpClient.post_json_get_json",
    ] {
        assert!(stdout.contains(used), "{used} not checked: {stdout}");
    }
}
