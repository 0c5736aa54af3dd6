//! The Drain tree, clusters, and template rendering.

use super::intern::{GAP_NONE, GAP_SPACE, Interner};
use super::token::{
    C_DIGIT, C_NOT_DIGIT, C_SLASH, C_SPLIT, Chunks, MaskKind, WILDCARD_TEXT, common_affix,
    is_date_word, is_hex_id_chunk, is_host, is_port, is_unit_word, is_whole, mask_core,
    mask_marked_token, pieces, unit_core,
};
use super::{MAX_SHAPES, TemplateConfig, TemplateInfo, TemplateMatch, WILDCARD};
use ahash::AHashMap;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Node {
    children: AHashMap<u32, usize>,
    wildcard: Option<usize>,
    /// At leaves: (cluster slot, shape index).
    clusters: Vec<(usize, u8)>,
}

/// Token kind: parameter-like (a wildcard or a bare mask such as `:<*>`).
const K_PARAM: u8 = 1;
/// Token kind: the value of a key (starts with `=`).
const K_VALUE: u8 = 2;
/// Token kind: holds a mask.
const K_MASKED: u8 = 4;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Shape {
    tokens: Vec<u32>,
    /// Per position: the whitespace before the token in the line that created the shape
    /// (interned; [`GAP_NONE`] for a token glued to the one before).
    gaps: Vec<u32>,
    /// Per position: for a parameter position, the constant prefix and suffix its values
    /// share, as an interned template token such as `=<*>` (0 when none).
    affixes: Vec<u32>,
    /// Per position: the interner's flags of the token ([`K_PARAM`], [`K_VALUE`],
    /// [`K_MASKED`]), so that matching reads no interner entry for the template's tokens.
    kinds: Vec<u8>,
    leaf: usize,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cluster {
    id: u64,
    shapes: Vec<Shape>,
    skeleton: u64,
    size: u64,
    last_used: u64,
    /// Cached template text; `None` when it must be recomputed.
    text: Option<String>,
    /// For a cluster started because its line's word differed from a similar cluster's (see
    /// [`WORD_VARIABLE_VALUES`]): that cluster's id, shape and the position.
    parent: Option<(u64, u8, u16)>,
    /// Per (shape, position) where lines with other words were kept apart: the ids of the
    /// clusters they started (at most [`WORD_VARIABLE_VALUES`] − 2).
    splits: Vec<(u8, u16, Vec<u64>)>,
}

/// Distinct words a template position must take before it is a parameter (Brain's
/// `threshold`: S. Yu et al., "Brain: Log Parsing with Bidirectional Parallel Tree", IEEE TSC
/// 2023, `down_split`; its published per-data-set settings on the 16 Loghub-2k sets range
/// from 2 to 6, median 4, and this is that median for every log). A token that masking does
/// not recognise as a variable (no digit, no path, not the value of a key) is a constant: a
/// line that differs from a similar template only in such words (`VM Paused` / `VM Resumed`,
/// `interface ee0` / `interface alt0`) starts a template of its own, as Drain does for words
/// in the leading positions of its tree. Once a position has taken this many distinct words
/// (`user alice`, `bob`, `carol`, `dave`), it is a parameter and the templates kept apart
/// for it join the first one.
const WORD_VARIABLE_VALUES: usize = 4;

/// The streaming template miner for one log group.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TemplateMiner {
    cfg: TemplateConfig,
    pub(super) interner: Interner,
    nodes: Vec<Node>,
    /// Length layer: token count (at most `max_tokens`) -> node index.
    by_len: Vec<Option<usize>>,
    clusters: Vec<Option<Cluster>>,
    free: Vec<usize>,
    by_id: AHashMap<u64, usize>,
    by_skeleton: AHashMap<u64, usize>,
    /// Ids of clusters that joined another one (see [`WORD_VARIABLE_VALUES`]) -> its id.
    aliases: AHashMap<u64, u64>,
    clock: u64,
    live: usize,
    evicted: u64,
    #[serde(skip)]
    scratch: Vec<u8>,
    #[serde(skip)]
    tokens: Vec<u32>,
    /// Per token of the current line: the byte range of the whitespace before it.
    #[serde(skip)]
    gap_ranges: Vec<(usize, usize)>,
    #[serde(skip)]
    pieces: Vec<(usize, usize)>,
}

