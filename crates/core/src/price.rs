//! The price table: USD per million tokens, by provider and model.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::Usage;

/// USD per million tokens for one model.
///
/// See [`PriceTable`] for where prices come from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Uncached input tokens.
    pub input: f64,
    /// Output tokens, reasoning included.
    pub output: f64,
    /// Cache reads; `None` prices them as [`input`](Self::input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Cache writes; `None` prices them as [`input`](Self::input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
}

impl Price {
    /// A price with the same rate for every kind of input.
    pub fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cached_input: None,
            cache_write: None,
        }
    }

    /// Sets the rate of cache reads.
    pub fn with_cached_input(mut self, rate: f64) -> Self {
        self.cached_input = Some(rate);
        self
    }

    /// Sets the rate of cache writes.
    pub fn with_cache_write(mut self, rate: f64) -> Self {
        self.cache_write = Some(rate);
        self
    }

    /// Cost in USD of `usage`: uncached input at [`input`](Self::input), cache reads at
    /// [`cached_input`](Self::cached_input), cache writes at
    /// [`cache_write`](Self::cache_write) and output (reasoning included) at
    /// [`output`](Self::output).
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = self.cached_input.unwrap_or(self.input);
        let write = self.cache_write.unwrap_or(self.input);
        (usage.uncached_input_tokens() as f64 * self.input
            + usage.cached_input_tokens as f64 * cached
            + usage.cache_write_tokens as f64 * write
            + usage.output_tokens as f64 * self.output)
            / 1_000_000.0
    }

    /// Why this price cannot be used, if it cannot: every rate must be a finite,
    /// non-negative number.
    fn check(&self) -> Result<(), String> {
        let rates = [
            ("input", Some(self.input)),
            ("output", Some(self.output)),
            ("cached_input", self.cached_input),
            ("cache_write", self.cache_write),
        ];
        for (name, rate) in rates {
            if let Some(rate) = rate
                && !(rate.is_finite() && rate >= 0.0)
            {
                return Err(format!(
                    "`{name}` must be a finite, non-negative number of USD per million tokens, got {rate}"
                ));
            }
        }
        Ok(())
    }
}

/// Prices by provider and model, in USD per million tokens. Cheap to clone.
///
/// [`PriceTable::builtin`] holds list prices of the major providers' models (the
/// `prices.toml` shipped with this crate); configuration merges its own over them.
///
/// # Lookups
///
/// [`PriceTable::get`] tries, in order:
///
/// 1. the exact `(provider, model)` entry;
/// 2. at the same provider, the longest entry that is a prefix of the model followed by `-`,
///    so that dated snapshots match their base name: `gpt-4o-mini-2024-07-18` is priced as
///    `gpt-4o-mini` (not `gpt-4o`), `claude-sonnet-4-5-20250929` as `claude-sonnet-4-5`;
/// 3. aliases, each with rules 1 and 2:
///    - a reseller of one vendor's models is priced as that vendor: `azure-openai` as `openai`;
///    - at any provider (OpenRouter, a custom OpenAI-compatible one, ...), a model named
///      `vendor/model` is priced as `model` at the vendor, for `openai`, `anthropic`,
///      `google` (`google-ai-studio`), `x-ai` (`xai`) and `mistralai` (`mistral`).
///      OpenRouter's dotted versions are normalised for Anthropic and xAI
///      (`anthropic/claude-sonnet-4.5` is `claude-sonnet-4-5`), and a `:variant` suffix is
///      dropped (`:thinking`, `:online`), except `:free`, which has no vendor price;
/// 4. otherwise `None`: an unknown model has an unknown cost, never a silent zero.
///
/// Workers AI models are looked up as named, `@cf/meta/llama-3.1-8b-instruct` at
/// `workers-ai`.
///
/// A lookup that hits an entry exactly allocates nothing.
///
/// # Format
///
/// ```toml
/// # USD per million tokens.
/// [openai."gpt-4o-mini"]
/// input = 0.15          # uncached input
/// output = 0.60         # output, reasoning included
/// cached_input = 0.075  # cache reads (optional, defaults to input)
/// cache_write = 0.15    # cache writes (optional, defaults to input)
/// ```
///
/// # Examples
///
/// ```
/// use tower_ai_core::{Price, PriceTable};
///
/// let mut prices = PriceTable::builtin();
/// let config = PriceTable::from_toml(
///     r#"
///     [local."llama-3"]
///     input = 0.0
///     output = 0.0
///     "#,
/// )
/// .unwrap();
/// prices.merge(&config);
/// prices.insert("openai", "ft:gpt-4o-mini:acme", Price::new(0.30, 1.20));
///
/// assert_eq!(prices.get("local", "llama-3"), Some(Price::new(0.0, 0.0)));
/// assert_eq!(prices.get("openai", "gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
/// assert_eq!(prices.get("openai", "no-such-model"), None);
/// ```
#[derive(Clone)]
pub struct PriceTable {
    providers: Arc<HashMap<Box<str>, Models, foldhash::fast::RandomState>>,
}

