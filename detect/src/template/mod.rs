//! A streaming log template miner in the style of Drain, with the tokenizer, masking and
//! template rendering of the Loghub-2.0 template conventions.
//!
//! Sources:
//! - P. He, J. Zhu, Z. Zheng, M. R. Lyu, "Drain: An Online Log Parsing Approach with Fixed
//!   Depth Tree", IEEE ICWS 2017: the tree and the matching. The first tree layer is the token
//!   count, the next `depth − 2` layers are the leading tokens (a token holding a parameter
//!   goes to the wildcard child, as does any token once a node has `max_children` children);
//!   a leaf holds log clusters, and the line joins the most similar one (share of equal
//!   constant positions, ties to the template with more parameters) when that similarity
//!   reaches `similarity_threshold`; the template then turns every differing position into a
//!   parameter. Otherwise a new cluster starts.
//! - S. Yu et al., "Brain: Log Parsing with Bidirectional Parallel Tree", IEEE TSC 2023
//!   (the constant part of a template is the pattern its lines share), and Y. Xiao, V.-H. Le,
//!   H. Zhang, "Demonstration-Free: Towards More Practical Log Parsing with Large Language
//!   Models" (LogBatcher), ASE 2024 (what a good template looks like: keys, units and
//!   punctuation around a value stay constant). Here: a parameter position keeps the constant
//!   prefix and suffix its values share (`=true`/`=3` -> `=<*>`, `storage1`/`storage7` ->
//!   `storage<*>`), see `common_affix` in [`token`].
//! - Z. Jiang et al., "A Large-scale Evaluation for Log Parsing Techniques: How Far are We?"
//!   (Loghub-2.0), ISSTA 2024: template text conventions. Adjacent parameters
//!   (`<*> <*>`, `<*>.<*>`, `<*>:<*>`, `<*><*>`) are written as one `<*>`, the whitespace of the
//!   line is kept, and an optional stretch (present in some lines of a template, absent in
//!   others) is one `<*>` that includes its surrounding whitespace (`bytes<*>sent`).
//!
//! Tokenizing and masking are described in [`token`]. Three additions to Drain, all general
//! rather than tuned to a data set:
//!
//! - **Masking** before the tree (see [`token`]).
//! - **Words are constants until many** (Brain's `down_split` threshold, S. Yu et al., IEEE
//!   TSC 2023): a line that is similar enough to a template but differs from it in a word
//!   (a token masking left whole, not the same but for its numbers, or a word value of a key:
//!   `VM Paused` / `VM Resumed`, `user=root` / `user=guest`) starts a template of its own; once
//!   one position has taken four distinct words (the median of Brain's published settings on
//!   the Loghub-2k sets) it is a parameter, and the templates kept apart for it join the first
//!   one (their ids become aliases of its id for [`TemplateMiner::template_text`]).
//! - **Optional parameters**: a line that matches no cluster of its own length joins an
//!   existing cluster whose *skeleton* is identical — the sequence of its constant tokens,
//!   ignoring parameters and a unit word right after a parameter (`1190 bytes (1.16 KB)
//!   sent` and `403 bytes sent` share the skeleton `bytes sent`). Such a cluster holds up to
//!   [`MAX_SHAPES`] token-count variants ("shapes"); its template text aligns them and puts
//!   `<*>` where they differ.
//!
//! **Stable ids**: a template's id is a hash (FNV-1a, [`aiops_core::stable_hash`]) of the
//! template text of the line that created it (its masked tokens and whitespace, adjacent
//! parameters as one), kept while the template generalises. Lines whose variables masking
//! recognises therefore get the same id whatever came before them, in a live run, a replay, a
//! backtest or a miner seeded from a learned dictionary (whose texts mask to the same text).
//! A template whose first line held a word that later became a parameter (`user root`, then
//! `user <*>`) keeps the id of that first line, so its id can differ between runs that saw
//! different first lines; lines added before such a position became a parameter keep the id
//! of the template they joined then (an alias of the merged one).
//!
//! The hot path allocates nothing per token: one pass over the line's bytes (classified by a
//! 256-entry table) yields the chunks as slices of the line together with whether they hold a
//! digit, a slash or a delimiter, so chunks without any skip masking altogether; masked
//! variants are built in a reused buffer, and every distinct token text is interned once into
//! a `u32` (an open-addressing table over a seeded hash, texts in one arena).
//! Memory is bounded by `max_templates` clusters (least recently matched evicted first) and
//! `max_tokens` tokens per line; the interner is rebuilt from the live clusters when it
//! exceeds `max_interned`.

