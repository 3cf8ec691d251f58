//! Counting tokens where a provider reports none.

/// Texts longer than this (256 KiB) are estimated at one token per four bytes rather
/// than tokenized: tokenizing megabytes takes a CPU for a long while, on the thread that
/// finishes the response.
pub(crate) const MAX_TOKENIZED_LEN: usize = 256 * 1024;

/// Tokens in `text`, counted with tiktoken's `o200k_base` (the GPT-4o family's encoding;
/// a close estimate for other models' BPEs), or about one per four bytes without the
/// `tokenizer` feature and for texts over 256 KiB (tokenizing megabytes would hold a
/// CPU for a long while).
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if text.len() > MAX_TOKENIZED_LEN {
        return by_length(text.len());
    }
    count(text)
}

/// About one token per four bytes.
pub(crate) fn by_length(bytes: usize) -> u64 {
    bytes.div_ceil(4) as u64
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
        None => by_length(text.len()),
    }
}

#[cfg(not(feature = "tokenizer"))]
fn count(text: &str) -> u64 {
    by_length(text.len())
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

    #[test]
    fn long_texts_are_counted_by_length() {
        // One repeated character: a BPE merges it into far fewer tokens than bytes/4, so
        // getting exactly bytes/4 shows the tokenizer was not run.
        let long = "a".repeat(MAX_TOKENIZED_LEN + 4);
        assert_eq!(estimate_tokens(&long), (MAX_TOKENIZED_LEN as u64 + 4) / 4);
        let big = "word ".repeat(4 * 1024 * 1024);
        assert_eq!(estimate_tokens(&big), big.len() as u64 / 4);
    }
}
