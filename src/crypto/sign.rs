//! Signing JSON objects as the Matrix specification says (appendices, "Signing JSON"):
//! `signatures` and `unsigned` are set aside, the rest is canonicalised and signed, and the
//! signature lands at `signatures.<server name>.<key id>` in unpadded base64.

use super::b64;
use super::canonical::{canonical_json, CanonicalError};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Map, Value};

#[derive(Debug)]
pub enum SignError {
    NotAnObject,
    Canonical(CanonicalError),
    /// No signature by that server and key, or one that is not valid base64.
    MissingSignature,
    BadSignature,
}

impl std::fmt::Display for SignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignError::NotAnObject => f.write_str("only JSON objects can be signed"),
            SignError::Canonical(e) => e.fmt(f),
            SignError::MissingSignature => f.write_str("no signature from that key"),
            SignError::BadSignature => f.write_str("signature does not verify"),
        }
    }
}

impl std::error::Error for SignError {}

impl From<CanonicalError> for SignError {
    fn from(e: CanonicalError) -> Self {
        SignError::Canonical(e)
    }
}

/// The bytes that get signed: the object without `signatures` and `unsigned`.
fn signable(object: &Map<String, Value>) -> Result<String, SignError> {
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    Ok(canonical_json(&Value::Object(copy))?)
}

/// Adds this server's signature to `value`, keeping any signatures already there.
pub fn sign_json(
    value: &mut Value,
    server_name: &str,
    key_id: &str,
    key: &SigningKey,
) -> Result<(), SignError> {
    let object = value.as_object_mut().ok_or(SignError::NotAnObject)?;
    let signature = key.sign(signable(object)?.as_bytes());
    let signatures = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    let by_server = signatures
        .as_object_mut()
        .ok_or(SignError::NotAnObject)?
        .entry(server_name)
        .or_insert_with(|| Value::Object(Map::new()));
    if !by_server.is_object() {
        *by_server = Value::Object(Map::new());
    }
    if let Some(map) = by_server.as_object_mut() {
        map.insert(
            key_id.to_owned(),
            Value::String(b64::encode(&signature.to_bytes())),
        );
    }
    Ok(())
}

/// Checks the signature of `server_name`/`key_id` on `value` against `public_key`.
pub fn verify_json(
    value: &Value,
    server_name: &str,
    key_id: &str,
    public_key: &VerifyingKey,
) -> Result<(), SignError> {
    let object = value.as_object().ok_or(SignError::NotAnObject)?;
    let encoded = object
        .get("signatures")
        .and_then(|s| s.get(server_name))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or(SignError::MissingSignature)?;
    let bytes = b64::decode(encoded).ok_or(SignError::MissingSignature)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| SignError::BadSignature)?;
    public_key
        .verify(signable(object)?.as_bytes(), &signature)
        .map_err(|_| SignError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    #[test]
    fn signs_beside_other_signatures_and_checks_them() {
        let (a, b) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let mut value = json!({
            "x": 1,
            "unsigned": {"age": 5},
            "signatures": {"other.example": {"ed25519:o": "c2ln"}},
        });
        sign_json(&mut value, "a.example", "ed25519:1", &a).unwrap();
        sign_json(&mut value, "a.example", "ed25519:2", &b).unwrap();
        assert_eq!(value["signatures"]["other.example"]["ed25519:o"], "c2ln");
        assert!(verify_json(&value, "a.example", "ed25519:1", &a.verifying_key()).is_ok());
        assert!(verify_json(&value, "a.example", "ed25519:2", &b.verifying_key()).is_ok());
        // `unsigned` is not covered; everything else is.
        value["unsigned"] = json!({"age": 6});
        assert!(verify_json(&value, "a.example", "ed25519:1", &a.verifying_key()).is_ok());
        value["x"] = json!(2);
        assert!(matches!(
            verify_json(&value, "a.example", "ed25519:1", &a.verifying_key()),
            Err(SignError::BadSignature)
        ));
        assert!(matches!(
            verify_json(&value, "a.example", "ed25519:3", &a.verifying_key()),
            Err(SignError::MissingSignature)
        ));
        value["signatures"]["a.example"]["ed25519:1"] = json!("not base64!");
        assert!(matches!(
            verify_json(&value, "a.example", "ed25519:1", &a.verifying_key()),
            Err(SignError::MissingSignature)
        ));
        value["signatures"]["a.example"]["ed25519:1"] = json!("c2ln");
        assert!(matches!(
            verify_json(&value, "a.example", "ed25519:1", &a.verifying_key()),
            Err(SignError::BadSignature)
        ));
    }

    #[test]
    fn replaces_signatures_that_are_not_objects() {
        let key = SigningKey::from_bytes(&[1; 32]);
        for junk in [json!("x"), json!({"a.example": 3})] {
            let mut value = json!({"x": 1, "signatures": junk});
            sign_json(&mut value, "a.example", "ed25519:1", &key).unwrap();
            assert!(verify_json(&value, "a.example", "ed25519:1", &key.verifying_key()).is_ok());
        }
        assert!(matches!(
            sign_json(&mut json!([1]), "a.example", "ed25519:1", &key),
            Err(SignError::NotAnObject)
        ));
        assert!(matches!(
            verify_json(&json!([1]), "a.example", "ed25519:1", &key.verifying_key()),
            Err(SignError::NotAnObject)
        ));
        assert!(matches!(
            sign_json(&mut json!({"n": 0.5}), "a.example", "ed25519:1", &key),
            Err(SignError::Canonical(_))
        ));
    }

    #[test]
    fn errors_say_what_failed() {
        assert_eq!(
            SignError::NotAnObject.to_string(),
            "only JSON objects can be signed"
        );
        assert_eq!(
            SignError::MissingSignature.to_string(),
            "no signature from that key"
        );
        assert_eq!(
            SignError::BadSignature.to_string(),
            "signature does not verify"
        );
        assert_eq!(
            SignError::Canonical(CanonicalError::UnrepresentableNumber("0.5".into())).to_string(),
            "0.5 cannot be represented in canonical JSON"
        );
    }
}