impl TemplateMiner {
    /// An empty miner. Out-of-range configuration values are clamped to their documented
    /// bounds (use [`crate::config::StatisticsConfig::validate`] to reject them instead).
    pub fn new(cfg: &TemplateConfig) -> Self {
        let mut cfg = cfg.clone();
        cfg.depth = cfg.depth.max(3);
        cfg.max_children = cfg.max_children.max(1);
        cfg.max_templates = cfg.max_templates.max(1);
        cfg.max_tokens = cfg.max_tokens.max(8);
        cfg.max_interned = cfg.max_interned.max(1000);
        if !(cfg.similarity_threshold > 0.0 && cfg.similarity_threshold <= 1.0) {
            cfg.similarity_threshold = 0.5;
        }
        TemplateMiner {
            cfg,
            interner: Interner::new(),
            nodes: vec![Node::default()],
            by_len: Vec::new(),
            clusters: Vec::new(),
            free: Vec::new(),
            by_id: AHashMap::new(),
            by_skeleton: AHashMap::new(),
            aliases: AHashMap::new(),
            clock: 0,
            live: 0,
            evicted: 0,
            scratch: Vec::with_capacity(64),
            tokens: Vec::with_capacity(64),
            gap_ranges: Vec::with_capacity(64),
            pieces: Vec::with_capacity(8),
        }
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no template exists yet.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Templates evicted so far (least recently matched first).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Masks and tokenises `line` into `self.tokens` (see [`super::token`]), and the
    /// whitespace before each token into `self.gap_ranges`.
    pub(super) fn tokenize(&mut self, line: &str) {
        self.tokens.clear();
        self.gap_ranges.clear();
        let max = self.cfg.max_tokens;
        let bytes = line.as_bytes();
        let mut prev_end = 0;
        for (start, end, flags) in (Chunks { bytes, pos: 0 }) {
            let gap = (prev_end, start);
            prev_end = end;
            if self.tokens.len() + 1 >= max {
                self.push(WILDCARD, gap);
                break;
            }
            // Whitespace is ASCII, so the chunk is the UTF-8 of a `&str` slice.
            let tok = bytes.get(start..end).unwrap_or(&[]);
            if flags & C_DIGIT == 0 {
                // A date word is letters and trailing punctuation: no digit.
                if self.cfg.mask_dates && is_date_word(tok) {
                    self.push(WILDCARD, gap);
                    continue;
                }
                // A unit after a quantity is part of it (`1.2 KB)`).
                if tok.len() <= 6
                    && self
                        .tokens
                        .last()
                        .is_some_and(|&t| self.interner.is_masked(t))
                    && let Some((lo, hi)) = unit_core(tok)
                {
                    let id = if lo == 0 && hi == tok.len() {
                        WILDCARD
                    } else {
                        self.scratch.clear();
                        self.scratch.extend_from_slice(tok.get(..lo).unwrap_or(&[]));
                        self.scratch.extend_from_slice(WILDCARD_TEXT.as_bytes());
                        self.scratch.extend_from_slice(tok.get(hi..).unwrap_or(&[]));
                        self.interner.intern_bytes(&self.scratch, true, true)
                    };
                    self.push(id, gap);
                    continue;
                }
            }
            if flags & C_SPLIT == 0
                || (flags & C_SLASH != 0 && is_whole(tok))
                || (flags & C_DIGIT != 0 && is_hex_id_chunk(tok))
            {
                let id = self.mask_piece(tok, flags);
                self.push(id, gap);
                continue;
            }
            let mut cuts = std::mem::take(&mut self.pieces);
            pieces(tok, &mut cuts);
            if cuts.len() == 1 {
                // Delimiters only at the ends (`error:`, `(TID`): one token.
                self.pieces = cuts;
                let id = self.mask_piece(tok, flags);
                self.push(id, gap);
                continue;
            }
            let mut g = gap;
            let mut k = 0;
            while let Some(&(ps, pe)) = cuts.get(k) {
                if self.tokens.len() + 1 >= max {
                    break;
                }
                let piece = tok.get(ps..pe).unwrap_or(&[]);
                let next = cuts
                    .get(k + 1)
                    .and_then(|&(ns, ne)| tok.get(ns..ne))
                    .unwrap_or(&[]);
                let id = if is_port(next) && is_host(piece) {
                    match mask_core(piece, &mut self.scratch) {
                        MaskKind::Partial { .. } => {
                            self.interner.intern_bytes(&self.scratch, true, true)
                        }
                        _ => WILDCARD,
                    }
                } else {
                    let f = piece.iter().fold(0, |f, &c| f | super::token::class(c));
                    self.mask_piece(piece, f & (C_DIGIT | C_SLASH | C_NOT_DIGIT))
                };
                self.push(id, g);
                g = (start + pe, start + pe);
                k += 1;
            }
            self.pieces = cuts;
        }
    }

    fn push(&mut self, id: u32, gap: (usize, usize)) {
        self.tokens.push(id);
        self.gap_ranges.push(gap);
    }

    /// Masks and interns one piece whose byte classes are `flags`.
    fn mask_piece(&mut self, tok: &[u8], flags: u8) -> u32 {
        let delims = || {
            tok.iter()
                .take_while(|&&c| super::token::class(c) & C_SPLIT != 0)
                .count()
        };
        let kind = if flags & (C_DIGIT | C_SLASH) == 0 {
            MaskKind::Constant
        } else if flags & C_NOT_DIGIT == 0 {
            // Only digits: one numeric segment, what `mask_marked_token` makes `<*>`.
            MaskKind::Wildcard
        } else if let d = delims()
            && d > 0
            && d < tok.len()
            && tok.iter().skip(d).all(u8::is_ascii_digit)
        {
            // A value of digits after a delimiter (`:8080`, `=0`).
            self.scratch.clear();
            self.scratch.extend_from_slice(tok.get(..d).unwrap_or(&[]));
            self.scratch.extend_from_slice(WILDCARD_TEXT.as_bytes());
            MaskKind::Partial { bare: true }
        } else {
            mask_marked_token(tok, flags, &mut self.scratch)
        };
        match kind {
            MaskKind::Constant => self.interner.intern_bytes(tok, false, false),
            MaskKind::Wildcard => WILDCARD,
            MaskKind::Partial { bare } => self.interner.intern_bytes(&self.scratch, true, bare),
        }
    }

    /// The skeleton hash of a token sequence: constant tokens only, skipping a unit word that
    /// follows a parameter.
    fn skeleton(&self, tokens: &[u32]) -> u64 {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(tokens.len());
        let mut after_param = false;
        for &t in tokens {
            if self.interner.is_masked(t) {
                after_param = true;
                continue;
            }
            let text = self.interner.text(t);
            if after_param && is_unit_word(text) {
                after_param = false;
                continue;
            }
            after_param = false;
            parts.push(text.as_bytes());
        }
        aiops_core::stable_hash(&parts)
    }

    /// Finds (creating if needed) the leaf for a token sequence.
    fn leaf_for(&mut self, tokens: &[u32], create: bool) -> Option<usize> {
        let n = tokens.len();
        let mut node = match self.by_len.get(n).copied().flatten() {
            Some(i) => i,
            None => {
                if !create {
                    return None;
                }
                self.nodes.push(Node::default());
                let i = self.nodes.len() - 1;
                if self.by_len.len() <= n {
                    self.by_len.resize(n + 1, None);
                }
                if let Some(slot) = self.by_len.get_mut(n) {
                    *slot = Some(i);
                }
                i
            }
        };
        let route = (self.cfg.depth - 2).min(n);
        for &tok in tokens.iter().take(route) {
            let masked = self.interner.is_masked(tok);
            let cur = self.nodes.get(node)?;
            let next = if !masked {
                cur.children.get(&tok).copied()
            } else {
                None
            };
            let next = match next {
                Some(c) => Some(c),
                None => {
                    let can_add = !masked && cur.children.len() < self.cfg.max_children;
                    if !create {
                        // Without creating: constant tokens not present fall back to wildcard.
                        cur.wildcard
                    } else if can_add {
                        self.nodes.push(Node::default());
                        let c = self.nodes.len() - 1;
                        if let Some(cur) = self.nodes.get_mut(node) {
                            cur.children.insert(tok, c);
                        }
                        Some(c)
                    } else {
                        match cur.wildcard {
                            Some(w) => Some(w),
                            None => {
                                self.nodes.push(Node::default());
                                let c = self.nodes.len() - 1;
                                if let Some(cur) = self.nodes.get_mut(node) {
                                    cur.wildcard = Some(c);
                                }
                                Some(c)
                            }
                        }
                    }
                }
            };
            node = next?;
        }
        Some(node)
    }

    /// Similarity of a shape to the line: the share of the template's constant positions that
    /// the line matches (1 when the template is all parameters), and the number of parameter
    /// positions (the tie-breaker). This differs from Drain's `simSeq`, which divides by the
    /// full length: a template that has already generalised some positions is not penalised
    /// for them.
    ///
    /// A bare mask (only punctuation besides `<*>`, such as `:<*>`) counts as a parameter
    /// position, as do two values of one key (`=true`, `=3`) and two tokens that both hold a
    /// variable (`(<*>.example.net)`, `(<*>.other.com)`). A parameter
    /// position with a shared affix (`=<*>`) counts as a constant position that
    /// the line matches when the line's token has that prefix and suffix around a non-empty
    /// middle, so `()` does not join `(<*>)`.
    fn similarity(interner: &Interner, shape: &Shape, line: &[u32]) -> (f64, usize, usize) {
        let template = &shape.tokens;
        if template.len() != line.len() || line.is_empty() {
            return (0.0, 0, 0);
        }
        let mut values = 0usize;
        let mut same = 0usize;
        let mut params = 0usize;
        for (((&a, &x), &k), &b) in template
            .iter()
            .zip(&shape.affixes)
            .zip(&shape.kinds)
            .zip(line)
        {
            if a == WILDCARD {
                if x == 0 || x == b || fits(interner.text(x), interner.text(b)) {
                    params += 1;
                }
            } else if k & K_PARAM != 0 {
                // A bare mask (`:<*>`, `(<*>)`) tells nothing constant.
                params += 1;
            } else if a == b {
                same += 1;
            } else if k & K_VALUE != 0 && interner.is_value(b) {
                // Two values of the same key: a parameter position, unless it keeps the
                // values apart as words (see [`WORD_VARIABLE_VALUES`]).
                params += 1;
                values += usize::from(k & K_MASKED == 0 && !interner.is_masked(b));
            } else if k & K_MASKED != 0 && interner.is_masked(b) {
                // Two tokens that both hold a variable: a parameter position.
                params += 1;
            }
        }
        let constants = line.len() - params;
        let sim = if constants == 0 {
            1.0
        } else {
            same as f64 / constants as f64
        };
        (sim, params, values)
    }

    /// Adds one line and returns the template it joined.
    pub fn add(&mut self, line: &str) -> TemplateMatch {
        self.tokenize(line);
        if self.interner.len() > self.cfg.max_interned {
            self.compact_interner();
            self.tokenize(line);
        }
        self.clock += 1;
        let tokens = std::mem::take(&mut self.tokens);
        let result = self.add_tokens(&tokens, line);
        self.tokens = tokens;
        result
    }

    /// A new shape for the current line's tokens: its gaps interned from `line`.
    fn new_shape(&mut self, tokens: &[u32], line: &str, leaf: usize) -> Shape {
        let mut gaps = Vec::with_capacity(tokens.len());
        for i in 0..tokens.len() {
            let (a, b) = self.gap_ranges.get(i).copied().unwrap_or((0, 0));
            let text = line.get(a..b).unwrap_or("");
            gaps.push(match text {
                "" => GAP_NONE,
                " " => GAP_SPACE,
                t => self.interner.intern(t, false, false),
            });
        }
        // The first token has no gap before it in a template.
        if let Some(g) = gaps.first_mut() {
            *g = GAP_NONE;
        }
        Shape {
            tokens: tokens.to_vec(),
            gaps,
            affixes: vec![0; tokens.len()],
            kinds: tokens.iter().map(|&t| self.kind(t)).collect(),
            leaf,
        }
    }

    /// The [`Shape::kinds`] flags of a token.
    fn kind(&self, t: u32) -> u8 {
        let i = &self.interner;
        (if i.is_param_like(t) { K_PARAM } else { 0 })
            | (if i.is_value(t) { K_VALUE } else { 0 })
            | (if i.is_masked(t) { K_MASKED } else { 0 })
    }

    /// The stable id of a new cluster: a hash of the template text of its first line (masked
    /// tokens and whitespace, adjacent parameters as one, see [`canonical`]), re-hashed while
    /// it collides with a live cluster (or is 0). A line and a learned template text that
    /// masks to the same text (`connection from 10.0.0.1 at 07:07:00` and `connection from
    /// <*> at <*>`) get the same id.
    fn stable_id(&self, shape: &Shape) -> u64 {
        let mut text = String::new();
        for (&t, &g) in shape.tokens.iter().zip(&shape.gaps) {
            text.push_str(self.interner.text(g));
            text.push_str(self.interner.text(t));
        }
        let text = canonical(text);
        let mut id = aiops_core::stable_hash(&[text.as_bytes()]);
        while id == 0 || self.by_id.contains_key(&id) {
            id = aiops_core::stable_hash(&[&id.to_le_bytes(), b"+"]);
        }
        id
    }

    fn add_tokens(&mut self, tokens: &[u32], line: &str) -> TemplateMatch {
        // 1. Drain: most similar shape in the leaf.
        let leaf = self.leaf_for(tokens, true);
        let mut best: Option<(usize, u8, f64, usize, usize)> = None;
        if let Some(leaf) = leaf.and_then(|l| self.nodes.get(l)) {
            for &(slot, shape) in &leaf.clusters {
                let Some(Some(c)) = self.clusters.get(slot) else {
                    continue;
                };
                let Some(s) = c.shapes.get(shape as usize) else {
                    continue;
                };
                let (sim, params, values) = Self::similarity(&self.interner, s, tokens);
                let better = match best {
                    None => true,
                    Some((_, _, bs, bp, bv)) => {
                        sim > bs || (sim == bs && (values < bv || (values == bv && params > bp)))
                    }
                };
                if better {
                    best = Some((slot, shape, sim, params, values));
                }
            }
        }
        if let Some((slot, shape, sim, _, values)) = best
            && sim >= 1.0
            && (values == 0 || self.word_difference(slot, shape, tokens).is_none())
        {
            self.merge_into(slot, shape as usize, tokens);
            return self.touch(slot, false);
        }
        // 2. Same skeleton (optional parameters): a shape of this length whose constants all
        // match, else a new shape of the cluster.
        let skeleton = self.skeleton(tokens);
        if let Some(&slot) = self.by_skeleton.get(&skeleton)
            && let Some(leaf) = leaf
        {
            let exact = self
                .clusters
                .get(slot)
                .and_then(|c| c.as_ref())
                .and_then(|c| {
                    c.shapes
                        .iter()
                        .position(|s| Self::similarity(&self.interner, s, tokens).0 >= 1.0)
                });
            let room = self
                .clusters
                .get(slot)
                .and_then(|c| c.as_ref())
                .is_some_and(|c| c.shapes.len() < MAX_SHAPES);
            if let Some(shape) = exact {
                self.merge_into(slot, shape, tokens);
                return self.touch(slot, false);
            }
            if room {
                let shape = self.new_shape(tokens, line, leaf);
                if let Some(Some(c)) = self.clusters.get_mut(slot) {
                    let idx = c.shapes.len();
                    c.shapes.push(shape);
                    c.text = None;
                    if let Some(n) = self.nodes.get_mut(leaf) {
                        n.clusters.push((slot, idx as u8));
                    }
                    return self.touch(slot, false);
                }
            }
        }
        // 3. Drain: the most similar shape, if similar enough, unless the line differs from it
        // in a word (Brain's threshold, see [`WORD_VARIABLE_VALUES`]).
        let mut split_from = None;
        if let Some((slot, shape, sim, _, _)) = best
            && sim >= self.cfg.similarity_threshold
        {
            match self.word_difference(slot, shape, tokens) {
                None => {
                    self.merge_into(slot, shape as usize, tokens);
                    return self.touch(slot, false);
                }
                Some(at) => {
                    if self.note_word_split(at, tokens) {
                        return self.touch(at.0, false);
                    }
                    split_from = Some(at);
                }
            }
        }
        // 4. New cluster.
        if self.live >= self.cfg.max_templates {
            self.evict_lru();
        }
        let shape = self.new_shape(tokens, line, leaf.unwrap_or(0));
        let id = self.stable_id(&shape);
        let cluster = Cluster {
            id,
            shapes: vec![shape],
            skeleton,
            size: 0,
            last_used: 0,
            text: None,
            parent: None,
            splits: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(c) = self.clusters.get_mut(s) {
                    *c = Some(cluster);
                }
                s
            }
            None => {
                self.clusters.push(Some(cluster));
                self.clusters.len() - 1
            }
        };
        self.live += 1;
        self.by_id.insert(id, slot);
        self.by_skeleton.entry(skeleton).or_insert(slot);
        if let Some(n) = leaf.and_then(|l| self.nodes.get_mut(l)) {
            n.clusters.push((slot, 0));
        }
        if let Some((parent_slot, shape, pos)) = split_from {
            self.record_split(parent_slot, shape, pos, slot);
        }
        self.touch(slot, true)
    }

