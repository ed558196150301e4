//! Prices of hosted models (USD per 1M tokens), so every trace served by a hosted engine carries its cost.
//! The built-in table is `config/prices.toml`; operators and engines override rows with their own tables.
use serde::Deserialize;
use std::collections::BTreeMap;

/// The price file shipped with the daemon, embedded so the binary needs no file to cost requests.
const BUILTIN: &str = include_str!("../../config/prices.toml");

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PriceError {
    /// toml's message names the key, the line and the column.
    #[error("invalid price table: {0}")]
    Parse(String),
    #[error("invalid price models.\"{model}\".{key} = {value}: must be a finite number >= 0 (USD per 1M tokens)")]
    Invalid { model: String, key: &'static str, value: f64 },
}

/// USD per 1 million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_m: f64,
    pub output_per_m: f64,
    /// Input tokens read from the provider's prompt cache; equal to `input_per_m` when the file gives none.
    pub cached_input_per_m: f64,
}

impl Price {
    /// Cost of one call in USD. `cached_input_tokens` are *part of* `input_tokens`, as OpenAI reports them
    /// (`usage.prompt_tokens` includes `usage.prompt_tokens_details.cached_tokens`); a cached count above the
    /// input count is clamped to it rather than billed twice.
    pub fn cost_usd(&self, input_tokens: u64, output_tokens: u64, cached_input_tokens: u64) -> f64 {
        let cached = cached_input_tokens.min(input_tokens);
        let uncached = input_tokens - cached;
        (uncached as f64 * self.input_per_m
            + cached as f64 * self.cached_input_per_m
            + output_tokens as f64 * self.output_per_m)
            / 1_000_000.0
    }
}

/// Model name → price. Ordered, so listings and status output are stable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    models: BTreeMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    models: BTreeMap<String, RawPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrice {
    input: f64,
    output: f64,
    cached_input: Option<f64>,
}

impl PriceTable {
    /// The table embedded from `config/prices.toml`.
    pub fn builtin() -> Self {
        // A unit test parses the same text, so this cannot fail in a built binary; if it ever did, hosted
        // requests would be priced only by the operator's file and engine prices, and the log would say why.
        Self::from_toml(BUILTIN).unwrap_or_else(|error| {
            tracing::error!(%error, "the built-in price table (config/prices.toml) does not parse");
            Self::default()
        })
    }

    /// Parses a price file: `[models."NAME"] input = .., output = .., cached_input = ..` (the last optional).
    pub fn from_toml(text: &str) -> Result<Self, PriceError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| PriceError::Parse(e.to_string()))?;
        let mut models = BTreeMap::new();
        for (model, raw) in raw.models {
            let check = |key: &'static str, value: f64| {
                if value.is_finite() && value >= 0.0 {
                    Ok(value)
                } else {
                    Err(PriceError::Invalid { model: model.clone(), key, value })
                }
            };
            let price = Price {
                input_per_m: check("input", raw.input)?,
                output_per_m: check("output", raw.output)?,
                cached_input_per_m: check("cached_input", raw.cached_input.unwrap_or(raw.input))?,
            };
            models.insert(model, price);
        }
        Ok(Self { models })
    }

    /// Rows of `overrides` replace rows of the same name as a whole (a partial row would silently mix two
    /// providers' figures); other rows are kept.
    pub fn merge(&mut self, overrides: PriceTable) {
        self.models.extend(overrides.models);
    }

    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.models.insert(model.into(), price);
    }

    /// Exact name first; then a dated snapshot (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`) falls back to
    /// its family name (`gpt-4o`, `claude-sonnet-4`). Case-sensitive: providers' names are.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        self.models.get(model).or_else(|| self.models.get(strip_date_suffix(model)?))
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Price)> {
        self.models.iter().map(|(name, price)| (name.as_str(), price))
    }
}