/// One provider's prices by model name.
#[derive(Clone, Debug, Default)]
struct Models {
    prices: HashMap<Box<str>, Price, foldhash::fast::RandomState>,
    /// The length of the longest model name: no longer prefix can match, so a lookup
    /// never hashes more than this many bytes per try, however long the name asked for.
    longest: usize,
}

impl Models {
    fn exact(&self, model: &str) -> Option<Price> {
        if model.len() > self.longest {
            return None;
        }
        self.prices.get(model).copied()
    }

    /// Rules 1 and 2: the exact entry, else the longest entry followed by `-` in `model`,
    /// trying each prefix that ends before a `-`, longest first (one hash lookup each),
    /// but only prefixes no longer than the longest entry: linear in the name's length,
    /// not quadratic, whatever a client sends.
    fn find(&self, model: &str) -> Option<Price> {
        if let Some(price) = self.exact(model) {
            return Some(price);
        }
        let bytes = model.as_bytes();
        // A prefix `model[..dash]` can match only if `dash <= longest`.
        let mut end = bytes.len().min(self.longest.saturating_add(1));
        while let Some(dash) = memchr::memrchr(b'-', &bytes[..end]) {
            // `-` is ASCII: `dash` is a char boundary.
            if let Some(price) = self.exact(&model[..dash]) {
                return Some(price);
            }
            end = dash;
        }
        None
    }

    fn insert(&mut self, model: &str, price: Price) {
        self.longest = self.longest.max(model.len());
        self.prices.insert(model.into(), price);
    }

    fn len(&self) -> usize {
        self.prices.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&str, Price)> {
        self.prices.iter().map(|(m, p)| (&**m, *p))
    }
}

/// Providers that resell one vendor's models at (about) the vendor's list prices.
fn reseller_vendor(provider: &str) -> Option<&'static str> {
    match provider {
        "azure-openai" => Some("openai"),
        _ => None,
    }
}

/// The provider of the `vendor/` prefix in OpenRouter-style model names.
fn vendor_provider(vendor: &str) -> Option<&'static str> {
    match vendor {
        "openai" => Some("openai"),
        "anthropic" => Some("anthropic"),
        "google" => Some("google-ai-studio"),
        "x-ai" => Some("xai"),
        "mistralai" => Some("mistral"),
        _ => None,
    }
}

