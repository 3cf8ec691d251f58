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

/// Loads the tokenizer now (it takes a few hundred milliseconds and ~50 MiB) rather than
/// on the first request that needs an estimate. Blocking: call it from a spare thread.
pub fn warm_up_tokenizer() {
    estimate_tokens("warm up");
}

/// From now on, the first estimate that needs the tokenizer starts loading it on a
/// thread of its own and, until it is loaded, estimates count one token per four bytes:
/// no request waits for the load, and a process that never needs an estimate never
/// pays the tokenizer's memory. (Without this, the first estimate loads it in place.)
pub fn load_tokenizer_in_background() {
    #[cfg(feature = "tokenizer")]
    tokenizer::BACKGROUND.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "tokenizer")]
mod tokenizer {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Once, OnceLock};

    pub(super) static BACKGROUND: AtomicBool = AtomicBool::new(false);
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    static LOADING: Once = Once::new();

    fn load() -> Option<tiktoken_rs::CoreBPE> {
        tiktoken_rs::o200k_base().ok()
    }

    pub(super) fn count(text: &str) -> u64 {
        let bpe = match BPE.get() {
            Some(bpe) => bpe,
            None if BACKGROUND.load(Ordering::Relaxed) => {
                LOADING.call_once(|| {
                    let _ = std::thread::Builder::new()
                        .name("aigw-tokenizer".into())
                        .spawn(|| {
                            BPE.get_or_init(load);
                        });
                });
                return super::by_length(text.len());
            }
            None => BPE.get_or_init(load),
        };
        match bpe {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => super::by_length(text.len()),
        }
    }
}

#[cfg(feature = "tokenizer")]
use tokenizer::count;

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
