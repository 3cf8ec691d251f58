//! Gateway tokens: made with the operating system's CSPRNG, known to the gateway only by
//! their SHA-256, compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token this crate makes starts with, so that secret scanners recognise one.
pub const TOKEN_PREFIX: &str = "aigw_";

/// A new gateway token: shown once to whoever asked for it, never stored. `Debug` does
/// not print it; [`expose`](Self::expose) does.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new random token: [`TOKEN_PREFIX`] and 256 bits from the operating system's
    /// CSPRNG in hex. Fails only when the system has no randomness to give.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let mut s = String::with_capacity(TOKEN_PREFIX.len() + 64);
        s.push_str(TOKEN_PREFIX);
        push_hex(&mut s, &bytes);
        Ok(Self(s))
    }

    /// The token itself, to hand to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its hash, the only form the gateway keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The SHA-256 of a token: what configuration holds (`token_hash`, 64 hex digits) and
/// what the gateway compares, in constant time. A token is 256 random bits, so a plain
/// hash is enough: there is nothing to guess from it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses 64 hex digits (either case), optionally prefixed `sha256:`.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidTokenHash> {
        let hex = hex.trim();
        let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
        let b = hex.as_bytes();
        if b.len() != 64 {
            return Err(InvalidTokenHash);
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(InvalidTokenHash)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(InvalidTokenHash)?;
            out[i] = (hi << 4 | lo) as u8;
        }
        Ok(Self(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        push_hex(&mut s, &self.0);
        s
    }

    /// The id the token goes by in logs, metric labels, cache scopes and rate-limit
    /// buckets: the same as [`tower_ai_core::key_id`] of the token (`key_` and the first
    /// 16 hex digits of its SHA-256), computed without it.
    pub fn key_id(&self) -> String {
        let mut s = String::with_capacity(20);
        s.push_str("key_");
        push_hex(&mut s, &self.0[..8]);
        s
    }

    /// Whether `token` is the one this is the hash of. The comparison of the two hashes
    /// takes the same time wherever they differ.
    pub fn matches(&self, token: &str) -> bool {
        self.ct_eq(&Self::of(token))
    }

    /// Constant-time equality of two hashes.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub(crate) fn prefix(&self) -> u64 {
        u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.key_id())
    }
}

/// A `token_hash` that is not 64 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTokenHash;

impl fmt::Display for InvalidTokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a token hash is 64 hex digits (the SHA-256 of the token)")
    }
}

impl std::error::Error for InvalidTokenHash {}

fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        s.push(char::from_digit((b >> 4) as u32, 16).expect("nibble"));
        s.push(char::from_digit((b & 0xf) as u32, 16).expect("nibble"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_never_printed() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_ne!(a, b);
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert!(
            a.expose()[TOKEN_PREFIX.len()..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert_eq!(format!("{a:?}"), "Token(***)");
        assert!(!format!("{:?}", a.hash()).contains(&a.expose()[5..]));
    }

    #[test]
    fn hashes_round_trip_and_agree_with_key_id() {
        // sha256("a") = ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb
        let h = TokenHash::of("a");
        assert_eq!(
            h.to_hex(),
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
        );
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(
            TokenHash::from_hex(&format!("sha256:{}", h.to_hex().to_uppercase())).unwrap(),
            h
        );
        assert_eq!(h.key_id(), tower_ai_core::key_id("a"));
        for bad in ["", "ca97", &"g".repeat(64), &"a".repeat(65)] {
            assert_eq!(TokenHash::from_hex(bad), Err(InvalidTokenHash), "{bad}");
        }
    }

    #[test]
    fn matching_is_exact() {
        let t = Token::generate().unwrap();
        let h = t.hash();
        assert!(h.matches(t.expose()));
        let mut last_wrong = t.expose().to_owned();
        let c = last_wrong.pop().unwrap();
        last_wrong.push(if c == '0' { '1' } else { '0' });
        assert!(!h.matches(&last_wrong));
        assert!(!h.matches(""));
        assert!(!h.matches(&t.expose()[..t.expose().len() - 1]));
        // Hashes differing in their first or their last byte: both unequal.
        let mut first = h;
        first.0[0] ^= 1;
        let mut last = h;
        last.0[31] ^= 1;
        assert!(!h.ct_eq(&first) && !h.ct_eq(&last) && h.ct_eq(&h.clone()));
    }
}