impl PriceTable {
    /// The shipped table: `prices.toml` in this crate, list prices of the major
    /// providers' models as of the date written in it. Parsed once per process.
    pub fn builtin() -> Self {
        static BUILTIN: OnceLock<PriceTable> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Self::from_toml(include_str!("../prices.toml")).expect("prices.toml is valid")
            })
            .clone()
    }

    /// An empty table: every model has an unknown price.
    pub fn empty() -> Self {
        Self {
            providers: Arc::default(),
        }
    }

    /// Parses a table in the format of `prices.toml` (see the [type docs](PriceTable)).
    ///
    /// Fails on invalid TOML, and on an entry with an unknown field, no `input` or
    /// `output`, or a rate that is negative or not a number; the error names the entry.
    pub fn from_toml(text: &str) -> Result<Self, InvalidPriceTable> {
        let root: toml::Table = toml::from_str(text).map_err(|e| InvalidPriceTable {
            entry: None,
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut table = Self::empty();
        for (provider, models) in root {
            let toml::Value::Table(models) = models else {
                return Err(InvalidPriceTable::entry(
                    &provider,
                    None,
                    "must be a table of models",
                ));
            };
            for (model, price) in models {
                let price: Price = price.try_into().map_err(|e: toml::de::Error| {
                    InvalidPriceTable::entry(&provider, Some(&model), e.message())
                })?;
                table.checked_insert(&provider, &model, price)?;
            }
        }
        Ok(table)
    }

    fn checked_insert(
        &mut self,
        provider: &str,
        model: &str,
        price: Price,
    ) -> Result<(), InvalidPriceTable> {
        if provider.is_empty() {
            return Err(InvalidPriceTable::entry(
                provider,
                None,
                "the provider name is empty",
            ));
        }
        if model.is_empty() {
            return Err(InvalidPriceTable::entry(
                provider,
                Some(model),
                "the model name is empty",
            ));
        }
        price
            .check()
            .map_err(|message| InvalidPriceTable::entry(provider, Some(model), message))?;
        self.insert(provider, model, price);
        Ok(())
    }

    /// Adds or replaces every price of `other`: configuration overrides the shipped table.
    pub fn merge(&mut self, other: &PriceTable) {
        if other.providers.is_empty() {
            return;
        }
        let providers = Arc::make_mut(&mut self.providers);
        for (provider, models) in other.providers.iter() {
            let mine = providers.entry(provider.clone()).or_default();
            for (model, price) in models.iter() {
                mine.insert(model, price);
            }
        }
    }

    /// Adds or replaces one price.
    pub fn insert(&mut self, provider: &str, model: &str, price: Price) {
        let providers = Arc::make_mut(&mut self.providers);
        match providers.get_mut(provider) {
            Some(models) => models.insert(model, price),
            None => {
                let mut models = Models::default();
                models.insert(model, price);
                providers.insert(provider.into(), models);
            }
        }
    }

    /// The price of `model` at `provider`, found by the rules in the
    /// [type docs](PriceTable#lookups), or `None`: an unknown model has an unknown cost,
    /// never a silent zero.
    pub fn get(&self, provider: &str, model: &str) -> Option<Price> {
        if let Some(price) = self.find(provider, model) {
            return Some(price);
        }
        if let Some(vendor) = reseller_vendor(provider)
            && let Some(price) = self.find(vendor, model)
        {
            return Some(price);
        }
        let (vendor, name) = model.split_once('/')?;
        let vendor = vendor_provider(vendor)?;
        let name = match name.split_once(':') {
            Some((_, "free")) => return None,
            Some((name, _)) => name,
            None => name,
        };
        let name = match vendor {
            "anthropic" | "xai" if name.contains('.') => Cow::Owned(name.replace('.', "-")),
            _ => Cow::Borrowed(name),
        };
        self.find(vendor, &name)
    }

    /// Shorthand for [`get`](Self::get) then [`Price::cost`]: the cost of `usage` in USD,
    /// `None` when the price is unknown.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.get(provider, model).map(|price| price.cost(usage))
    }

    /// Every entry as `(provider, model, price)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Price)> {
        self.providers.iter().flat_map(|(provider, models)| {
            models
                .iter()
                .map(move |(model, price)| (&**provider, model, price))
        })
    }

    fn find(&self, provider: &str, model: &str) -> Option<Price> {
        self.providers.get(provider)?.find(model)
    }
}

/// The [builtin](PriceTable::builtin) table, as [`Providers`](crate::Providers) defaults to
/// the built-in providers.
impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl fmt::Debug for PriceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prices: usize = self.providers.values().map(Models::len).sum();
        f.debug_struct("PriceTable")
            .field("providers", &self.providers.len())
            .field("prices", &prices)
            .finish()
    }
}

