//! Output limits of Bedrock models: the largest `maxTokens` (Converse `inferenceConfig`) each
//! model accepts, so that `aiops validate` rejects a configuration Bedrock would refuse on
//! every finding, and the explainer can say which limit applies.
//!
//! The table ([`MODEL_MAX_TOKENS`]) holds the model families an operator is likely to put in
//! `act.enrichment.model_id`; `act.enrichment.max_tokens_limits` overrides or extends it (a
//! model id prefix -> the limit). A model in neither is held to [`UNKNOWN_MODEL_MAX_TOKENS`].
//!
//! Sources, read 2026-12-05 (limits change with new model versions; an override fixes a value
//! that is out of date without a new release):
//! - Amazon Bedrock User Guide, model cards ("Max output tokens"), e.g.
//!   <https://docs.aws.amazon.com/bedrock/latest/userguide/model-card-anthropic-claude-3-5-haiku.html>
//!   (Claude 3.5 Haiku: 8K) and `model-card-anthropic-claude-haiku-5-5` (128K);
//! - Anthropic, "Models overview" (<https://docs.anthropic.com/en/docs/about-claude/models/overview>):
//!   Claude 3 models 4,096; Claude 3.5 Haiku and Sonnet 8,192; Claude 3.7 Sonnet, Sonnet 4,
//!   Sonnet 4.5, Haiku 4.5 and Opus 4.5 64,000; Opus 4 and 4.1 32,000; Sonnet 4.6, Opus 4.6 and
//!   later, and the 5.5 family 128,000;
//! - Amazon Nova user guide and the Bedrock model cards of Nova: Micro, Lite and Pro (v1) 5K
//!   (an AWS migration post gives 10K: the card's lower value is used; override if your
//!   region accepts more), Premier 32K, Nova 2 Lite 64K;
//! - Bedrock inference parameters pages (`model-parameters-titan-text`,
//!   `model-parameters-mistral-text-completion`, `model-parameters-jamba`,
//!   `model-parameters-meta`): Amazon Titan Text (`maxTokenCount`: Lite 4,096, Express 8,192,
//!   Premier 3,072), Mistral (`max_tokens`: Mistral 7B Instruct 8,192, Mixtral 8x7B Instruct
//!   4,096, Mistral Small and Large 8,192), AI21 Jamba 1.5 (`max_tokens` 0..=4,096), Meta
//!   Llama 3.x (`max_gen_len` at most 2,048; this value was not re-read on that date).
//!
//! Not in the table (held to [`UNKNOWN_MODEL_MAX_TOKENS`] unless overridden): Cohere, Meta
//! Llama 4, DeepSeek, OpenAI open-weight and other models whose limit was not confirmed.

use std::collections::BTreeMap;

/// One row of the built-in table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimit {
    /// Prefix of the base model id (without geo prefix or ARN), e.g.
    /// `anthropic.claude-3-5-haiku`; the longest matching prefix wins.
    pub prefix: &'static str,
    /// Largest `maxTokens` the model accepts, tokens.
    pub max_tokens: u32,
    /// Human name of the family, for messages.
    pub family: &'static str,
}

const fn row(prefix: &'static str, max_tokens: u32, family: &'static str) -> ModelLimit {
    ModelLimit {
        prefix,
        max_tokens,
        family,
    }
}