    /// The first position where the line holds a word other than the shape's constant word
    /// there (both tokens constant words, or both values of a key such as `=root` and `=guest`,
    /// and not the same but for their numbers): the cluster, shape and position to
    /// count it against (the cluster it was split from, when the shape's cluster was itself
    /// started by a different word at that position). `None` when there is none.
    fn word_difference(&self, slot: usize, shape: u8, line: &[u32]) -> Option<(usize, u8, u16)> {
        let c = self.clusters.get(slot)?.as_ref()?;
        let s = c.shapes.get(shape as usize)?;
        let pos = s
            .tokens
            .iter()
            .zip(&s.kinds)
            .zip(line)
            .position(|((&a, &k), &b)| {
                a != b
                    && a != WILDCARD
                    && k & (K_PARAM | K_MASKED) == 0
                    && !self.interner.is_masked(b)
                    && (k & K_VALUE != 0) == self.interner.is_value(b)
                    && !same_but_numbers(self.interner.text(a), self.interner.text(b))
            })?;
        let pos = u16::try_from(pos).ok()?;
        if let Some((pid, pshape, ppos)) = c.parent
            && ppos == pos
            && let Some(&pslot) = self.by_id.get(&pid)
        {
            return Some((pslot, pshape, ppos));
        }
        Some((slot, shape, pos))
    }

