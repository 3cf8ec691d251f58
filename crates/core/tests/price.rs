//! The price table: cost arithmetic, lookup rules, the shipped table, merging and errors.

use tower_ai_core::{Price, PriceTable, Usage};

const M: u64 = 1_000_000;

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[track_caller]
fn assert_approx(a: f64, b: f64) {
    assert!(approx(a, b), "{a} != {b}");
}

fn usage(input: u64, cached: u64, written: u64, output: u64, reasoning: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        cache_write_tokens: written,
        reasoning_tokens: reasoning,
    }
}

fn price(input: f64, output: f64) -> Price {
    Price {
        input,
        output,
        cached_input: None,
        cache_write: None,
    }
}

// ----- cost arithmetic -----

#[test]
fn cost_of_each_token_kind() {
    let p = Price {
        input: 3.0,
        output: 15.0,
        cached_input: Some(0.3),
        cache_write: Some(3.75),
    };
    assert_eq!(p.cost(&Usage::default()), 0.0);
    // Uncached input only.
    assert_approx(p.cost(&usage(M, 0, 0, 0, 0)), 3.0);
    // Output only.
    assert_approx(p.cost(&usage(0, 0, 0, M, 0)), 15.0);
    // All input read from the cache.
    assert_approx(p.cost(&usage(M, M, 0, 0, 0)), 0.3);
    // All input written to the cache.
    assert_approx(p.cost(&usage(M, 0, M, 0, 0)), 3.75);
    // Reasoning is part of output, not billed twice.
    assert_approx(p.cost(&usage(0, 0, 0, M, M / 2)), 15.0);
    // A mix: 1000 in (600 uncached, 300 read, 100 written), 500 out.
    let mixed = 600.0 * 3.0 + 300.0 * 0.3 + 100.0 * 3.75 + 500.0 * 15.0;
    assert_approx(p.cost(&usage(1000, 300, 100, 500, 200)), mixed / 1e6);
}

#[test]
fn cache_rates_default_to_input() {
    let p = price(2.0, 8.0);
    assert_approx(p.cost(&usage(M, M / 2, M / 4, 0, 0)), 2.0);
    let p = Price::new(2.0, 8.0).with_cached_input(0.5);
    // Written tokens at the input rate, read ones at their own.
    assert_approx(
        p.cost(&usage(M, M / 2, M / 4, 0, 0)),
        0.25 * 2.0 + 0.25 + 0.5,
    );
    let p = Price::new(2.0, 8.0).with_cache_write(2.5);
    assert_approx(
        p.cost(&usage(M, M / 2, M / 4, 0, 0)),
        0.25 * 2.0 + 1.0 + 0.625,
    );
}

#[test]
fn inconsistent_counts_never_go_negative() {
    // More cached than input: no negative uncached input.
    let p = Price::new(1.0, 1.0).with_cached_input(0.1);
    assert_approx(p.cost(&usage(10, 20, 0, 0, 0)), 20.0 * 0.1 / 1e6);
}

// ----- lookups -----

fn test_table() -> PriceTable {
    PriceTable::from_toml(
        r#"
        [openai."gpt-4o"]
        input = 2.5
        output = 10
        [openai."gpt-4o-mini"]
        input = 0.15
        output = 0.6
        [openai."gpt-4.1"]
        input = 2
        output = 8
        [anthropic."claude-sonnet-4-5"]
        input = 3
        output = 15
        [anthropic."claude-3-5-sonnet"]
        input = 3.5
        output = 15
        [anthropic."claude-3-7-sonnet"]
        input = 3.7
        output = 15
        [google-ai-studio."gemini-2.5-flash"]
        input = 0.3
        output = 2.5
        [xai."grok-4-1-fast"]
        input = 0.2
        output = 0.5
        [mistral."mistral-large"]
        input = 2
        output = 6
        [workers-ai."@cf/meta/llama-3.1-8b-instruct"]
        input = 0.282
        output = 0.827
        [workers-ai."@cf/meta/llama-3.1-8b-instruct-fp8-fast"]
        input = 0.045
        output = 0.384
        [openrouter."openai/gpt-4o-mini"]
        input = 0.2
        output = 0.7
        "#,
    )
    .unwrap()
}