/// Output limits per model family (see the module documentation for the sources and date).
pub const MODEL_MAX_TOKENS: &[ModelLimit] = &[
    row(
        "anthropic.claude-3-haiku",
        4_096,
        "Anthropic Claude 3 Haiku",
    ),
    row(
        "anthropic.claude-3-sonnet",
        4_096,
        "Anthropic Claude 3 Sonnet",
    ),
    row("anthropic.claude-3-opus", 4_096, "Anthropic Claude 3 Opus"),
    row(
        "anthropic.claude-3-5-haiku",
        8_192,
        "Anthropic Claude 3.5 Haiku",
    ),
    row(
        "anthropic.claude-3-5-sonnet",
        8_192,
        "Anthropic Claude 3.5 Sonnet",
    ),
    row(
        "anthropic.claude-3-7-sonnet",
        64_000,
        "Anthropic Claude 3.7 Sonnet",
    ),
    row(
        "anthropic.claude-sonnet-4",
        64_000,
        "Anthropic Claude Sonnet 4 / 4.5",
    ),
    row(
        "anthropic.claude-sonnet-4-6",
        128_000,
        "Anthropic Claude Sonnet 4.6",
    ),
    row(
        "anthropic.claude-haiku-4",
        64_000,
        "Anthropic Claude Haiku 4.5",
    ),
    row(
        "anthropic.claude-opus-4",
        32_000,
        "Anthropic Claude Opus 4 / 4.1",
    ),
    row(
        "anthropic.claude-opus-4-5",
        64_000,
        "Anthropic Claude Opus 4.5",
    ),
    row(
        "anthropic.claude-opus-4-6",
        128_000,
        "Anthropic Claude Opus 4.6",
    ),
    row(
        "anthropic.claude-opus-4-7",
        128_000,
        "Anthropic Claude Opus 4.7",
    ),
    row(
        "anthropic.claude-opus-4-8",
        128_000,
        "Anthropic Claude Opus 4.8",
    ),
    row(
        "anthropic.claude-haiku-5",
        128_000,
        "Anthropic Claude Haiku 5.x",
    ),
    row(
        "anthropic.claude-sonnet-5",
        128_000,
        "Anthropic Claude Sonnet 5.x",
    ),
    row(
        "anthropic.claude-opus-5",
        128_000,
        "Anthropic Claude Opus 5.x",
    ),
    row("amazon.nova-micro", 5_000, "Amazon Nova Micro"),
    row("amazon.nova-lite", 5_000, "Amazon Nova Lite"),
    row("amazon.nova-pro", 5_000, "Amazon Nova Pro"),
    row("amazon.nova-premier", 32_000, "Amazon Nova Premier"),
    row("amazon.nova-2-lite", 64_000, "Amazon Nova 2 Lite"),
    row("amazon.titan-text-lite", 4_096, "Amazon Titan Text Lite"),
    row(
        "amazon.titan-text-express",
        8_192,
        "Amazon Titan Text Express",
    ),
    row(
        "amazon.titan-text-premier",
        3_072,
        "Amazon Titan Text Premier",
    ),
    row("meta.llama3", 2_048, "Meta Llama 3.x"),
    row("mistral.mistral-7b-instruct", 8_192, "Mistral 7B Instruct"),
    row(
        "mistral.mixtral-8x7b-instruct",
        4_096,
        "Mixtral 8x7B Instruct",
    ),
    row("mistral.mistral-small", 8_192, "Mistral Small"),
    row("mistral.mistral-large", 8_192, "Mistral Large"),
    row("ai21.jamba-1-5", 4_096, "AI21 Jamba 1.5"),
];

/// The limit of a model in neither the table nor the overrides, tokens (the bound `validate`
/// applied to every model before the table existed).
pub const UNKNOWN_MODEL_MAX_TOKENS: u32 = 8_192;

/// Geo prefixes of cross-region inference profile ids (`us.anthropic...`).
const GEO_PREFIXES: [&str; 8] = [
    "us.", "eu.", "apac.", "us-gov.", "ca.", "jp.", "au.", "global.",
];

/// The base model id of a model id, inference profile id or ARN: the part after the last `/`
/// of an ARN (`...:inference-profile/us.anthropic.claude-...` or `...:foundation-model/...`),
/// without a geo prefix (`us.`, `eu.`, `apac.`, `global.`, ...). An application inference
/// profile ARN names no model: its id is returned as it is (and matches no table row).
pub fn base_model_id(model_id: &str) -> &str {
    let id = model_id.trim();
    let id = if id.starts_with("arn:") {
        id.rsplit('/').next().unwrap_or(id)
    } else {
        id
    };
    for g in GEO_PREFIXES {
        if let Some(rest) = id.strip_prefix(g)
            && rest.contains('.')
        {
            return rest;
        }
    }
    id
}

/// Where a limit came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// `act.enrichment.max_tokens_limits.<key>`.
    Override(String),
    /// The built-in table: the family name.
    Table(&'static str),
    /// Neither: [`UNKNOWN_MODEL_MAX_TOKENS`].
    Unknown,
}

/// The limit that applies to one model and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedLimit {
    /// Largest `maxTokens`, tokens.
    pub max_tokens: u32,
    /// Its source.
    pub source: LimitSource,
}

impl ResolvedLimit {
    /// The source in words, e.g. `built-in table: Anthropic Claude 3.5 Haiku`.
    pub fn describe(&self) -> String {
        match &self.source {
            LimitSource::Override(k) => format!("act.enrichment.max_tokens_limits.{k:?}"),
            LimitSource::Table(f) => format!("built-in table: {f}"),
            LimitSource::Unknown => "model not in the built-in table: default limit".into(),
        }
    }
}