    /// Counts a line kept apart from `at` by a word. When the position has now taken
    /// [`WORD_VARIABLE_VALUES`] distinct words, it becomes a parameter: the line joins the
    /// cluster, the clusters kept apart for that position join it too (their ids become
    /// aliases of its id), and `true` is returned.
    fn note_word_split(&mut self, at: (usize, u8, u16), tokens: &[u32]) -> bool {
        let (slot, shape, pos) = at;
        let Some(Some(c)) = self.clusters.get(slot) else {
            return false;
        };
        let siblings: Vec<u64> = c
            .splits
            .iter()
            .find(|(s, p, _)| *s == shape && *p == pos)
            .map(|(_, _, v)| v.clone())
            .unwrap_or_default();
        // This cluster's word, the words kept apart, and the line's.
        if siblings.len() + 2 < WORD_VARIABLE_VALUES {
            return false;
        }
        let target = c.id;
        self.merge_into(slot, shape as usize, tokens);
        let mut joined = 0;
        for id in siblings {
            let Some(&sib) = self.by_id.get(&id) else {
                continue;
            };
            if sib == slot {
                continue;
            }
            let size = self
                .clusters
                .get(sib)
                .and_then(|c| c.as_ref())
                .map_or(0, |c| c.size);
            self.remove_cluster(sib);
            self.evicted -= 1;
            joined += size;
            self.aliases.retain(|_, v| *v != id);
            self.aliases.insert(id, target);
        }
        if self.aliases.len() > self.cfg.max_templates.saturating_mul(4) {
            self.aliases.clear();
        }
        if let Some(Some(c)) = self.clusters.get_mut(slot) {
            c.size += joined;
            c.splits.retain(|(s, p, _)| !(*s == shape && *p == pos));
        }
        true
    }

