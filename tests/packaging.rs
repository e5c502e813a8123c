//! What the Debian package ships (`[package.metadata.deb]` in Cargo.toml): every file it
//! names is in the checkout, and the Synapse module it installs compiles.

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

#[test]
fn the_synapse_module_compiles() {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(Path::new(ROOT).join("etc/synapse/mxisd_password_auth.py"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
