//! The cache key's canonical JSON (`tower_ai_cache::canonical_json`).
//!
//! Asserts: no panic; deterministic; idempotent (the canonical form of a canonical form
//! is itself, so the key of `canonical(x)` is the key of `x`); blind to whitespace and
//! member order (the same value written out another way has the same canonical form);
//! `None` exactly when the body is not JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_ai_cache::canonical_json;

fuzz_target!(|data: &[u8]| {
    let parsed = serde_json::from_slice::<serde_json::Value>(data);
    let c = canonical_json(data);
    assert_eq!(c.is_some(), parsed.is_ok());
    let (Some(c), Ok(value)) = (c, parsed) else {
        return;
    };
    assert_eq!(canonical_json(data).as_ref(), Some(&c), "not deterministic");
    assert_eq!(canonical_json(&c).as_ref(), Some(&c), "not idempotent");
    let pretty = serde_json::to_vec_pretty(&value).expect("a Value serialises");
    assert_eq!(canonical_json(&pretty).as_ref(), Some(&c), "depends on layout");
});