    /// Records that the new cluster at `child` was kept apart from `parent` by a word at
    /// (`shape`, `pos`).
    fn record_split(&mut self, parent: usize, shape: u8, pos: u16, child: usize) {
        let Some(pid) = self
            .clusters
            .get(parent)
            .and_then(|c| c.as_ref())
            .map(|c| c.id)
        else {
            return;
        };
        let Some(cid) = self
            .clusters
            .get(child)
            .and_then(|c| c.as_ref())
            .map(|c| c.id)
        else {
            return;
        };
        if let Some(Some(c)) = self.clusters.get_mut(parent) {
            match c
                .splits
                .iter_mut()
                .find(|(s, p, _)| *s == shape && *p == pos)
            {
                Some((_, _, v)) => {
                    if v.len() + 2 < WORD_VARIABLE_VALUES {
                        v.push(cid);
                    }
                }
                None => c.splits.push((shape, pos, vec![cid])),
            }
        }
        if let Some(Some(c)) = self.clusters.get_mut(child) {
            c.parent = Some((pid, shape, pos));
        }
    }

    /// Merges a line into a shape: every position where they differ becomes a parameter,
    /// keeping the constant prefix and suffix its values share (see
    /// [`super::token::common_affix`]).
    fn merge_into(&mut self, slot: usize, shape: usize, tokens: &[u32]) {
        let Some(Some(c)) = self.clusters.get_mut(slot) else {
            return;
        };
        let Some(s) = c.shapes.get_mut(shape) else {
            return;
        };
        let interner = &mut self.interner;
        let mut changed = false;
        for (((t, a), k), &l) in s
            .tokens
            .iter_mut()
            .zip(s.affixes.iter_mut())
            .zip(s.kinds.iter_mut())
            .zip(tokens)
        {
            if *t == l {
                continue;
            }
            if *t != WILDCARD {
                let affix = common_affix(interner.text(*t), interner.text(l));
                *a = affix.map_or(0, |x| interner.intern(&x, true, false));
                *t = WILDCARD;
                *k = K_PARAM | K_MASKED;
                changed = true;
            } else if *a != 0 && l != *a {
                let (at, lt) = (interner.text(*a), interner.text(l));
                if !fits(at, lt) {
                    let affix = common_affix(at, lt);
                    *a = affix.map_or(0, |x| interner.intern(&x, true, false));
                    changed = true;
                }
            }
        }
        if changed {
            c.text = None;
        }
    }

