//! `aiops incidents list|show|resolve` and `aiops suppress add|list|remove`: parsing and
//! printing only; the store (SQLite in embedded mode, DynamoDB in aws mode), the text view
//! and the feedback rule are `aiops_act`'s.

use crate::config_args::{ConfigArgs, load_config};
use aiops_act::{Incident, IncidentStore, Suppression, SuppressionKind};
use aiops_core::time::{format_rfc3339_micros, now_micros};
use aiops_pipeline::aws_mode;
use aiops_pipeline::config::PipelineConfig;
use anyhow::{Context, Result, bail};
use clap::Subcommand;

/// `aiops incidents ...`.
#[derive(Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, newest first (with priority and finding count).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one incident: state, priority, resource, related changes, findings, timeline,
    /// action and outcome.
    Show {
        /// Incident id (`inc-...`).
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
        /// One JSON object with everything (the machine form).
        #[arg(long)]
        json: bool,
    },
    /// Close an incident with feedback: `--not-an-incident` records that its series are
    /// normal, so the same pattern (a score not above this one) opens no incident again.
    Resolve {
        /// Incident id (`inc-...`).
        id: String,
        /// The verdict (required: the only one so far).
        #[arg(long, required = true)]
        not_an_incident: bool,
        /// Why (stored with the feedback, at most 1 KiB).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `aiops suppress ...`.
#[derive(Subcommand)]
pub enum SuppressCommand {
    /// Suppress a series key (`log_level:/ecs/api:ERROR`), a template id or a resource key
    /// (`<account>/<region>/<type>/<id>`): its findings are recorded but open no incident.
    Add {
        /// The series key, template id or resource key.
        target: String,
        /// For how long from now (wall clock): `90` or `90s`, `30m`, `2h`, `1d`; without it,
        /// until removed.
        #[arg(long = "for", value_name = "DURATION")]
        for_: Option<String>,
        /// Why (at most 1 KiB).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List suppressions (expired ones marked).
    List {
        #[command(flatten)]
        config: ConfigArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a suppression by its id or its target.
    Remove {
        /// The suppression id (`sup-...`) or the target it names.
        id_or_value: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// The incident store a configuration names: SQLite under the data directory (embedded; with
/// `must_exist`, it must exist), or the DynamoDB tables of the `[aws]` section (aws mode).
pub fn open_store(cfg: &PipelineConfig, must_exist: bool) -> Result<aiops_act::setup::DynStore> {
    let act = if cfg.mode == "aws" {
        aws_mode::act_config(cfg)
    } else {
        cfg.act.clone()
    };
    Ok(aiops_act::open_store(&act, &cfg.data_dir, must_exist)?)
}

/// Runs an `incidents` command.
pub fn cmd_incidents(command: IncidentsCommand) -> Result<i32> {
    match command {
        IncidentsCommand::List {
            config,
            limit,
            json,
        } => {
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, true)?;
            for i in store.list(limit)? {
                if json {
                    out!("{}", incident_json(&i));
                } else {
                    out!("{}", list_line(&i));
                }
            }
            Ok(0)
        }
        IncidentsCommand::Show { id, config, json } => {
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, true)?;
            let Some(i) = store.get(&id)? else {
                bail!("no incident {id:?}");
            };
            if json {
                out!("{}", incident_json(&i));
            } else {
                out!("{}", aiops_act::render_incident(&i).trim_end());
            }
            Ok(0)
        }
        IncidentsCommand::Resolve {
            id,
            not_an_incident,
            reason,
            config,
        } => {
            if !not_an_incident {
                bail!("say what the incident was: --not-an-incident");
            }
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, true)?;
            let Some(c) = aiops_act::close_not_an_incident(&store, &id, reason, now_micros())?
            else {
                bail!("no incident {id:?}");
            };
            let i = &c.incident;
            if c.already_closed {
                out!(
                    "{} was closed as not an incident already; nothing recorded again",
                    i.incident_id
                );
            } else if c.feedback_series.is_empty() {
                out!(
                    "closed {} as not an incident; no feedback recorded: its findings have no \
                     series (change rules are not held back by feedback; `aiops suppress add {}` \
                     silences this resource)",
                    i.incident_id,
                    i.resource_key
                );
            } else {
                out!(
                    "closed {} as not an incident; feedback recorded for {} series: {}",
                    i.incident_id,
                    c.feedback_series.len(),
                    c.feedback_series.join(", ")
                );
            }
            Ok(0)
        }
    }
}

/// Parses `--for`: seconds (`90`, `90s`), minutes (`30m`), hours (`2h`) or days (`1d`).
pub fn parse_duration_secs(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("--for {s:?}: expected a number with s, m, h or d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => bail!("--for {s:?}: the unit must be s, m, h or d"),
    };
    if n == 0 {
        bail!("--for {s:?}: must be positive");
    }
    n.checked_mul(mult)
        .with_context(|| format!("--for {s:?} is too long"))
}

/// Runs a `suppress` command.
pub fn cmd_suppress(command: SuppressCommand) -> Result<i32> {
    match command {
        SuppressCommand::Add {
            target,
            for_,
            reason,
            config,
        } => {
            if target.trim().is_empty() || target.len() > 2048 {
                bail!(
                    "the target must be a series key, template id or resource key (1..2048 bytes)"
                );
            }
            let for_secs = for_.as_deref().map(parse_duration_secs).transpose()?;
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, false)?;
            let kind = SuppressionKind::guess(&target);
            let s = Suppression::new(kind, &target, reason, now_micros(), for_secs);
            store.put_suppression(&s)?;
            out!("{}", suppression_line(&s, now_micros()));
            Ok(0)
        }
        SuppressCommand::List { config, json } => {
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, false)?;
            let now = now_micros();
            for s in store.list_suppressions()? {
                if json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "suppression_id": s.suppression_id,
                            "kind": s.kind.as_str(),
                            "value": s.value,
                            "reason": s.reason,
                            "created_at": format_rfc3339_micros(s.created_at),
                            "expires_at": s.expires_at.map(format_rfc3339_micros),
                            "active": s.active(now),
                        })
                    );
                } else {
                    out!("{}", suppression_line(&s, now));
                }
            }
            Ok(0)
        }
        SuppressCommand::Remove {
            id_or_value,
            config,
        } => {
            let (cfg, _) = load_config(&config)?;
            let store = open_store(&cfg, false)?;
            if store.remove_suppression(&id_or_value)? {
                out!("removed {id_or_value}");
                Ok(0)
            } else {
                eprintln!("no suppression {id_or_value:?}");
                Ok(1)
            }
        }
    }
}

