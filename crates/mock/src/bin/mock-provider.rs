//! `mock-provider`: the mock LLM provider as a standalone server.
//!
//! ```text
//! mock-provider --listen 127.0.0.1:9001 --ttft-ms 200 --chunk-delay-ms 20
//! ```
//!
//! Prints `mock-provider listening on http://ADDR` once it accepts connections and runs
//! until SIGINT or SIGTERM. The flags set the faults applied to every request; the
//! `x-mock-*` request headers still override them (see the `tower-ai-mock` crate docs).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tower_ai_mock::{Faults, MockConfig, MockProvider};

/// A mock LLM provider speaking the OpenAI and Anthropic wire formats.
#[derive(Debug, Parser)]
#[command(name = "mock-provider", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Delay before every response head, in milliseconds.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Streams: delay before the first event, in milliseconds.
    #[arg(long, value_name = "MS")]
    ttft_ms: Option<u64>,
    /// Streams: delay between events, in milliseconds.
    #[arg(long, value_name = "MS")]
    chunk_delay_ms: Option<u64>,
    /// Output words (content deltas) per reply.
    #[arg(long, value_name = "N")]
    chunks: Option<usize>,
    /// Answer every request with this error status.
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(400..=599))]
    status: Option<u16>,
    /// With --status: send `retry-after: SECS`.
    #[arg(long, value_name = "SECS")]
    retry_after: Option<u64>,
    /// Never answer.
    #[arg(long)]
    hang: bool,
    /// Streams: abort the connection after N events.
    #[arg(long, value_name = "N")]
    reset_after: Option<usize>,
}

impl Args {
    fn config(&self) -> MockConfig {
        MockConfig {
            faults: Faults {
                latency: self.latency_ms.map(Duration::from_millis),
                ttft: self.ttft_ms.map(Duration::from_millis),
                chunk_delay: self.chunk_delay_ms.map(Duration::from_millis),
                chunks: self.chunks,
                status: self.status,
                retry_after: self.retry_after,
                hang: self.hang,
                reset_after: self.reset_after,
            },
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let mock = MockProvider::bind(args.listen, args.config()).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mock-provider listening on {}", mock.url())?;
        stdout.flush()?;
    }
    shutdown_signal().await?;
    mock.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