    fn touch(&mut self, slot: usize, created: bool) -> TemplateMatch {
        let clock = self.clock;
        match self.clusters.get_mut(slot) {
            Some(Some(c)) => {
                c.size += 1;
                c.last_used = clock;
                TemplateMatch {
                    template_id: c.id,
                    created,
                }
            }
            _ => TemplateMatch {
                template_id: 0,
                created,
            },
        }
    }

    /// Evicts the least recently matched tenth of the clusters (at least one), so that
    /// eviction cost is amortised.
    fn evict_lru(&mut self) {
        let mut order: Vec<(u64, u64, usize)> = self
            .clusters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.last_used, c.id, i)))
            .collect();
        order.sort_unstable();
        let n = (self.live / 10).max(1);
        for &(_, _, slot) in order.iter().take(n) {
            self.remove_cluster(slot);
        }
    }

    fn remove_cluster(&mut self, slot: usize) {
        let Some(c) = self.clusters.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for s in &c.shapes {
            if let Some(n) = self.nodes.get_mut(s.leaf) {
                n.clusters.retain(|&(sl, _)| sl != slot);
            }
        }
        self.by_id.remove(&c.id);
        if self.by_skeleton.get(&c.skeleton) == Some(&slot) {
            self.by_skeleton.remove(&c.skeleton);
        }
        self.free.push(slot);
        self.live -= 1;
        self.evicted += 1;
    }

    /// Rebuilds the interner (and the tree, whose keys are token ids) from the live clusters.
    fn compact_interner(&mut self) {
        let old = std::mem::replace(&mut self.interner, Interner::new());
        let mut remap: AHashMap<u32, u32> = AHashMap::new();
        remap.insert(WILDCARD, WILDCARD);
        // Rebuild the tree from scratch.
        self.nodes = vec![Node::default()];
        self.by_len.clear();
        let slots: Vec<usize> = (0..self.clusters.len()).collect();
        for slot in slots {
            let Some(Some(c)) = self.clusters.get_mut(slot) else {
                continue;
            };
            let mut shapes = std::mem::take(&mut c.shapes);
            for s in &mut shapes {
                let all = s
                    .tokens
                    .iter_mut()
                    .chain(s.gaps.iter_mut())
                    .chain(s.affixes.iter_mut());
                for t in all {
                    let new = match remap.get(t) {
                        Some(&n) => n,
                        None => {
                            let n = self.interner.intern(
                                old.text(*t),
                                old.is_masked(*t),
                                old.is_param_like(*t),
                            );
                            remap.insert(*t, n);
                            n
                        }
                    };
                    *t = new;
                }
            }
            for (i, s) in shapes.iter_mut().enumerate() {
                let leaf = self.leaf_for(&s.tokens, true).unwrap_or(0);
                s.leaf = leaf;
                if let Some(n) = self.nodes.get_mut(leaf) {
                    n.clusters.push((slot, i as u8));
                }
            }
            if let Some(Some(c)) = self.clusters.get_mut(slot) {
                c.shapes = shapes;
            }
        }
    }

    /// The template text of a cluster (`None` for an unknown or evicted id). For a cluster with
    /// several shapes, the shapes are aligned (longest common subsequence) and every stretch
    /// where they differ becomes one `<*>`.
    pub fn template_text(&mut self, template_id: u64) -> Option<String> {
        let slot = match self.by_id.get(&template_id) {
            Some(&s) => s,
            None => *self.by_id.get(self.aliases.get(&template_id)?)?,
        };
        let c = self.clusters.get(slot)?.as_ref()?;
        if let Some(t) = &c.text {
            return Some(t.clone());
        }
        let text = self.render(c);
        if let Some(Some(c)) = self.clusters.get_mut(slot) {
            c.text = Some(text.clone());
        }
        Some(text)
    }

    /// The template text of a cluster: each shape's tokens (a parameter position with its
    /// shared affix) with the whitespace of the line that created the shape, the shapes
    /// aligned, then adjacent parameters written as one (see [`canonical`]).
    fn render(&self, c: &Cluster) -> String {
        let display = |s: &Shape| -> Vec<Item> {
            s.tokens
                .iter()
                .zip(&s.gaps)
                .zip(&s.affixes)
                .map(|((&t, &gap), &a)| Item {
                    id: if t == WILDCARD && a != 0 { a } else { t },
                    gap,
                    optional: false,
                })
                .collect()
        };
        let mut merged: Vec<Item> = c.shapes.first().map(display).unwrap_or_default();
        for s in c.shapes.iter().skip(1) {
            merged = align(&merged, &display(s));
        }
        let mut out = String::new();
        let mut prev_optional = true;
        for item in &merged {
            if !(prev_optional || item.optional) {
                out.push_str(self.interner.text(item.gap));
            }
            out.push_str(self.interner.text(item.id));
            prev_optional = item.optional;
        }
        canonical(out)
    }

    /// Every live template, ordered by id.
    pub fn templates(&mut self) -> Vec<TemplateInfo> {
        let mut ids: Vec<u64> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| {
                let size = self
                    .by_id
                    .get(&id)
                    .and_then(|&s| self.clusters.get(s))
                    .and_then(|c| c.as_ref())
                    .map_or(0, |c| c.size);
                self.template_text(id).map(|text| TemplateInfo {
                    template_id: id,
                    text,
                    size,
                })
            })
            .collect()
    }
}

