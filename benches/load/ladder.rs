//! The arms of the benchmark and the gateway's ladder of stacks, as data.
//!
//! A rung is a label plus the layers it turns on; a [`Layer`] is the TOML section that
//! turns it on (and the one that turns it off, for layers the gateway enables by
//! default). The bench asks the gateway's own config parser about each rung: a rung
//! whose section the gateway does not know is shown as "not built yet", so a rung
//! lights up by itself the day its layer lands. Adding a rung is adding an entry to
//! [`LADDER`]; adding a layer is a `Layer` constant plus its place in [`LAYERS`].

use std::fmt::Write as _;

/// The gateway's base configuration, shared by every rung: route only, once every layer
/// the gateway knows is switched off. `{mock}` is the mock provider's `http://ADDR`.
const BASE: &str = r#"listen = "127.0.0.1:0"

[server]
max_body_bytes = 33554432
shutdown_timeout_secs = 1

[upstream]
connect_timeout_ms = 2000
timeout_ms = 30000
pool_idle_timeout_secs = 90
pool_max_idle_per_host = 2048

[log]
level = "warn"

[providers.openai]
base_url = "{mock}/v1"
"#;

/// A gateway layer, as configuration.
#[derive(Debug)]
pub(crate) struct Layer {
    /// The top-level TOML section (what the parser calls an unknown field when the
    /// gateway does not have the layer).
    pub(crate) section: &'static str,
    /// The lines that turn it on. `{mock}`, `{redis}`, `{dir}` (the bench's output
    /// directory) and `{key}` (the rung's key) are filled in.
    on: &'static str,
    /// The lines that turn it off, for a layer that is (or may become) on by default;
    /// `None` when leaving the section out is off.
    off: Option<&'static str>,
}

/// Token and cost metering, with its request log (SQLite) in the output directory.
const METER: Layer = Layer {
    section: "meter",
    on: "[meter]\nenabled = true\nlog_path = \"{dir}/meter-{key}.db\"\n",
    off: Some("[meter]\nenabled = false\n"),
};

/// Rate limiting with in-process buckets: a request limit and a token limit per API key,
/// far above what the bench sends, so the limiter is paid for but never says no.
const RATE_LIMIT_MEMORY: Layer = Layer {
    section: "ratelimit",
    on: "[ratelimit]\nstore = \"memory\"\n\n\
         [[ratelimit.limits]]\nname = \"bench-rpm\"\nkey = \"api_key\"\n\
         requests = 1000000000\nalgorithm = \"gcra\"\nperiod = \"1m\"\n\n\
         [[ratelimit.limits]]\nname = \"bench-tpm\"\nkey = \"api_key\"\n\
         tokens = 1000000000000\nalgorithm = \"gcra\"\nperiod = \"1m\"\n",
    off: None,
};

/// The same limits with their buckets in Redis (`{redis}` is its URL).
const RATE_LIMIT_REDIS: Layer = Layer {
    section: "ratelimit",
    on: "[ratelimit]\nstore = \"redis\"\nredis_url = \"{redis}\"\nfail_open = false\n\n\
         [[ratelimit.limits]]\nname = \"bench-rpm\"\nkey = \"api_key\"\n\
         requests = 1000000000\nalgorithm = \"gcra\"\nperiod = \"1m\"\n\n\
         [[ratelimit.limits]]\nname = \"bench-tpm\"\nkey = \"api_key\"\n\
         tokens = 1000000000000\nalgorithm = \"gcra\"\nperiod = \"1m\"\n",
    off: None,
};

/// The exact-match response cache, in memory, bounded to 32 MiB: the distinct prompts of
/// the cache-miss rung fill it within seconds, so it runs full (evicting) and the
/// proxy's RSS shows the bound, not the 256 MiB default.
const CACHE: Layer = Layer {
    section: "cache",
    on: "[cache]\nenabled = true\nmax_bytes = 33554432\n",
    off: Some("[cache]\nenabled = false\n"),
};

