//! Loghub log-parsing benchmark: runs the template miner over each `<D>_2k.log_structured.csv`
//! and scores grouping accuracy (GA) and parsing accuracy (PA).
//!
//! Sources: J. Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019
//! (GA, the Loghub 2k samples); Z. A. Khan et al., "Guidelines for Assessing the Accuracy of
//! Log Message Template Identification Techniques", ICSE 2022 (PA); Z. Jiang et al., "A
//! Large-scale Evaluation for Log Parsing Techniques: How Far are We?", ISSTA 2024 (Loghub-2.0,
//! whose `evaluator_main.py` fixes the normalisation below).
//!
//! Both figures are computed as the Loghub-2.0 evaluator does: every template, true and
//! parsed, is first aligned with its line (`align_with_null_values`: a `<*>` that matches
//! nothing in the line is dropped, see [`align_with_null_values`]), and the true templates are
//! then normalised (`correct_template_general`: adjacent parameters written as one, see
//! [`crate::template::canonical_template`]).
//!
//! - **GA**: a line is correct when the set of lines sharing its parsed template text equals
//!   the set of lines sharing its true template.
//! - **PA**: a line is correct when its parsed template text equals its true template,
//!   character for character (whitespace included).

use crate::template::{TemplateConfig, TemplateMiner, WILDCARD_TEXT, canonical_template};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors from the Loghub evaluation.
#[derive(Debug, Error)]
pub enum LoghubError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be parsed or written.
    #[error("{path}: {source}")]
    Csv {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
    /// A structured file lacks a required column.
    #[error("{path}: missing column {column}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column name.
        column: &'static str,
    },
    /// No dataset folder with a `<D>_2k.log_structured.csv` was found.
    #[error("no <D>/<D>_2k.log_structured.csv found under {0}")]
    Empty(PathBuf),
}

/// One labelled line of a Loghub structured file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledLine {
    /// `LineId`.
    pub line_id: String,
    /// `Content`: the message part of the log line.
    pub content: String,
    /// `EventTemplate`: the true template.
    pub template: String,
}

/// Figures for one dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetReport {
    /// Dataset name (folder name), e.g. `HDFS`.
    pub dataset: String,
    /// Lines parsed.
    pub lines: usize,
    /// Grouping accuracy in `[0, 1]`.
    pub grouping_accuracy: f64,
    /// Parsing accuracy in `[0, 1]`.
    pub parsing_accuracy: f64,
    /// Templates found.
    pub templates: usize,
    /// Templates in the ground truth.
    pub true_templates: usize,
    /// Lines per second through the miner (masking, tree, template text), excluding CSV I/O.
    pub lines_per_second: f64,
}

/// Figures for every dataset and their averages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoghubReport {
    /// Per dataset, sorted by name.
    pub datasets: Vec<DatasetReport>,
    /// Mean GA over datasets.
    pub average_grouping_accuracy: f64,
    /// Mean PA over datasets.
    pub average_parsing_accuracy: f64,
    /// Lowest GA of any dataset.
    pub min_grouping_accuracy: f64,
    /// Total lines over total miner time.
    pub lines_per_second: f64,
}

/// Reads `LineId`, `Content` and `EventTemplate` from a Loghub structured CSV file.
///
/// # Errors
/// [`LoghubError`] when the file cannot be read or a column is missing.
pub fn read_structured(path: &Path) -> Result<Vec<LabelledLine>, LoghubError> {
    let csv_err = |source| LoghubError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(csv_err)?;
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let col = |name: &'static str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or(LoghubError::MissingColumn {
                path: path.to_path_buf(),
                column: name,
            })
    };
    let (id_col, content_col, template_col) =
        (col("LineId")?, col("Content")?, col("EventTemplate")?);
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        out.push(LabelledLine {
            line_id: rec.get(id_col).unwrap_or("").to_string(),
            content: rec.get(content_col).unwrap_or("").to_string(),
            template: rec.get(template_col).unwrap_or("").to_string(),
        });
    }
    Ok(out)
}

/// Parses `lines` in order with a fresh miner and returns each line's final template text (the
/// text of its cluster after all lines, as Drain reports it) and the miner time in seconds.
pub fn parse_lines(lines: &[&str], config: &TemplateConfig) -> (Vec<String>, f64) {
    let start = std::time::Instant::now();
    let mut miner = TemplateMiner::new(config);
    let ids: Vec<u64> = lines.iter().map(|l| miner.add(l).template_id).collect();
    let mut texts: HashMap<u64, String> = HashMap::new();
    let out = ids
        .iter()
        .map(|id| {
            texts
                .entry(*id)
                .or_insert_with(|| miner.template_text(*id).unwrap_or_default())
                .clone()
        })
        .collect();
    (out, start.elapsed().as_secs_f64())
}