/// Whether two tokens are the same but for their numbers (`bglio716` and `bglio91`): each
/// run of digits compares equal to any other. Such tokens differ in a variable number, not in
/// a word (Brain's `exclude_digits`: a token with digits is a variable).
fn same_but_numbers(a: &str, b: &str) -> bool {
    fn shape(t: &str) -> impl Iterator<Item = u8> + '_ {
        let mut prev_digit = false;
        t.bytes().filter_map(move |c| {
            let d = c.is_ascii_digit();
            let out = match (d, prev_digit) {
                (true, true) => None,
                (true, false) => Some(b'0'),
                _ => Some(c),
            };
            prev_digit = d;
            out
        })
    }
    shape(a).eq(shape(b))
}

/// Whether a line token fits a parameter position's affix (`=<*>`): it has the affix's
/// prefix and suffix around a non-empty middle.
fn fits(affix: &str, token: &str) -> bool {
    match affix.split_once(WILDCARD_TEXT) {
        Some((p, q)) => {
            token.len() > p.len() + q.len() && token.starts_with(p) && token.ends_with(q)
        }
        None => false,
    }
}

/// One token of a rendered template: its text id, the id of the whitespace before it, and
/// whether it is an optional stretch (written without the whitespace around it).
#[derive(Debug, Clone, Copy)]
struct Item {
    id: u32,
    gap: u32,
    optional: bool,
}

