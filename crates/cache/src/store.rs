//! [`CacheStore`]: where entries live, and the [`Entry`] they hold.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tower_ai_core::Usage;

use crate::key::CacheKey;

/// The future a [`CacheStore`] answers with: boxed, `Send`, and owning what it needs.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A stored response: what a hit replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The status (always a 2xx).
    pub status: StatusCode,
    /// The headers worth replaying (`content-type`, `content-encoding`,
    /// `content-language`).
    pub headers: HeaderMap,
    /// The whole body: a JSON document, or the SSE stream as it was sent.
    pub body: Bytes,
    /// The usage the response reported, for the meter to record what a hit saved.
    pub usage: Option<Usage>,
    /// When it was stored.
    pub stored_at: SystemTime,
    /// Whether the body is a `text/event-stream`.
    pub sse: bool,
}

/// What a [`CacheStore`] found for a key.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// A live entry.
    Hit(Arc<Entry>),
    /// An entry that was there but whose TTL has passed (a miss, reported `EXPIRED`).
    Expired,
    /// Nothing.
    Miss,
}

/// Where the cache keeps its entries: [`MemoryStore`](crate::MemoryStore) (the
/// default), `RedisStore` (feature `redis`), `()` (keeps nothing: the layer then only
/// coalesces identical concurrent requests), or your own.
///
/// A store never fails a request: when it cannot answer (a backend down or slow), `get`
/// is a [`Lookup::Miss`] and `put` drops the entry, with a warning in the log.
pub trait CacheStore: Send + Sync + 'static {
    /// Looks `key` up.
    fn get(&self, key: &CacheKey) -> StoreFuture<Lookup>;

    /// Stores `entry` under `key` for `ttl`.
    fn put(&self, key: &CacheKey, entry: Entry, ttl: Duration) -> StoreFuture<()>;

    /// Removes `key`; whether there was an entry.
    fn delete(&self, key: &CacheKey) -> StoreFuture<bool>;

    /// Removes every entry of this store.
    fn clear(&self) -> StoreFuture<()>;
}

/// Keeps nothing: every lookup is a miss.
impl CacheStore for () {
    fn get(&self, _: &CacheKey) -> StoreFuture<Lookup> {
        Box::pin(std::future::ready(Lookup::Miss))
    }
    fn put(&self, _: &CacheKey, _: Entry, _: Duration) -> StoreFuture<()> {
        Box::pin(std::future::ready(()))
    }
    fn delete(&self, _: &CacheKey) -> StoreFuture<bool> {
        Box::pin(std::future::ready(false))
    }
    fn clear(&self) -> StoreFuture<()> {
        Box::pin(std::future::ready(()))
    }
}

impl<T: CacheStore + ?Sized> CacheStore for Arc<T> {
    fn get(&self, key: &CacheKey) -> StoreFuture<Lookup> {
        (**self).get(key)
    }
    fn put(&self, key: &CacheKey, entry: Entry, ttl: Duration) -> StoreFuture<()> {
        (**self).put(key, entry, ttl)
    }
    fn delete(&self, key: &CacheKey) -> StoreFuture<bool> {
        (**self).delete(key)
    }
    fn clear(&self) -> StoreFuture<()> {
        (**self).clear()
    }
}

const MAGIC: &[u8; 4] = b"TAC1";

impl Entry {
    /// The headers of a response that an entry keeps.
    pub const KEPT_HEADERS: [HeaderName; 3] = [
        http::header::CONTENT_TYPE,
        http::header::CONTENT_ENCODING,
        http::header::CONTENT_LANGUAGE,
    ];

    /// About how many bytes the entry takes in memory: the body, the headers' bytes and
    /// the header map's own tables (by its capacity), and the entry itself.
    pub fn size(&self) -> usize {
        // A header map slot: its name and value (and the links between them), plus an
        // index; measured, not guessed: `tests/memory_bound.rs` holds the store to it.
        const HEADER_SLOT: usize = 120;
        let bytes: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        self.body.len() + bytes + self.headers.capacity() * HEADER_SLOT + size_of::<Self>()
    }

    /// A compact binary encoding, for stores that keep bytes (e.g. Redis): a small
    /// header (magic, status, flags, stored-at, usage, headers) then the body as it is.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size());
        out.put_slice(MAGIC);
        out.put_u16(self.status.as_u16());
        out.put_u8(u8::from(self.sse) | (u8::from(self.usage.is_some()) << 1));
        let ms = self
            .stored_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        out.put_u64(ms);
        if let Some(u) = self.usage {
            for n in [
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
            ] {
                out.put_u64(n);
            }
        }
        let headers: Vec<_> = self.headers.iter().take(u16::MAX as usize).collect();
        out.put_u16(headers.len() as u16);
        for (k, v) in headers {
            out.put_u16(k.as_str().len() as u16);
            out.put_slice(k.as_str().as_bytes());
            out.put_u32(v.len() as u32);
            out.put_slice(v.as_bytes());
        }
        out.put_slice(&self.body);
        out
    }

    /// Decodes [`encode`](Self::encode)'s bytes; `None` if they are not such an entry.
    /// The body is a slice of `bytes`, not a copy.
    pub fn decode(bytes: Bytes) -> Option<Self> {
        let mut b = bytes;
        if b.len() < 4 + 2 + 1 + 8 || &b[..4] != MAGIC {
            return None;
        }
        b.advance(4);
        let status = StatusCode::from_u16(b.get_u16()).ok()?;
        let flags = b.get_u8();
        let stored_at = UNIX_EPOCH + Duration::from_millis(b.get_u64());
        let usage = if flags & 2 != 0 {
            if b.remaining() < 40 {
                return None;
            }
            Some(Usage {
                input_tokens: b.get_u64(),
                output_tokens: b.get_u64(),
                cached_input_tokens: b.get_u64(),
                cache_write_tokens: b.get_u64(),
                reasoning_tokens: b.get_u64(),
            })
        } else {
            None
        };
        if b.remaining() < 2 {
            return None;
        }
        let n = b.get_u16();
        let mut headers = HeaderMap::with_capacity(n as usize);
        for _ in 0..n {
            if b.remaining() < 2 {
                return None;
            }
            let kl = b.get_u16() as usize;
            if b.remaining() < kl + 4 {
                return None;
            }
            let name = HeaderName::from_bytes(&b[..kl]).ok()?;
            b.advance(kl);
            let vl = b.get_u32() as usize;
            if b.remaining() < vl {
                return None;
            }
            let value = HeaderValue::from_maybe_shared(b.split_to(vl)).ok()?;
            headers.append(name, value);
        }
        Some(Self {
            status,
            headers,
            body: b,
            usage,
            stored_at,
            sse: flags & 1 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
        let entry = Entry {
            status: StatusCode::OK,
            headers,
            body: Bytes::from_static(b"data: {}\n\ndata: [DONE]\n\n"),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            stored_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            sse: true,
        };
        let bytes = Bytes::from(entry.encode());
        assert_eq!(Entry::decode(bytes.clone()), Some(entry.clone()));
        let no_usage = Entry {
            usage: None,
            sse: false,
            ..entry
        };
        assert_eq!(
            Entry::decode(Bytes::from(no_usage.encode())),
            Some(no_usage)
        );
        for cut in [0, 3, 10, 20, 60] {
            assert_eq!(Entry::decode(bytes.slice(..cut)), None, "cut at {cut}");
        }
        assert_eq!(
            Entry::decode(Bytes::from_static(b"garbage here, long enough")),
            None
        );
    }
}