/// Grouping accuracy of `parsed` against `truth` (same length, one entry per line).
pub fn grouping_accuracy(parsed: &[String], truth: &[String]) -> f64 {
    let n = parsed.len().min(truth.len());
    if n == 0 {
        return 0.0;
    }
    let mut truth_size: HashMap<&str, usize> = HashMap::new();
    for t in truth.iter().take(n) {
        *truth_size.entry(t.as_str()).or_default() += 1;
    }
    // Per parsed group: its size and the truth groups it touches.
    let mut groups: HashMap<&str, (usize, Option<&str>, bool)> = HashMap::new();
    for (p, t) in parsed.iter().zip(truth).take(n) {
        let e = groups
            .entry(p.as_str())
            .or_insert((0, Some(t.as_str()), true));
        e.0 += 1;
        if e.1 != Some(t.as_str()) {
            e.2 = false;
        }
    }
    let correct: usize = groups
        .values()
        .filter(|(size, t, single)| {
            *single && t.is_some_and(|t| truth_size.get(t).copied() == Some(*size))
        })
        .map(|(size, _, _)| *size)
        .sum();
    correct as f64 / n as f64
}

/// Parsing accuracy: share of lines whose parsed template equals the true one (both already
/// normalised as the module documentation says).
pub fn parsing_accuracy(parsed: &[String], truth: &[String]) -> f64 {
    let n = parsed.len().min(truth.len());
    if n == 0 {
        return 0.0;
    }
    let ok = parsed
        .iter()
        .zip(truth)
        .take(n)
        .filter(|(p, t)| p == t)
        .count();
    ok as f64 / n as f64
}

/// Most match attempts [`align_with_null_values`] makes before it gives up (and returns the
/// template unchanged), so a pathological template cannot take unbounded time.
const MAX_ALIGN_STEPS: usize = 100_000;

/// Loghub-2.0's `align_with_null_values`: matches `template` against `line` as the regular
/// expression `^p0(.*?)p1(.*?)…pn$` (the literal parts around each `<*>`, lazily, the first
/// match found by backtracking as Python's `re.search` does) and drops each `<*>` whose group
/// matched the empty string. A template that does not match is returned unchanged.
pub fn align_with_null_values(line: &str, template: &str) -> String {
    let parts: Vec<&str> = template.split(WILDCARD_TEXT).collect();
    if parts.len() < 2 {
        return template.to_string();
    }
    let Some(first) = parts.first() else {
        return template.to_string();
    };
    if !line.starts_with(first) {
        return template.to_string();
    }
    let mut ends = Vec::with_capacity(parts.len());
    let mut steps = 0usize;
    if !match_parts(line, &parts, 1, first.len(), &mut ends, &mut steps) {
        return template.to_string();
    }
    // `ends[k]` is where part k+1 starts; group k spans from the end of part k to it.
    let mut out = String::with_capacity(template.len());
    let mut pos = first.len();
    out.push_str(first);
    for (k, part) in parts.iter().enumerate().skip(1) {
        let start = ends.get(k - 1).copied().unwrap_or(pos);
        if start > pos {
            out.push_str(WILDCARD_TEXT);
        }
        out.push_str(part);
        pos = start + part.len();
    }
    out
}

/// Backtracking matcher for [`align_with_null_values`]: part `k` must start at or after
/// `pos` (the lazy group before it takes the shortest span that lets the rest match); the
/// last part must end the line. Pushes each part's start to `starts`.
fn match_parts(
    line: &str,
    parts: &[&str],
    k: usize,
    pos: usize,
    starts: &mut Vec<usize>,
    steps: &mut usize,
) -> bool {
    let Some(part) = parts.get(k) else {
        return pos == line.len();
    };
    let last = k + 1 == parts.len();
    let mut from = pos;
    while from <= line.len() {
        *steps += 1;
        if *steps > MAX_ALIGN_STEPS {
            return false;
        }
        let Some(rest) = line.get(from..) else {
            // Not a char boundary: step on.
            from += 1;
            continue;
        };
        let at = if last {
            // The last part must end the line.
            (rest.len() >= part.len() && rest.ends_with(part))
                .then(|| line.len() - part.len())
                .filter(|&a| a >= from)
        } else {
            rest.find(part).map(|i| from + i)
        };
        let Some(at) = at else {
            return false;
        };
        starts.push(at);
        if match_parts(line, parts, k + 1, at + part.len(), starts, steps) {
            return true;
        }
        starts.pop();
        if last {
            return false;
        }
        from = at + 1;
    }
    false
}

/// The dataset folders under `dir` that hold `<D>/<D>_2k.log_structured.csv`, sorted.
///
/// # Errors
/// [`LoghubError::Io`] when `dir` cannot be listed, [`LoghubError::Empty`] when none is found.
pub fn datasets(dir: &Path) -> Result<Vec<(String, PathBuf)>, LoghubError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| LoghubError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let f = p.join(format!("{name}_2k.log_structured.csv"));
        if f.is_file() {
            out.push((name, f));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(LoghubError::Empty(dir.to_path_buf()));
    }
    Ok(out)
}