/// Fallback: a failed upstream call is retried. One request in ten carries
/// `x-mock-fail-first`, so its first attempt gets a 503 and its retry is answered: 10 %
/// of requests cost two upstream calls. The gateway's `[fallback]` is always there
/// (a pass-through for plain requests with its default policy), so it has no "off".
const FALLBACK: Layer = Layer {
    section: "fallback",
    on: "[fallback]\nmax_attempts = 2\nretry_delay_ms = 0\n",
    off: None,
};

/// One layer per section: what is switched off when a rung does not turn it on.
pub(crate) const LAYERS: &[&Layer] = &[&METER, &RATE_LIMIT_MEMORY, &CACHE, &FALLBACK];

/// Which prompts a rung's requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prompts {
    /// Every request distinct (a cache never hits).
    Distinct,
    /// Drawn from a Zipf-distributed set ([`Zipf`]): the cache-hit path.
    Zipf,
}

/// One rung of the gateway ladder.
#[derive(Debug)]
pub(crate) struct Rung {
    /// Short name, for `--arms` and the JSON.
    pub(crate) key: &'static str,
    /// What the table shows.
    pub(crate) label: &'static str,
    /// The layers it turns on.
    pub(crate) layers: &'static [&'static Layer],
    /// The prompts this rung's requests carry.
    pub(crate) prompts: Prompts,
    /// One upstream call in this many fails (`x-mock-status: 503`).
    pub(crate) fail_one_in: Option<u32>,
    /// Needs a Redis server (the bench starts `redis-server`, or uses
    /// `TOWER_AI_LOAD_REDIS_URL`).
    pub(crate) needs_redis: bool,
}

/// The ladder, bottom to top. The Redis rung swaps the in-memory store for Redis; the
/// rungs above it go back to the in-memory store, so the full stack runs without Redis.
pub(crate) const LADDER: &[Rung] = &[
    Rung {
        key: "route",
        label: "route only",
        layers: &[],
        prompts: Prompts::Distinct,
        fail_one_in: None,
        needs_redis: false,
    },
    Rung {
        key: "meter",
        label: "+ meter",
        layers: &[&METER],
        prompts: Prompts::Distinct,
        fail_one_in: None,
        needs_redis: false,
    },
    Rung {
        key: "ratelimit",
        label: "+ in-memory rate limit",
        layers: &[&METER, &RATE_LIMIT_MEMORY],
        prompts: Prompts::Distinct,
        fail_one_in: None,
        needs_redis: false,
    },
    Rung {
        key: "redis",
        label: "+ Redis rate limit",
        layers: &[&METER, &RATE_LIMIT_REDIS],
        prompts: Prompts::Distinct,
        fail_one_in: None,
        needs_redis: true,
    },
    Rung {
        key: "cache-miss",
        label: "+ cache (miss: every prompt distinct)",
        layers: &[&METER, &RATE_LIMIT_MEMORY, &CACHE],
        prompts: Prompts::Distinct,
        fail_one_in: None,
        needs_redis: false,
    },
    Rung {
        key: "cache-hit",
        label: "cache hit (Zipf prompts)",
        layers: &[&METER, &RATE_LIMIT_MEMORY, &CACHE],
        prompts: Prompts::Zipf,
        fail_one_in: None,
        needs_redis: false,
    },
    Rung {
        key: "fallback",
        label: "+ fallback (10 % of upstream calls fail)",
        layers: &[&METER, &RATE_LIMIT_MEMORY, &CACHE, &FALLBACK],
        prompts: Prompts::Distinct,
        fail_one_in: Some(10),
        needs_redis: false,
    },
];

impl Rung {
    /// The gateway's whole TOML configuration for this rung: the base, the rung's
    /// layers on, and every other layer the gateway `knows` (by section) off.
    pub(crate) fn config(&self, fill: &Fill<'_>, knows: impl Fn(&str) -> bool) -> String {
        let mut toml = BASE.to_owned();
        for layer in LAYERS {
            let mine = self.layers.iter().find(|l| l.section == layer.section);
            let lines = match (mine, layer.off) {
                (Some(mine), _) => mine.on,
                (None, Some(off)) if knows(layer.section) => off,
                (None, _) => continue,
            };
            toml.push('\n');
            toml.push_str(lines);
        }
        fill.apply(&toml, self.key)
    }

