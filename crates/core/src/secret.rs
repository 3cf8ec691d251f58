//! Naming secrets without revealing them.

use sha2::{Digest, Sha256};

/// A stable, non-reversible id for a credential (a provider key or a gateway token), for
/// logs, metric labels and cache scopes: `key_` and the first 16 hex digits of its
/// SHA-256. The same credential always gets the same id; the id never reveals it.
///
/// ```
/// let id = tower_ai_core::key_id("sk-secret");
/// assert!(id.starts_with("key_") && id.len() == 20);
/// assert!(!id.contains("secret"));
/// ```
pub fn key_id(credential: &str) -> String {
    let digest = Sha256::digest(credential.as_bytes());
    let mut out = String::with_capacity(20);
    out.push_str("key_");
    for b in &digest[..8] {
        out.push(char::from_digit((b >> 4) as u32, 16).expect("nibble"));
        out.push(char::from_digit((b & 0xf) as u32, 16).expect("nibble"));
    }
    out
}

/// The credential a request carries, if any: `authorization` (without `Bearer `),
/// `x-api-key`, `api-key` or `x-goog-api-key`, in that order.
pub fn credential(headers: &http::HeaderMap) -> Option<&str> {
    for name in crate::AuthStyle::CREDENTIAL_HEADERS {
        if let Some(v) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            let v = v.strip_prefix("Bearer ").unwrap_or(v).trim();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_distinct() {
        assert_eq!(key_id("a"), key_id("a"));
        assert_ne!(key_id("a"), key_id("b"));
        // sha256("a") = ca978112ca1bbdca...
        assert_eq!(key_id("a"), "key_ca978112ca1bbdca");
    }

    #[test]
    fn finds_the_credential() {
        let mut h = http::HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(credential(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().unwrap());
        assert_eq!(credential(&h), Some("k2"));
    }
}