/// Evaluates one dataset; with `out`, writes `out/<name>_2k.log_structured.csv` with the
/// columns `LineId,Content,EventTemplate` (the parsed templates).
///
/// # Errors
/// [`LoghubError`] from reading or writing.
pub fn evaluate_dataset(
    name: &str,
    path: &Path,
    config: &TemplateConfig,
    out: Option<&Path>,
) -> Result<DatasetReport, LoghubError> {
    let lines = read_structured(path)?;
    let contents: Vec<&str> = lines.iter().map(|l| l.content.as_str()).collect();
    let truth: Vec<String> = lines
        .iter()
        .map(|l| canonical_template(&align_with_null_values(&l.content, &l.template)))
        .collect();
    let (parsed, secs) = parse_lines(&contents, config);
    let aligned: Vec<String> = lines
        .iter()
        .zip(&parsed)
        .map(|(l, p)| align_with_null_values(&l.content, p))
        .collect();
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|source| LoghubError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let file = dir.join(format!("{name}_2k.log_structured.csv"));
        let csv_err = |source| LoghubError::Csv {
            path: file.clone(),
            source,
        };
        let mut w = csv::Writer::from_path(&file).map_err(csv_err)?;
        w.write_record(["LineId", "Content", "EventTemplate"])
            .map_err(csv_err)?;
        for (l, p) in lines.iter().zip(&parsed) {
            w.write_record([l.line_id.as_str(), l.content.as_str(), p.as_str()])
                .map_err(csv_err)?;
        }
        w.flush().map_err(|source| LoghubError::Io {
            path: file.clone(),
            source,
        })?;
    }
    let distinct = |v: &[String]| {
        let mut s: Vec<&str> = v.iter().map(String::as_str).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };
    Ok(DatasetReport {
        dataset: name.to_string(),
        lines: lines.len(),
        grouping_accuracy: grouping_accuracy(&aligned, &truth),
        parsing_accuracy: parsing_accuracy(&aligned, &truth),
        templates: distinct(&parsed),
        true_templates: distinct(&truth),
        lines_per_second: if secs > 0.0 {
            lines.len() as f64 / secs
        } else {
            0.0
        },
    })
}

/// Evaluates every dataset under `dir` (see [`datasets`]).
///
/// # Errors
/// [`LoghubError`] from listing, reading or writing.
pub fn run(
    dir: &Path,
    config: &TemplateConfig,
    out: Option<&Path>,
) -> Result<LoghubReport, LoghubError> {
    let mut reports = Vec::new();
    for (name, path) in datasets(dir)? {
        reports.push(evaluate_dataset(&name, &path, config, out)?);
    }
    let n = reports.len().max(1) as f64;
    let total_lines: usize = reports.iter().map(|r| r.lines).sum();
    let total_secs: f64 = reports
        .iter()
        .filter(|r| r.lines_per_second > 0.0)
        .map(|r| r.lines as f64 / r.lines_per_second)
        .sum();
    Ok(LoghubReport {
        average_grouping_accuracy: reports.iter().map(|r| r.grouping_accuracy).sum::<f64>() / n,
        average_parsing_accuracy: reports.iter().map(|r| r.parsing_accuracy).sum::<f64>() / n,
        min_grouping_accuracy: reports
            .iter()
            .map(|r| r.grouping_accuracy)
            .fold(f64::INFINITY, f64::min)
            .min(1.0),
        lines_per_second: if total_secs > 0.0 {
            total_lines as f64 / total_secs
        } else {
            0.0
        },
        datasets: reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn grouping_accuracy_counts_whole_groups() {
        // Truth: A A B B C. Parsed: x x y z z -> group x == A (2 correct), y ⊂ B (wrong),
        // z mixes B and C (wrong).
        let truth = s(&["A", "A", "B", "B", "C"]);
        let parsed = s(&["x", "x", "y", "z", "z"]);
        assert_eq!(grouping_accuracy(&parsed, &truth), 0.4);
        assert_eq!(grouping_accuracy(&truth, &truth), 1.0);
        assert_eq!(grouping_accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn parsing_accuracy_compares_text_exactly() {
        let truth = s(&["a <*>", "b  <*>", "c"]);
        let parsed = s(&["a <*>", "b <*>", "d"]);
        assert!((parsing_accuracy(&parsed, &truth) - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn parameters_that_match_nothing_are_dropped_as_loghub_does() {
        let cases = [
            ("403 bytes sent", "<*> bytes<*>sent", "<*> bytes<*>sent"),
            ("ruser= rhost=a", "ruser=<*> rhost=<*>", "ruser= rhost=<*>"),
            ("x () y", "x (<*>) y", "x () y"),
            ("a-b-c", "<*>-<*>", "<*>-<*>"),
            ("no match", "other <*>", "other <*>"),
            ("plain", "plain", "plain"),
            ("k=v k=", "k=<*> k=<*>", "k=<*> k="),
        ];
        for (line, template, want) in cases {
            assert_eq!(align_with_null_values(line, template), want, "{line}");
        }
        assert_eq!(
            canonical_template("at <*> <*>:<*>:<*> x <*>.<*>"),
            "at <*> x <*>"
        );
    }
}
