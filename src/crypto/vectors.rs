//! Every vector of `tests/data/matrix-json-signing.json`, made with the Python
//! reference libraries (canonicaljson, signedjson, hashlib), reproduced by our code.

use super::{b64, canonical::canonical_json, hash::lookup_hash, sign::sign_json, verify_json};
use ed25519_dalek::SigningKey;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/matrix-json-signing.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("vectors file is JSON")
}

#[test]
fn canonical_json_vectors() {
    let cases = vectors()["canonical_json"]
        .as_array()
        .cloned()
        .expect("cases");
    assert!(cases.len() >= 10);
    for case in cases {
        assert_eq!(
            canonical_json(&case["input"]).unwrap(),
            case["canonical"].as_str().unwrap(),
            "input {}",
            case["input"]
        );
    }
}

#[test]
fn signing_vectors() {
    let all = vectors();
    let signing = &all["signing"];
    let seed: [u8; 32] = b64::decode(signing["seed_unpadded_base64"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = SigningKey::from_bytes(&seed);
    assert_eq!(
        b64::encode(key.verifying_key().as_bytes()),
        signing["public_key_unpadded_base64"].as_str().unwrap()
    );
    let key_id = signing["key_id"].as_str().unwrap();
    let cases = signing["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let server = case["server_name"].as_str().unwrap();
        let mut value = case["input"].clone();
        sign_json(&mut value, server, key_id, &key).unwrap();
        assert_eq!(value, case["signed"], "input {}", case["input"]);
        verify_json(&case["signed"], server, key_id, &key.verifying_key()).unwrap();

        let mut tampered = case["signed"].clone();
        tampered["extra"] = Value::from(1);
        assert!(verify_json(&tampered, server, key_id, &key.verifying_key()).is_err());
    }
}

#[test]
fn lookup_hash_vectors() {
    let cases = vectors()["hashed_lookup_sha256"]["cases"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let s = |k: &str| case[k].as_str().unwrap().to_owned();
        assert_eq!(
            lookup_hash(&s("address"), &s("medium"), &s("pepper")),
            s("lookup_hash")
        );
    }
}
