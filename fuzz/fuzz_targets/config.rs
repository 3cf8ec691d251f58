//! The gateway's configuration file: `Config::from_toml` and what it builds (the
//! provider registry, the route layer with its keys, the price table, the rate limits,
//! the cache settings).
//!
//! Asserts: no panic; a config that parses builds all of them again without error (the
//! parse already built them once); an error never quotes a provider key (an input that
//! holds `api_key = "sk-SECRETVALUE"` once never gets `SECRETVALUE` back in an error).
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
            let e = e.to_string();
            if text.matches("SECRETVALUE").count() == 1
                && text.contains("api_key = \"sk-SECRETVALUE\"")
            {
                assert!(!e.contains("SECRETVALUE"), "an error quotes the key: {e}");
            }
        }
    }
});