    /// The base config plus the layer's section, empty: what tells whether the gateway
    /// knows the section.
    pub(crate) fn probe(layer: &Layer, fill: &Fill<'_>) -> String {
        fill.apply(&format!("{BASE}\n[{}]\n", layer.section), "probe")
    }

    /// Whether this rung stands for the cache-hit path (its throughput is held against
    /// direct's).
    pub(crate) fn is_cache_hit(&self) -> bool {
        self.prompts == Prompts::Zipf
    }
}

/// What fills a config's placeholders.
#[derive(Debug)]
pub(crate) struct Fill<'a> {
    pub(crate) mock: &'a str,
    pub(crate) redis: &'a str,
    pub(crate) dir: &'a str,
}

impl Fill<'_> {
    fn apply(&self, toml: &str, key: &str) -> String {
        toml.replace("{mock}", self.mock)
            .replace("{redis}", self.redis)
            .replace("{dir}", self.dir)
            .replace("{key}", key)
    }
}

/// What an arm is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ArmKind {
    /// The client straight to the mock.
    Direct,
    /// Through the bare hyper pass-through proxy.
    Bare,
    /// Through the gateway with this rung's stack.
    Gateway(&'static Rung),
}

/// One arm: a way for the client to reach the mock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arm {
    pub(crate) kind: ArmKind,
}

impl Arm {
    /// Every arm, in the order the tables show them.
    pub(crate) fn all() -> Vec<Arm> {
        let mut arms = vec![
            Arm {
                kind: ArmKind::Direct,
            },
            Arm {
                kind: ArmKind::Bare,
            },
        ];
        arms.extend(LADDER.iter().map(|rung| Arm {
            kind: ArmKind::Gateway(rung),
        }));
        arms
    }

    /// Short name: `direct`, `bare` or the rung's key.
    pub(crate) fn key(&self) -> &'static str {
        match self.kind {
            ArmKind::Direct => "direct",
            ArmKind::Bare => "bare",
            ArmKind::Gateway(rung) => rung.key,
        }
    }

    /// What the tables show.
    pub(crate) fn label(&self) -> String {
        match self.kind {
            ArmKind::Direct => "direct".to_owned(),
            ArmKind::Bare => "bare proxy".to_owned(),
            ArmKind::Gateway(rung) => format!("gateway: {}", rung.label),
        }
    }

    /// The rung, for a gateway arm.
    pub(crate) fn rung(&self) -> Option<&'static Rung> {
        match self.kind {
            ArmKind::Gateway(rung) => Some(rung),
            _ => None,
        }
    }

    /// The path the client posts chat completions to on this arm.
    pub(crate) fn path(&self) -> &'static str {
        match self.kind {
            ArmKind::Direct | ArmKind::Bare => "/v1/chat/completions",
            ArmKind::Gateway(_) => "/openai/chat/completions",
        }
    }
}

/// A small, fast, seedable generator (SplitMix64); the bench needs no better.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A Zipf distribution over prompt ranks `0..n`: rank `k` is drawn with probability
/// proportional to `1 / (k + 1)^s`.
#[derive(Debug)]
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The set the cache-hit arm draws from.
    pub(crate) const PROMPTS: usize = 1000;
    /// Its exponent.
    pub(crate) const EXPONENT: f64 = 1.0;

    pub(crate) fn new(n: usize, s: f64) -> Zipf {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf { cdf }
    }

    /// A rank in `0..n`.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Writes the prompt text of a request: distinct (`load <nonce>-<seq>`) or a Zipf rank.
pub(crate) fn write_prompt(out: &mut String, prompts: Prompts, nonce: u64, n: u64) {
    match prompts {
        Prompts::Distinct => {
            let _ = write!(out, "load {nonce:x}-{n}: say hello");
        }
        Prompts::Zipf => {
            let _ = write!(out, "popular prompt {n}: say hello");
        }
    }
}
