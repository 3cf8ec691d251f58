//! Counting tokens where a provider reports none.

/// Tokens in `text`, counted with tiktoken's `o200k_base` (the GPT-4o family's encoding;
/// a close estimate for other models' BPEs), or about one per four bytes without the
/// `tokenizer` feature.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    count(text)
}

/// Loads the tokenizer now (it takes a moment) rather than on the first request that
/// needs an estimate. Blocking: call it from a spare thread at start-up.
pub fn warm_up_tokenizer() {
    estimate_tokens("warm up");
}

#[cfg(feature = "tokenizer")]
fn count(text: &str) -> u64 {
    use std::sync::OnceLock;
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    match BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()) {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => text.len().div_ceil(4) as u64,
    }
}

#[cfg(not(feature = "tokenizer"))]
fn count(text: &str) -> u64 {
    text.len().div_ceil(4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(estimate_tokens(""), 0);
        let n = estimate_tokens("Hello from the mock provider.");
        assert!((4..=8).contains(&n), "{n}");
    }
}
