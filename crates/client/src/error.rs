use std::fmt;

use tower_ai_core::BoxError;

/// The upstream could not be reached: refused, unresolvable, TLS failed, or the connect
/// timeout passed.
#[derive(Debug)]
pub struct ConnectError {
    source: BoxError,
}

impl ConnectError {
    pub(crate) fn new(source: BoxError) -> Self {
        Self { source }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not connect to upstream: {}", self.source)?;
        let mut cause = self.source.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The upstream sent no response head within the request timeout.
#[derive(Debug, Default)]
pub struct TimeoutError(());

impl TimeoutError {
    pub(crate) fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream timed out")
    }
}

impl std::error::Error for TimeoutError {}