/// The `maxTokens` limit of `model_id`: the override whose key is the longest prefix of the
/// model id or of its base id ([`base_model_id`]), else the table row with the longest
/// matching prefix, else [`UNKNOWN_MODEL_MAX_TOKENS`].
pub fn max_tokens_limit(model_id: &str, overrides: &BTreeMap<String, u32>) -> ResolvedLimit {
    let full = model_id.trim();
    let base = base_model_id(full);
    let hit = overrides
        .iter()
        .filter(|(k, _)| {
            !k.is_empty() && (full.starts_with(k.as_str()) || base.starts_with(k.as_str()))
        })
        .max_by_key(|(k, _)| k.len());
    if let Some((k, v)) = hit {
        return ResolvedLimit {
            max_tokens: *v,
            source: LimitSource::Override(k.clone()),
        };
    }
    match MODEL_MAX_TOKENS
        .iter()
        .filter(|r| base.starts_with(r.prefix))
        .max_by_key(|r| r.prefix.len())
    {
        Some(r) => ResolvedLimit {
            max_tokens: r.max_tokens,
            source: LimitSource::Table(r.family),
        },
        None => ResolvedLimit {
            max_tokens: UNKNOWN_MODEL_MAX_TOKENS,
            source: LimitSource::Unknown,
        },
    }
}

/// Whether a Bedrock error message says the requested `maxTokens` is above the model's
/// limit. Messages seen: Anthropic (`max_tokens: 10000 > 8192, which is the maximum allowed
/// number of output tokens for ...`), Converse (`The maximum tokens you requested exceeds the
/// model limit of 5000`), Titan (`#/textGenerationConfig/maxTokenCount: 10000 is not less or
/// equal to 8192`), Llama (`max_gen_len`). "Input is too long" is not one.
pub fn is_max_tokens_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    const HINTS: [&str; 7] = [
        "max_tokens",
        "maxtokens",
        "max tokens",
        "maximum tokens",
        "maxtokencount",
        "max_gen_len",
        "maximum allowed number of output tokens",
    ];
    HINTS.iter().any(|h| m.contains(h))
}