fn suppression_line(s: &Suppression, now: i64) -> String {
    let until = match s.expires_at {
        None => "until removed".to_string(),
        Some(e) if s.active(now) => format!("until {}", format_rfc3339_micros(e)),
        Some(e) => format!("expired {}", format_rfc3339_micros(e)),
    };
    format!(
        "SUPPRESSION {} {} {} | {} | {}",
        s.suppression_id,
        s.kind.as_str(),
        s.value,
        until,
        s.reason.as_deref().unwrap_or("")
    )
}

/// The priority of an incident: its group's, else its finding's.
fn priority(i: &Incident) -> &'static str {
    i.group
        .priority
        .unwrap_or_else(|| aiops_act::finding_priority(&i.finding))
        .as_str()
}

/// The line `incidents list` prints: priority and finding count before the incident line.
fn list_line(i: &Incident) -> String {
    // A closed group (`resolve --not-an-incident`) keeps its workflow state; the list says
    // it is closed before anything else on the line.
    format!(
        "{:<8} findings={:<3} {}{}",
        priority(i),
        i.group.finding_count.max(1),
        if i.group.closed { "CLOSED " } else { "" },
        crate::incident_line(i)
    )
}

/// The JSON form of an incident for `incidents list|show --json`: the fields of the first
/// finding, priority, finding count, related changes and the whole group.
pub fn incident_json(i: &Incident) -> serde_json::Value {
    serde_json::json!({
        "incident_id": i.incident_id,
        "state": i.state,
        "priority": priority(i),
        "finding_count": i.group.finding_count.max(1),
        "resource_type": i.resource_type,
        "resource_id": i.resource_id,
        "resource_key": i.resource_key,
        "detector": i.finding.detector,
        "summary": i.finding.summary,
        "timeline": i.timeline.iter().map(|t| serde_json::json!({"state": t.state, "at": format_rfc3339_micros(t.at)})).collect::<Vec<_>>(),
        "classification": i.classification,
        "confidence": i.confidence,
        "severity": i.severity,
        "reasoning": i.reasoning,
        "action": i.action,
        "codebuild_project": i.codebuild_project,
        "terraform_target": i.terraform_target,
        "build_ids": i.build_ids,
        "outcome": i.outcome,
        "explainer": i.explainer,
        "enrichment_note": i.enrichment_note,
        "evidence_ref": i.evidence_ref,
        "notification": i.notification,
        "raw_answer": i.raw_answer,
        "correlation_id": i.correlation_id,
        "event_time": format_rfc3339_micros(i.event_time),
        "related_changes": i.group.related_changes.iter().map(|c| serde_json::json!({
            "event_id": c.event_id,
            "event_name": c.event_name,
            "event_source": c.event_source,
            "resource": c.resource,
            "principal": c.principal,
            "event_time": format_rfc3339_micros(c.event_time),
            "score": c.score,
            "reasons": c.reasons,
        })).collect::<Vec<_>>(),
        "closed": i.group.closed,
        "finding": i.finding,
        "group": i.group,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration_secs;

    #[test]
    fn durations_of_suppress_for() {
        assert_eq!(parse_duration_secs("90").unwrap(), 90);
        assert_eq!(parse_duration_secs("1s").unwrap(), 1);
        assert_eq!(parse_duration_secs("30m").unwrap(), 1800);
        assert_eq!(parse_duration_secs("2h").unwrap(), 7200);
        assert_eq!(parse_duration_secs("1d").unwrap(), 86_400);
        for bad in ["", "0", "2x", "h", "-1h", "1.5h"] {
            assert!(parse_duration_secs(bad).is_err(), "{bad}");
        }
    }
}