fn input(t: &PriceTable, provider: &str, model: &str) -> Option<f64> {
    t.get(provider, model).map(|p| p.input)
}

#[test]
fn rule_1_exact() {
    let t = test_table();
    assert_eq!(t.get("openai", "gpt-4o"), Some(price(2.5, 10.0)));
    assert_eq!(input(&t, "openai", "gpt-4.1"), Some(2.0));
    assert_eq!(input(&t, "anthropic", "claude-sonnet-4-5"), Some(3.0));
}

#[test]
fn rule_2_dated_snapshots_match_their_base() {
    let t = test_table();
    assert_eq!(input(&t, "openai", "gpt-4o-2024-08-06"), Some(2.5));
    assert_eq!(
        input(&t, "anthropic", "claude-sonnet-4-5-20250929"),
        Some(3.0)
    );
    assert_eq!(
        input(&t, "anthropic", "claude-3-5-sonnet-20241022"),
        Some(3.5)
    );
    assert_eq!(
        input(&t, "anthropic", "claude-3-7-sonnet-latest"),
        Some(3.7)
    );
    assert_eq!(input(&t, "mistral", "mistral-large-latest"), Some(2.0));
    assert_eq!(input(&t, "mistral", "mistral-large-2411"), Some(2.0));
    // Only at a `-` boundary.
    assert_eq!(input(&t, "openai", "gpt-4o1"), None);
    assert_eq!(input(&t, "openai", "gpt-4.1x"), None);
    assert_eq!(input(&t, "openai", "gpt-4"), None);
}

#[test]
fn rule_2_longest_prefix_wins() {
    let t = test_table();
    assert_eq!(input(&t, "openai", "gpt-4o-mini-2024-07-18"), Some(0.15));
    assert_eq!(input(&t, "openai", "gpt-4o-mini"), Some(0.15));
    let t = {
        let mut t = t;
        t.insert("openai", "gpt-4o-mini-2024", price(9.0, 9.0));
        t
    };
    assert_eq!(input(&t, "openai", "gpt-4o-mini-2024-07-18"), Some(9.0));
    assert_eq!(
        input(&t, "workers-ai", "@cf/meta/llama-3.1-8b-instruct-fp8-fast"),
        Some(0.045)
    );
    assert_eq!(
        input(&t, "workers-ai", "@cf/meta/llama-3.1-8b-instruct-awq"),
        Some(0.282)
    );
}

#[test]
fn rule_3_resellers_use_the_vendor() {
    let t = test_table();
    assert_eq!(input(&t, "azure-openai", "gpt-4o-mini"), Some(0.15));
    assert_eq!(
        input(&t, "azure-openai", "gpt-4o-mini-2024-07-18"),
        Some(0.15)
    );
    // An entry of the reseller's own wins.
    let mut t = t;
    t.insert("azure-openai", "gpt-4o-mini", price(0.165, 0.66));
    assert_eq!(input(&t, "azure-openai", "gpt-4o-mini"), Some(0.165));
    assert_eq!(input(&t, "azure-openai", "unknown-deployment"), None);
}

