//! The fuzz corpus replayed on stable (issue 25): every input kept in
//! `tests/fuzz/corpus/<target>/` (hand-written seeds, what the fuzzer kept, and each crash
//! it found) run through the same `mxisd::fuzz::<target>` the cargo-fuzz targets call,
//! whose property is that no input panics. The long runs are not here (README,
//! "Fuzzing"). Service-free, in-process, seconds.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, data)
        })
        .collect()
}

/// Runs every input of `target`'s corpus through `run`, naming the one that panics.
/// `at_least` is how many inputs the corpus has at least, and `reached` how many of them
/// at least go the whole way (`run` says so: a route found, a configuration accepted, ...),
/// so that an emptied corpus, or a target that returns early, cannot pass.
fn replay(target: &str, at_least: usize, reached: usize, run: fn(&[u8]) -> bool) {
    let inputs = corpus(target);
    assert!(
        inputs.len() >= at_least,
        "{target}: {} inputs, expected at least {at_least}",
        inputs.len()
    );
    let mut went_through = 0;
    for (path, data) in &inputs {
        match std::panic::catch_unwind(|| run(data)) {
            Ok(true) => went_through += 1,
            Ok(false) => {}
            Err(_) => panic!("{target}: {} panicked", path.display()),
        }
    }
    eprintln!(
        "{target}: {} inputs, {went_through} went the whole way",
        inputs.len()
    );
    assert!(
        went_through >= reached,
        "{target}: {went_through} of {} inputs went the whole way, expected at least {reached}",
        inputs.len()
    );
}

#[test]
fn request_corpus() {
    replay("request", 402, 281, mxisd::fuzz::request);
}

#[test]
fn config_corpus() {
    replay("config", 612, 16, mxisd::fuzz::config);
}

#[test]
fn canonical_json_corpus() {
    replay("canonical_json", 140, 30, mxisd::fuzz::canonical_json);
}

/// With `regression-content-type-added`: a template with no `Content-Type` whose text part
/// is sent as UTF-8 gets one with a charset (`mime.rs`); the target's check of added
/// headers first took that for a header out of nowhere.
#[test]
fn template_corpus() {
    replay("template", 155, 134, mxisd::fuzz::template);
}

#[test]
fn address_corpus() {
    replay("address", 433, 208, mxisd::fuzz::address);
}

#[test]
fn xmatrix_corpus() {
    replay("xmatrix", 54, 31, mxisd::fuzz::xmatrix);
}
