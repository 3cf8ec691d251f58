//! The memory store's byte bound is a bound on memory: what the process allocates for
//! its entries, counted by the allocator, stays within `max_bytes` (and a small margin).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tower_ai_cache::{CacheKey, Entry, MemoryStore};

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn entry(i: usize, body_len: usize) -> Entry {
    // As a grown map would be: the bound must count its room, not only its headers.
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut body = format!("{{\"id\":\"chatcmpl-{i}\",\"choices\":[]}}").into_bytes();
    body.resize(body_len, b' ');
    Entry {
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body),
        usage: None,
        stored_at: SystemTime::now(),
        sse: false,
    }
}

fn key(i: usize) -> CacheKey {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    CacheKey::from_bytes(b)
}

#[test]
fn memory_in_use_stays_within_the_bound() {
    for body_len in [64, 400, 4096] {
        let max_bytes = 8 << 20;
        let before = ALLOC.allocated();
        let store = MemoryStore::new(max_bytes);
        // Far more than fits: the store evicts to stay within its bound.
        let n = 4 * max_bytes as usize / body_len.max(256);
        for i in 0..n {
            store.insert(key(i), entry(i, body_len), Duration::from_secs(600));
        }
        let used = ALLOC.allocated() - before;
        println!(
            "body {body_len} B: {} entries, bytes_used {} KiB, allocated {} KiB",
            store.len(),
            store.bytes_used() / 1024,
            used / 1024
        );
        assert!(store.bytes_used() <= max_bytes);
        // The store's own tables come on top of its entries: a quarter at most.
        assert!(
            used <= max_bytes as usize + max_bytes as usize / 4,
            "{} KiB allocated for a bound of {} KiB",
            used / 1024,
            max_bytes / 1024
        );
        drop(store);
    }
}