#[test]
fn rule_3_vendor_slash_model() {
    let t = test_table();
    // OpenRouter's own entry first.
    assert_eq!(input(&t, "openrouter", "openai/gpt-4o-mini"), Some(0.2));
    // Then the vendor's.
    assert_eq!(input(&t, "openrouter", "openai/gpt-4o"), Some(2.5));
    assert_eq!(input(&t, "openrouter", "openai/gpt-4.1"), Some(2.0));
    assert_eq!(
        input(&t, "openrouter", "anthropic/claude-sonnet-4.5"),
        Some(3.0)
    );
    assert_eq!(
        input(&t, "openrouter", "anthropic/claude-3.5-sonnet"),
        Some(3.5)
    );
    assert_eq!(
        input(&t, "openrouter", "anthropic/claude-3.7-sonnet:thinking"),
        Some(3.7)
    );
    assert_eq!(
        input(&t, "openrouter", "google/gemini-2.5-flash-preview-09-2025"),
        Some(0.3)
    );
    assert_eq!(input(&t, "openrouter", "x-ai/grok-4.1-fast"), Some(0.2));
    assert_eq!(
        input(&t, "openrouter", "mistralai/mistral-large-2411"),
        Some(2.0)
    );
    // Any OpenAI-compatible provider, custom ones included.
    assert_eq!(input(&t, "my-proxy", "openai/gpt-4o-mini"), Some(0.15));
    assert_eq!(
        input(&t, "custom", "anthropic/claude-sonnet-4.5-20250929"),
        Some(3.0)
    );
    // `:free` has no vendor price; unknown vendors and models have none either.
    assert_eq!(input(&t, "openrouter", "openai/gpt-4o:free"), None);
    assert_eq!(
        input(&t, "openrouter", "meta-llama/llama-3.3-70b-instruct"),
        None
    );
    assert_eq!(input(&t, "openrouter", "openai/gpt-9"), None);
    assert_eq!(input(&t, "openrouter", "gpt-4o"), None);
    // Dots are only normalised where the vendor never uses them.
    assert_eq!(input(&t, "openrouter", "openai/gpt-4-1"), None);
}

#[test]
fn rule_3_workers_ai_models_as_named() {
    let t = test_table();
    assert_eq!(
        input(&t, "workers-ai", "@cf/meta/llama-3.1-8b-instruct"),
        Some(0.282)
    );
    assert_eq!(input(&t, "workers-ai", "meta/llama-3.1-8b-instruct"), None);
    assert_eq!(input(&t, "openai", "@cf/meta/llama-3.1-8b-instruct"), None);
}

#[test]
fn rule_4_unknown_is_none() {
    let t = test_table();
    assert_eq!(t.get("openai", "gpt-9"), None);
    assert_eq!(t.get("nope", "gpt-4o"), None);
    assert_eq!(t.get("openai", ""), None);
    assert_eq!(t.cost("openai", "gpt-9", &usage(M, 0, 0, M, 0)), None);
    assert_eq!(PriceTable::empty().get("openai", "gpt-4o"), None);
}

#[test]
fn table_cost_shorthand() {
    let t = test_table();
    let cost = t
        .cost("openai", "gpt-4o-mini-2024-07-18", &usage(M, 0, 0, M, 0))
        .unwrap();
    assert_approx(cost, 0.75);
}

// ----- the shipped table -----