/// Deserializes the format of `prices.toml` from any serde format (e.g. a `[prices]`
/// section of a larger configuration), with the same checks as
/// [`PriceTable::from_toml`].
impl<'de> Deserialize<'de> for PriceTable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, BTreeMap<String, Price>>::deserialize(deserializer)?;
        let mut table = Self::empty();
        for (provider, models) in raw {
            for (model, price) in models {
                table
                    .checked_insert(&provider, &model, price)
                    .map_err(serde::de::Error::custom)?;
            }
        }
        Ok(table)
    }
}

/// A price table that cannot be used; says which entry is wrong.
#[derive(Clone, Debug)]
pub struct InvalidPriceTable {
    entry: Option<String>,
    message: String,
}

impl InvalidPriceTable {
    fn entry(provider: &str, model: Option<&str>, message: impl Into<String>) -> Self {
        let mut entry = toml_key(provider).into_owned();
        if let Some(model) = model {
            entry.push('.');
            entry.push_str(&toml_key(model));
        }
        Self {
            entry: Some(entry),
            message: message.into(),
        }
    }
}

/// `key` as written in a TOML table header: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

impl fmt::Display for InvalidPriceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "invalid price table entry [{entry}]: {}", self.message),
            None => write!(f, "invalid price table: {}", self.message),
        }
    }
}

impl std::error::Error for InvalidPriceTable {}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[&str]) -> PriceTable {
        let mut t = PriceTable::empty();
        for (i, model) in entries.iter().enumerate() {
            t.insert("p", model, Price::new(i as f64, 0.0));
        }
        t
    }

    fn input(t: &PriceTable, model: &str) -> Option<f64> {
        t.get("p", model).map(|p| p.input)
    }

    #[test]
    fn prefix_needs_a_dash_boundary() {
        let t = table(&["gpt-4", "gpt-4o", "gpt-4o-mini"]);
        assert_eq!(input(&t, "gpt-4o-mini-2024-07-18"), Some(2.0));
        assert_eq!(input(&t, "gpt-4o-2024-08-06"), Some(1.0));
        assert_eq!(input(&t, "gpt-4-0613"), Some(0.0));
        // `gpt-4` is a prefix of `gpt-4o`, but not followed by `-`.
        assert_eq!(input(&t, "gpt-4omni"), None);
        assert_eq!(input(&t, "gpt-4.1"), None);
        assert_eq!(input(&t, "gpt"), None);
        assert_eq!(input(&t, ""), None);
        assert_eq!(input(&t, "-"), None);
        assert_eq!(input(&t, "gpt-4o-"), Some(1.0));
    }

    #[test]
    fn long_dashed_names_are_looked_up_in_linear_time() {
        let t = table(&["gpt-4", "gpt-4o", "gpt-4o-mini"]);
        // 200 KB of dashes: trying every prefix before a `-` would hash ~10 GB each
        // lookup (minutes for this loop); bounded by the longest entry, it is instant.
        let long = "a-".repeat(100_000);
        for _ in 0..1000 {
            assert_eq!(input(&t, &long), None);
        }
        let priced = format!("gpt-4o-mini-{long}");
        for _ in 0..1000 {
            assert_eq!(input(&t, &priced), Some(2.0));
        }
        // The bound is exact: a prefix as long as the longest entry still matches.
        assert_eq!(input(&t, "gpt-4o-mini-"), Some(2.0));
        assert_eq!(input(&t, "gpt-4o-mini"), Some(2.0));
    }

    #[test]
    fn insert_replaces() {
        let mut t = table(&["b", "a-1", "c", "a"]);
        t.insert("p", "a", Price::new(9.0, 9.0));
        let mut names: Vec<_> = t.iter().map(|(_, m, p)| (m, p.input)).collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(names, [("a", 9.0), ("a-1", 1.0), ("b", 0.0), ("c", 2.0)]);
    }

    #[test]
    fn toml_keys_in_errors() {
        assert_eq!(toml_key("openai"), "openai");
        assert_eq!(toml_key("gpt-4.1"), "\"gpt-4.1\"");
        assert_eq!(toml_key("@cf/meta/x"), "\"@cf/meta/x\"");
    }

    #[test]
    fn debug_is_short() {
        let t = table(&["a", "b"]);
        assert_eq!(format!("{t:?}"), "PriceTable { providers: 1, prices: 2 }");
    }
}