/// Writes adjacent parameters as one, as the Loghub-2.0 evaluation normalises templates
/// (`correct_template_general` of its `evaluator_main.py`, Jiang et al., ISSTA 2024): first
/// `<*>.<*>`, then `<*><*>`, `<*>:<*>` and `<*> <*>`, each until none is left.
pub(super) fn canonical(mut t: String) -> String {
    while t.contains("<*>.<*>") {
        t = t.replace("<*>.<*>", WILDCARD_TEXT);
    }
    loop {
        let before = t.len();
        for pat in ["<*><*>", "<*>:<*>", "<*> <*>"] {
            if t.contains(pat) {
                t = t.replace(pat, WILDCARD_TEXT);
            }
        }
        if t.len() == before {
            return t;
        }
    }
}

/// Aligns two token sequences by longest common subsequence (of token ids); tokens outside
/// the common subsequence become one wildcard per stretch, marked optional when one of the
/// two sequences has nothing there.
fn align(a: &[Item], b: &[Item]) -> Vec<Item> {
    let (n, m) = (a.len(), b.len());
    // Bounded by max_tokens (≤ a few hundred), so the table stays small.
    let mut dp = vec![0u16; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    let same = |i: usize, j: usize| match (a.get(i), b.get(j)) {
        (Some(x), Some(y)) => x.id == y.id,
        _ => false,
    };
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if same(i, j) {
                dp.get(idx(i + 1, j + 1)).copied().unwrap_or(0) + 1
            } else {
                dp.get(idx(i + 1, j))
                    .copied()
                    .unwrap_or(0)
                    .max(dp.get(idx(i, j + 1)).copied().unwrap_or(0))
            };
            if let Some(d) = dp.get_mut(idx(i, j)) {
                *d = v;
            }
        }
    }
    let mut out: Vec<Item> = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    // The current stretch: concrete tokens skipped in a and in b (an optional wildcard of
    // an earlier alignment is nothing concrete), whether any token was skipped, and the gap
    // before it.
    #[derive(Clone, Copy)]
    struct Stretch {
        a: usize,
        b: usize,
        seen: bool,
        gap: u32,
    }
    const EMPTY: Stretch = Stretch {
        a: 0,
        b: 0,
        seen: false,
        gap: GAP_SPACE,
    };
    let mut skipped = EMPTY;
    let flush = |out: &mut Vec<Item>, st: &mut Stretch, next_wild: bool| {
        if st.seen {
            // Optional when one side has nothing concrete there, unless a parameter is next
            // to it (then it is part of that parameter).
            let last_wild = out.last().is_some_and(|x| x.id == WILDCARD);
            let optional = (st.a == 0 || st.b == 0) && !next_wild && !last_wild;
            if !last_wild {
                out.push(Item {
                    id: WILDCARD,
                    gap: st.gap,
                    optional,
                });
            }
        }
        *st = EMPTY;
    };
    let note = |st: &mut Stretch, item: Option<&Item>, from_a: bool| {
        if !st.seen {
            st.gap = item.map_or(GAP_SPACE, |x| x.gap);
            st.seen = true;
        }
        let concrete = usize::from(item.is_none_or(|x| !x.optional));
        if from_a {
            st.a += concrete;
        } else {
            st.b += concrete;
        }
    };
    while i < n && j < m {
        if same(i, j) {
            let next_wild = a.get(i).is_some_and(|x| x.id == WILDCARD);
            flush(&mut out, &mut skipped, next_wild);
            if let Some(&t) = a.get(i) {
                out.push(t);
            }
            i += 1;
            j += 1;
        } else if dp.get(idx(i + 1, j)).copied().unwrap_or(0)
            >= dp.get(idx(i, j + 1)).copied().unwrap_or(0)
        {
            note(&mut skipped, a.get(i), true);
            i += 1;
        } else {
            note(&mut skipped, b.get(j), false);
            j += 1;
        }
    }
    while i < n {
        note(&mut skipped, a.get(i), true);
        i += 1;
    }
    while j < m {
        note(&mut skipped, b.get(j), false);
        j += 1;
    }
    flush(&mut out, &mut skipped, false);
    out
}

#[cfg(test)]
impl TemplateMiner {
    /// The texts of the current line's tokens (after [`TemplateMiner::tokenize`]).
    pub(super) fn token_texts(&self) -> Vec<String> {
        self.tokens
            .iter()
            .map(|&t| self.interner.text(t).to_string())
            .collect()
    }
}
