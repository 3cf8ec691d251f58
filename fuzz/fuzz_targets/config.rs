//! The gateway's configuration file: `Config::from_toml` and what it builds (the
//! provider registry, the route layer with its keys, the price table, the rate limits,
//! the cache settings).
//!
//! Asserts: no panic; a config that parses builds all of them again without error (the
//! parse already built them once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_ai_gateway::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text) {
        Ok(config) => {
            config.providers().expect("checked by from_toml");
            config.route_layer().expect("checked by from_toml");
            config.prices().expect("checked by from_toml");
            config.ratelimit.parsed_limits().expect("checked by from_toml");
            config.cache.check().expect("checked by from_toml");
            let _ = config.upstream_timeouts();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