/// The limit a max-tokens error message names, when it names one: the number after `> `,
/// `limit of `, `less or equal to ` or `lower than `.
pub fn limit_in_message(message: &str) -> Option<u32> {
    let m = message.to_ascii_lowercase();
    for marker in ["> ", "limit of ", "less or equal to ", "lower than "] {
        if let Some(pos) = m.find(marker) {
            let digits: String = m[pos + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(v) = digits.parse() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_ids_drop_geo_prefixes_and_arns() {
        let cases = [
            (
                "us.anthropic.claude-3-5-haiku-20241022-v1:0",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
            ),
            (
                "anthropic.claude-3-haiku-20240307-v1:0",
                "anthropic.claude-3-haiku-20240307-v1:0",
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "anthropic.claude-haiku-4-5-20251001-v1:0",
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.amazon.nova-pro-v1:0",
                "amazon.nova-pro-v1:0",
            ),
            (
                "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-1-70b-instruct-v1:0",
                "meta.llama3-1-70b-instruct-v1:0",
            ),
            (
                "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
                "a1b2c3",
            ),
            ("us.x", "us.x"),
        ];
        for (id, want) in cases {
            assert_eq!(base_model_id(id), want, "{id}");
        }
    }

    #[test]
    fn limits_by_family_longest_prefix_and_overrides() {
        let none = BTreeMap::new();
        let cases = [
            ("us.anthropic.claude-3-5-haiku-20241022-v1:0", 8_192),
            ("anthropic.claude-3-haiku-20240307-v1:0", 4_096),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", 64_000),
            ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", 64_000),
            ("global.anthropic.claude-sonnet-4-6", 128_000),
            ("us.anthropic.claude-opus-4-1-20250805-v1:0", 32_000),
            ("us.anthropic.claude-opus-4-5-20251101-v1:0", 64_000),
            ("us.amazon.nova-micro-v1:0", 5_000),
            ("amazon.titan-text-premier-v1:0", 3_072),
            ("us.meta.llama3-3-70b-instruct-v1:0", 2_048),
            ("mistral.mixtral-8x7b-instruct-v0:1", 4_096),
            ("mistral.mistral-large-2407-v1:0", 8_192),
            ("some.new-model-v1:0", UNKNOWN_MODEL_MAX_TOKENS),
        ];
        for (id, want) in cases {
            assert_eq!(max_tokens_limit(id, &none).max_tokens, want, "{id}");
        }
        assert_eq!(
            max_tokens_limit("us.anthropic.claude-3-5-haiku-20241022-v1:0", &none).describe(),
            "built-in table: Anthropic Claude 3.5 Haiku"
        );
        assert_eq!(
            max_tokens_limit("x", &none).describe(),
            "model not in the built-in table: default limit"
        );
        // Overrides beat the table, by base id or full id, longest key first.
        let o: BTreeMap<String, u32> = [
            ("amazon.nova".to_string(), 10_000),
            ("amazon.nova-pro".to_string(), 9_000),
            (
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/p1".to_string(),
                3_000,
            ),
        ]
        .into();
        let got = max_tokens_limit("us.amazon.nova-pro-v1:0", &o);
        assert_eq!(
            got,
            ResolvedLimit {
                max_tokens: 9_000,
                source: LimitSource::Override("amazon.nova-pro".into())
            }
        );
        assert_eq!(
            got.describe(),
            "act.enrichment.max_tokens_limits.\"amazon.nova-pro\""
        );
        assert_eq!(
            max_tokens_limit("amazon.nova-lite-v1:0", &o).max_tokens,
            10_000
        );
        assert_eq!(
            max_tokens_limit(
                "arn:aws:bedrock:us-east-1:1:application-inference-profile/p1",
                &o
            )
            .max_tokens,
            3_000
        );
    }

    #[test]
    fn validate_rejects_max_tokens_over_the_model_limit_naming_key_model_and_limit() {
        let mut c = crate::ActConfig::default();
        c.enrichment.provider = "bedrock".into();
        c.enrichment.model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0".into();
        c.enrichment.max_tokens = 8_192;
        assert_eq!(c.validate(), Ok(()));
        c.enrichment.max_tokens = 8_193;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.max_tokens: 8193 is outside 1..=8192 for model \"us.anthropic.claude-3-5-haiku-20241022-v1:0\" (its limit, built-in table: Anthropic Claude 3.5 Haiku); lower it, or set act.enrichment.max_tokens_limits.\"anthropic.claude-3-5-haiku-20241022-v1:0\" if the model accepts more"
        );
        c.enrichment.model_id = "anthropic.claude-3-haiku-20240307-v1:0".into();
        c.enrichment.max_tokens = 4_097;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.max_tokens: 4097 is outside 1..=4096 for model \"anthropic.claude-3-haiku-20240307-v1:0\" (its limit, built-in table: Anthropic Claude 3 Haiku); lower it, or set act.enrichment.max_tokens_limits.\"anthropic.claude-3-haiku-20240307-v1:0\" if the model accepts more"
        );
        // An override raises (or lowers) the limit.
        c.enrichment
            .max_tokens_limits
            .insert("anthropic.claude-3-haiku".into(), 5_000);
        assert_eq!(c.validate(), Ok(()));
        c.enrichment.max_tokens = 5_001;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.max_tokens: 5001 is outside 1..=5000 for model \"anthropic.claude-3-haiku-20240307-v1:0\" (its limit, act.enrichment.max_tokens_limits.\"anthropic.claude-3-haiku\"); lower it, or set act.enrichment.max_tokens_limits.\"anthropic.claude-3-haiku-20240307-v1:0\" if the model accepts more"
        );
        c.enrichment.max_tokens_limits.insert("x".into(), 0);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.max_tokens_limits: \"x\" = 0: keys must be non-empty and limits within 1..=1000000"
        );
        // Unknown models: the former bound of every model; the statistical default passes.
        let mut c = crate::ActConfig::default();
        c.enrichment.provider = "bedrock".into();
        c.enrichment.model_id = "acme.new-model-v1:0".into();
        c.enrichment.max_tokens = 9_000;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.max_tokens: 9000 is outside 1..=8192 for model \"acme.new-model-v1:0\" (its limit, model not in the built-in table: default limit); lower it, or set act.enrichment.max_tokens_limits.\"acme.new-model-v1:0\" if the model accepts more"
        );
        c.enrichment.max_tokens = 0;
        assert!(c.validate().is_err());
        assert_eq!(crate::ActConfig::default().validate(), Ok(()));
        // The table is read from TOML (deny_unknown_fields elsewhere still applies).
        let e: crate::bedrock::EnrichmentConfig = toml::from_str(
            "provider = \"bedrock\"\nmodel_id = \"us.amazon.nova-pro-v1:0\"\nmax_tokens = 8000\n[max_tokens_limits]\n\"amazon.nova-pro\" = 10000\n",
        )
        .unwrap();
        assert_eq!(e.max_tokens_limit().max_tokens, 10_000);
        assert_eq!(e.check_max_tokens(), Ok(()));
        assert!(
            toml::from_str::<crate::bedrock::EnrichmentConfig>("max_token_limits = {}\n").is_err()
        );
    }

    #[test]
    fn max_tokens_errors_are_recognised_and_their_limit_read() {
        let cases = [
            (
                "max_tokens: 10000 > 8192, which is the maximum allowed number of output tokens for claude-3-5-haiku-20241022",
                true,
                Some(8_192),
            ),
            (
                "The maximum tokens you requested exceeds the model limit of 5000. Try again with a maximum tokens value that is lower than 5000.",
                true,
                Some(5_000),
            ),
            (
                "Malformed input request: #/textGenerationConfig/maxTokenCount: 10000 is not less or equal to 8192, please reformat your request.",
                true,
                Some(8_192),
            ),
            ("Input is too long for requested model.", false, None),
            ("The provided model identifier is invalid.", false, None),
        ];
        for (m, is, limit) in cases {
            assert_eq!(is_max_tokens_error(m), is, "{m}");
            assert_eq!(limit_in_message(m), limit, "{m}");
        }
    }
}