#[test]
fn builtin_covers_every_provider() {
    let t = PriceTable::builtin();
    for (provider, model) in [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("openai", "gpt-4.1"),
        ("openai", "gpt-4.1-mini"),
        ("openai", "gpt-4.1-nano"),
        ("openai", "o1"),
        ("openai", "o3"),
        ("openai", "o3-mini"),
        ("openai", "o4-mini"),
        ("openai", "gpt-5"),
        ("openai", "gpt-5-mini"),
        ("openai", "gpt-5-nano"),
        ("openai", "text-embedding-3-small"),
        ("openai", "text-embedding-3-large"),
        ("anthropic", "claude-opus-4-1"),
        ("anthropic", "claude-opus-4"),
        ("anthropic", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4"),
        ("anthropic", "claude-3-7-sonnet"),
        ("anthropic", "claude-3-5-haiku"),
        ("anthropic", "claude-haiku-4-5"),
        ("google-ai-studio", "gemini-2.5-pro"),
        ("google-ai-studio", "gemini-2.5-flash"),
        ("google-ai-studio", "gemini-2.5-flash-lite"),
        ("google-ai-studio", "gemini-2.0-flash"),
        ("groq", "llama-3.3-70b-versatile"),
        ("groq", "llama-3.1-8b-instant"),
        ("mistral", "mistral-large-latest"),
        ("mistral", "mistral-small-latest"),
        ("deepseek", "deepseek-chat"),
        ("deepseek", "deepseek-reasoner"),
        ("xai", "grok-4"),
        ("xai", "grok-3"),
        ("xai", "grok-3-mini"),
        ("workers-ai", "@cf/meta/llama-3.1-8b-instruct"),
    ] {
        assert!(t.get(provider, model).is_some(), "{provider} {model}");
    }
    assert!(
        t.get("deepseek", "deepseek-chat")
            .unwrap()
            .cached_input
            .is_some()
    );
}

#[test]
fn builtin_snapshots_resolve_to_the_right_model() {
    let t = PriceTable::builtin();
    let same = |provider: &str, snapshot: &str, base: &str| {
        assert_eq!(
            t.get(provider, snapshot),
            t.get(provider, base),
            "{snapshot} priced as {base}"
        );
        assert!(t.get(provider, snapshot).is_some(), "{snapshot}");
    };
    same("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini");
    same("openai", "gpt-4o-2024-08-06", "gpt-4o");
    same("openai", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini");
    same("openai", "o3-mini-2025-01-31", "o3-mini");
    same("openai", "gpt-5-2025-08-07", "gpt-5");
    same(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5",
    );
    same("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1");
    same("anthropic", "claude-opus-4-20250514", "claude-opus-4");
    same("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5");
    same("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku");
    same("xai", "grok-4-0709", "grok-4");
    same("xai", "grok-4-fast-reasoning", "grok-4-fast");
    same("azure-openai", "gpt-4o-mini", "gpt-4o-mini");
    same(
        "openrouter",
        "anthropic/claude-sonnet-4.5",
        "anthropic/claude-sonnet-4-5",
    );
    // Variants priced apart from their base name have their own entries.
    let input = |provider: &str, model: &str| t.get(provider, model).unwrap().input;
    assert!(input("openai", "o3-pro") > input("openai", "o3"));
    assert!(input("openai", "gpt-5-pro") > input("openai", "gpt-5"));
    assert!(input("openai", "gpt-4o-2024-05-13") > input("openai", "gpt-4o"));
    assert!(input("xai", "grok-4-fast-non-reasoning") < input("xai", "grok-4"));
    assert!(input("anthropic", "claude-opus-4-5-20251101") < input("anthropic", "claude-opus-4"));
}

#[test]
fn builtin_anthropic_cache_rates() {
    // Cache writes cost 1.25x input, cache reads 0.1x; except Claude 3 Haiku, listed at
    // 0.30 and 0.03 USD (1.2x and 0.12x).
    let t = PriceTable::builtin();
    let haiku_3 = t.get("anthropic", "claude-3-haiku-20240307").unwrap();
    assert_eq!(
        (haiku_3.cache_write, haiku_3.cached_input),
        (Some(0.30), Some(0.03))
    );
    let mut n = 0;
    for (provider, model, p) in t.iter() {
        if provider != "anthropic" || model == "claude-3-haiku" {
            continue;
        }
        n += 1;
        assert_approx(p.cache_write.expect(model), p.input * 1.25);
        assert_approx(p.cached_input.expect(model), p.input * 0.1);
    }
    assert!(n >= 7);
}

#[test]
fn builtin_rates_are_sane() {
    for (provider, model, p) in PriceTable::builtin().iter() {
        let cached = p.cached_input.unwrap_or(p.input);
        assert!(
            cached <= p.input,
            "{provider} {model}: cache read above input"
        );
        assert!(
            p.input > 0.0,
            "{provider} {model}: a free input rate is suspicious"
        );
    }
}

#[test]
fn builtin_is_shared() {
    let a = PriceTable::builtin();
    let mut b = PriceTable::builtin();
    b.insert("openai", "gpt-4o", price(1.0, 1.0));
    // Cloning shares; writing to one copy leaves the others alone.
    assert_eq!(input(&a, "openai", "gpt-4o"), Some(2.5));
    assert_eq!(input(&b, "openai", "gpt-4o"), Some(1.0));
    assert_eq!(input(&PriceTable::builtin(), "openai", "gpt-4o"), Some(2.5));
    assert_eq!(input(&PriceTable::default(), "openai", "gpt-4o"), Some(2.5));
}

// ----- merging -----

#[test]
fn merge_overrides_and_adds() {
    let mut t = PriceTable::builtin();
    let config = PriceTable::from_toml(
        r#"
        [openai."gpt-4o"]
        input = 2.0
        output = 8.0
        [openai."ft:gpt-4o-mini:acme"]
        input = 0.3
        output = 1.2
        [local."llama-3"]
        input = 0
        output = 0
        "#,
    )
    .unwrap();
    t.merge(&config);
    assert_eq!(t.get("openai", "gpt-4o"), Some(price(2.0, 8.0)));
    // The override also wins for snapshots of the base name.
    assert_eq!(input(&t, "openai", "gpt-4o-2024-08-06"), Some(2.0));
    assert_eq!(input(&t, "openai", "ft:gpt-4o-mini:acme"), Some(0.3));
    assert_eq!(t.get("local", "llama-3"), Some(price(0.0, 0.0)));
    // Everything else is kept.
    assert_eq!(input(&t, "openai", "gpt-4o-mini"), Some(0.15));
    assert!(t.get("anthropic", "claude-sonnet-4-5").is_some());
    // A whole entry is replaced: no cached rate left over from the shipped one.
    assert_eq!(t.get("openai", "gpt-4o").unwrap().cached_input, None);
    // Merging an empty table changes nothing.
    let before = t.get("openai", "gpt-4o");
    t.merge(&PriceTable::empty());
    assert_eq!(t.get("openai", "gpt-4o"), before);
}

#[test]
fn deserializes_inside_a_larger_config() {
    #[derive(serde::Deserialize)]
    struct Config {
        prices: PriceTable,
    }
    let config: Config = toml::from_str(
        r#"
        [prices.openai."gpt-4o"]
        input = 2
        output = 8
        "#,
    )
    .unwrap();
    assert_eq!(config.prices.get("openai", "gpt-4o"), Some(price(2.0, 8.0)));
    let err = toml::from_str::<Config>(
        r#"
        [prices.openai."gpt-4o"]
        input = -2
        output = 8
        "#,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("[openai.gpt-4o]"), "{err}");
}

// ----- errors -----

#[track_caller]
fn error(text: &str) -> String {
    PriceTable::from_toml(text).unwrap_err().to_string()
}

#[test]
fn bad_entries_are_named() {
    let err = error(
        r#"
        [openai."gpt-4o"]
        input = 2.5
        output = 10
        [openai."gpt-4.1"]
        input = -2
        output = 8
        "#,
    );
    assert!(err.contains(r#"[openai."gpt-4.1"]"#), "{err}");
    assert!(err.contains("`input`") && err.contains("-2"), "{err}");

    let err = error(
        r#"
        [anthropic.claude-x]
        input = 3
        "#,
    );
    assert!(err.contains("[anthropic.claude-x]"), "{err}");
    assert!(err.contains("output"), "{err}");

    let err = error(
        r#"
        [anthropic.claude-x]
        input = 3
        output = 15
        cache_read = 0.3
        "#,
    );
    assert!(err.contains("[anthropic.claude-x]"), "{err}");
    assert!(err.contains("cache_read"), "{err}");

    let err = error(
        r#"
        [workers-ai."@cf/x"]
        input = "cheap"
        output = 1
        "#,
    );
    assert!(err.contains(r#"[workers-ai."@cf/x"]"#), "{err}");

    let err = error(
        r#"
        [deepseek.deepseek-chat]
        input = 0.28
        output = 0.42
        cached_input = nan
        "#,
    );
    assert!(err.contains("[deepseek.deepseek-chat]"), "{err}");
    assert!(err.contains("`cached_input`"), "{err}");

    let err = error("openai = 1\n");
    assert!(err.contains("[openai]"), "{err}");

    let err = error("[openai\n");
    assert!(err.starts_with("invalid price table"), "{err}");
}

#[test]
fn empty_text_is_an_empty_table() {
    let t = PriceTable::from_toml("# nothing yet\n").unwrap();
    assert_eq!(t.iter().count(), 0);
}