/// `name-YYYY-MM-DD` or `name-YYYYMMDD` → `name`; None when there is no such suffix.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let bytes = model.as_bytes();
    let is_date = |suffix: &[u8]| match suffix.len() {
        11 => {
            suffix[0] == b'-'
                && suffix[5] == b'-'
                && suffix[8] == b'-'
                && [1..5, 6..8, 9..11].into_iter().all(|r| suffix[r].iter().all(u8::is_ascii_digit))
        }
        9 => suffix[0] == b'-' && suffix[1..].iter().all(u8::is_ascii_digit),
        _ => false,
    };
    [11, 9]
        .into_iter()
        .filter(|&n| bytes.len() > n)
        .find(|&n| is_date(&bytes[bytes.len() - n..]))
        // The suffix is ASCII, so the cut is on a char boundary.
        .and_then(|n| model.get(..model.len() - n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> PriceTable {
        PriceTable::from_toml(text).expect("test table parses")
    }

    #[test]
    fn builtin_parses_and_has_the_documented_rows() {
        let t = PriceTable::builtin();
        assert!(t.len() >= 10);
        let p = t.lookup("gpt-4o").expect("gpt-4o priced");
        assert_eq!((p.input_per_m, p.output_per_m, p.cached_input_per_m), (2.50, 10.00, 1.25));
        for model in ["gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini"] {
            assert!(t.lookup(model).is_some(), "{model} missing from config/prices.toml");
        }
        // Every row is sane: cache reads never cost more than fresh input.
        for (name, p) in t.iter() {
            assert!(p.cached_input_per_m <= p.input_per_m, "{name}");
        }
    }

    #[test]
    fn cached_input_defaults_to_input() {
        let t = table("[models.m]\ninput = 0.5\noutput = 1.5\n");
        let p = t.lookup("m").expect("m");
        assert_eq!(p.cached_input_per_m, 0.5);
        assert!(table("").is_empty());
    }

    #[test]
    fn lookup_exact_then_dated_snapshot() {
        let t = table(
            "[models.\"gpt-4o\"]\ninput = 2.5\noutput = 10.0\n\
             [models.\"gpt-4o-2024-05-13\"]\ninput = 5.0\noutput = 15.0\n\
             [models.\"claude-sonnet-4\"]\ninput = 3.0\noutput = 15.0\n",
        );
        let input = |m: &str| t.lookup(m).map(|p| p.input_per_m);
        assert_eq!(input("gpt-4o"), Some(2.5));
        // An exact row for a snapshot wins over its family.
        assert_eq!(input("gpt-4o-2024-05-13"), Some(5.0));
        assert_eq!(input("gpt-4o-2024-08-06"), Some(2.5));
        assert_eq!(input("claude-sonnet-4-20250514"), Some(3.0));
        assert_eq!(input("GPT-4o"), None);
        assert_eq!(input("gpt-4o-mini"), None);
        assert_eq!(input("gpt-4o-2024-08"), None);
        assert_eq!(input("gpt-4o-2024-08-0x"), None);
        assert_eq!(input("-20250514"), None);
        assert_eq!(strip_date_suffix("é-2024-08-06"), Some("é"));
        assert_eq!(strip_date_suffix("gpt-4o-1234567"), None);
    }

    #[test]
    fn cost_arithmetic() {
        let p = Price { input_per_m: 2.5, output_per_m: 10.0, cached_input_per_m: 1.25 };
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
        close(p.cost_usd(1_000_000, 0, 0), 2.5);
        close(p.cost_usd(0, 1_000_000, 0), 10.0);
        // 1000 prompt tokens of which 400 cached: 600 * 2.5 + 400 * 1.25 + 200 * 10, per million.
        close(p.cost_usd(1000, 200, 400), (600.0 * 2.5 + 400.0 * 1.25 + 200.0 * 10.0) / 1e6);
        // More cached than input (a confused upstream) is clamped, never negative.
        close(p.cost_usd(100, 0, 500), 100.0 * 1.25 / 1e6);
        close(p.cost_usd(0, 0, 0), 0.0);
    }

    #[test]
    fn merge_replaces_whole_rows() {
        let mut t = PriceTable::builtin();
        let before = t.len();
        t.merge(table("[models.\"gpt-4o\"]\ninput = 1.0\noutput = 2.0\n[models.mine]\ninput = 0\noutput = 0\n"));
        assert_eq!(t.len(), before + 1);
        let p = t.lookup("gpt-4o-2024-08-06").expect("gpt-4o");
        assert_eq!((p.input_per_m, p.output_per_m, p.cached_input_per_m), (1.0, 2.0, 1.0));
        assert_eq!(t.lookup("mine").map(|p| p.cost_usd(10, 10, 0)), Some(0.0));
    }

    #[test]
    fn refusals_name_the_model_and_key() {
        let err = |text: &str| PriceTable::from_toml(text).expect_err("refused").to_string();
        let e = err("[models.\"gpt-x\"]\ninput = 1.0\noutput = -2.0\n");
        assert!(e.contains("models.\"gpt-x\".output = -2"), "{e}");
        let e = err("[models.m]\ninput = nan\noutput = 1.0\n");
        assert!(e.contains("models.\"m\".input = NaN"), "{e}");
        let e = err("[models.m]\ninput = 1.0\noutput = 1.0\ncached_input = inf\n");
        assert!(e.contains("models.\"m\".cached_input = inf"), "{e}");
        // Unknown keys and missing required keys are refused by name.
        let e = err("[models.m]\ninput = 1.0\noutput = 1.0\ncache_input = 0.5\n");
        assert!(e.contains("cache_input"), "{e}");
        let e = err("[models.m]\ninput = 1.0\n");
        assert!(e.contains("output"), "{e}");
        let e = err("[model.m]\ninput = 1.0\noutput = 1.0\n");
        assert!(e.contains("model"), "{e}");
        // Integers are prices too.
        assert_eq!(table("[models.m]\ninput = 1\noutput = 2\n").lookup("m").map(|p| p.output_per_m), Some(2.0));
    }
}
