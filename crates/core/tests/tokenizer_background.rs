//! `load_tokenizer_in_background`: no estimate waits for the tokenizer to load. Its own
//! test binary, since the switch is process-wide.

#[cfg(feature = "tokenizer")]
#[test]
fn estimates_do_not_wait_for_the_tokenizer() {
    use std::time::{Duration, Instant};
    use tower_ai_core::{estimate_tokens, load_tokenizer_in_background};

    load_tokenizer_in_background();
    // One character repeated: a BPE merges it into far fewer tokens than bytes/4.
    let text = "a".repeat(4096);
    let start = Instant::now();
    assert_eq!(
        estimate_tokens(&text),
        1024,
        "bytes/4 while the tokenizer loads"
    );
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    // Loaded on its own thread; then estimates are the tokenizer's.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = estimate_tokens(&text);
        if n < 1024 {
            break;
        }
        assert!(Instant::now() < deadline, "the tokenizer never loaded");
        std::thread::sleep(Duration::from_millis(20));
    }
}