use serde::{Deserialize, Serialize};

mod intern;
mod miner;
pub mod token;

pub use miner::TemplateMiner;

/// Writes adjacent parameters of a template as one `<*>` (`<*>.<*>`, then `<*><*>`,
/// `<*>:<*>` and `<*> <*>`, each until none is left): the normalisation the Loghub-2.0
/// evaluation applies to ground-truth templates (`correct_template_general` in its
/// `evaluator_main.py`; Jiang et al., ISSTA 2024) and that the miner applies to its own.
pub fn canonical_template(template: &str) -> String {
    miner::canonical(template.to_string())
}
pub use token::WILDCARD_TEXT;

/// Maximum number of token-count variants ("shapes") one cluster may hold.
pub const MAX_SHAPES: usize = 8;

/// Token id of a fully masked token (`<*>`).
const WILDCARD: u32 = 0;

/// Configuration of the template miner (`[detect.statistics.templates]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Depth of the prefix tree including the root and length layers (Drain's `depth`); the
    /// number of leading tokens used for routing is `depth − 2`. Default 4; at least 3.
    pub depth: usize,
    /// Minimum similarity for a line to join a cluster (Drain's `st`): the share of the
    /// template's constant positions that the line matches. Default 0.8; in `(0, 1]`.
    pub similarity_threshold: f64,
    /// Maximum children of a tree node before new tokens route to the wildcard child
    /// (Drain's `maxChild`). Default 100; at least 1.
    pub max_children: usize,
    /// Maximum clusters (templates) per miner, i.e. per log group; the least recently matched
    /// cluster is evicted first. Default 1000; at least 1.
    pub max_templates: usize,
    /// Tokens of a line beyond this count are folded into one trailing `<*>`. Default 128;
    /// at least 8.
    pub max_tokens: usize,
    /// Interned token texts kept before the interner is rebuilt from the live clusters.
    /// Default 200000; at least 1000.
    pub max_interned: usize,
    /// Treat English weekday and month names (`Mon`, `June`) as parameters, since they are
    /// parts of dates. Default true.
    pub mask_dates: bool,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            depth: 4,
            similarity_threshold: 0.8,
            max_children: 100,
            max_templates: 1000,
            max_tokens: 128,
            max_interned: 200_000,
            mask_dates: true,
        }
    }
}

/// The outcome of adding one line to the miner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateMatch {
    /// Id of the cluster the line joined: a hash of the template text of the line that
    /// created it, so the same line gets the same id in every run (see the module
    /// documentation for the exception). Never 0. Written as a string with [`template_key`].
    pub template_id: u64,
    /// Whether this line created the cluster.
    pub created: bool,
}

/// The stable string form of a template id: 16 lowercase hexadecimal digits, as used in
/// series keys and findings (`log_template:<group>:<template_key>`).
pub fn template_key(template_id: u64) -> String {
    format!("{template_id:016x}")
}

/// A summary of one template, for reports and evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateInfo {
    /// Template id (see [`TemplateMatch::template_id`]).
    pub template_id: u64,
    /// Template text with `<*>` for parameters.
    pub text: String,
    /// Lines matched so far.
    pub size: u64,
}

#[cfg(test)]
mod tests;
