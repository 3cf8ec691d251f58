//! The universal endpoint's body (`tower_ai_fallback::parse_universal`): a JSON array of
//! steps `{provider, endpoint, headers, query}`.
//!
//! Asserts: no panic; a refusal is a 400 with a message; an accepted body has 1 to
//! `MAX_STEPS` steps, in order, each sent to `{prefix}/{provider}/...` with a provider
//! name that is one path segment, and a body that is a JSON object sliced from the
//! input (not copied, not re-serialised).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tower_ai_fallback::{MAX_STEPS, parse_universal};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    for prefix in ["", "/v1/acct/gw"] {
        match parse_universal(&body, prefix) {
            Ok(steps) => {
                assert!(!steps.is_empty() && steps.len() <= MAX_STEPS);
                for (i, s) in steps.iter().enumerate() {
                    assert_eq!(s.index as usize, i);
                    assert!(!s.provider.is_empty() && !s.provider.contains('/'));
                    assert!(s.path.starts_with(&format!("{prefix}/{}/", s.provider)), "{}", s.path);
                    assert!(s.body.starts_with(b"{"));
                    let start = s.body.as_ptr() as usize - body.as_ptr() as usize;
                    assert!(start + s.body.len() <= body.len(), "a step body not sliced from the input");
                    // Valid JSON (by the grammar: a number past f64's range is valid
                    // JSON, which `Value` cannot hold but `IgnoredAny` reads).
                    assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&s.body).is_ok());
                }
            }
            Err(e) => {
                assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
                assert!(!e.message().is_empty());
            }
        }
    }
});
