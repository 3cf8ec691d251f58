//! `gateway`: the prebuilt tower-ai proxy. `gateway --help` for the options.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tower_ai_gateway::{Config, Gateway, serve_per_thread, shutdown_signal};
use tracing_subscriber::EnvFilter;

/// mimalloc gives the memory of finished requests back to the system; glibc's allocator
/// keeps freed pages of its arenas, and a gateway's RSS would only ever grow after a burst
/// (see `tests/soak.rs` and SECURITY.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An AI gateway: caching, metering, rate limiting, fallback and routing for LLM APIs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file. Without one, the gateway runs on in-memory defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on; overrides `listen` in the file. Default 127.0.0.1:8787.
    #[arg(long, short)]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Gateway tokens (virtual keys and admin tokens).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(clap::Subcommand, Debug)]
enum KeysCommand {
    /// Makes a new token: prints it once, with the configuration to add (its hash only).
    Create {
        /// The key's name: letters, digits, `-`, `_`.
        #[arg(long)]
        name: String,
        /// An admin token (opens /usage, /logs, DELETE /cache) instead of a virtual key.
        #[arg(long)]
        admin: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Keys {
        command: KeysCommand::Create { name, admin },
    }) = &args.command
    {
        return match tower_ai_gateway::auth::create_key(name, *admin) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("gateway: {e}");
                ExitCode::from(2)
            }
        };
    }
    let config = match &args.config {
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    // This runtime builds the gateway, accepts connections and runs what the stores need
    // in the background (Redis connections); requests run on `serve_per_thread`'s threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), tower_ai_gateway::BoxError> {
    let gateway = Gateway::new(&config).await?;
    let listener = tower_ai_gateway::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "gateway listening");
    // Scripts wait for this line.
    println!("gateway listening on http://{addr}");
    let grace = Duration::from_secs(config.server.shutdown_timeout_secs);
    serve_per_thread(
        listener,
        &gateway,
        config.server.threads,
        shutdown_signal(),
        grace,
    )
    .await?;
    tracing::info!("gateway stopped");
    Ok(())
}
