//! The incident store of aws mode: DynamoDB (DESIGN §6), laid out as
//! `infra/terraform/dynamodb.tf` declares it.
//!
//! - `incidents` table, key `incident_id`; attributes `resource_key`, `workflow_state`,
//!   `created_at` (N, microseconds since the Unix epoch, UTC) feed the GSIs `by_resource`
//!   (`resource_key` + `created_at`) and `by_state` (`workflow_state` + `created_at`); `ttl`
//!   (N, seconds since the epoch) is written at creation. Items stay far below DynamoDB's
//!   400 KB: the finding is stored inline only up to `inline_finding_max_bytes`; a larger one is
//!   written whole to S3 (`s3://<evidence_bucket>/<evidence_prefix>/<incident_id>/finding.json`,
//!   referenced by `evidence_ref`) and a trimmed copy is kept inline.
//! - `locks` table, key `resource_key`: one cooldown lock item per resource (`holder`,
//!   `expires_at` in microseconds, `ttl` in seconds), taken with a conditional put
//!   (`attribute_not_exists(resource_key) OR expires_at <= :now`).
//! - the `patterns` table (key `pattern_key`) holds the outcome counters per resource type in
//!   item `act/outcomes/<resource_type>`, updated with `ADD`, which creates a missing counter
//!   (a `SET n = n + :one` fails on the first update because `n` does not exist yet).
//!
//! - cooldown locks per (resource, action): the `locks` item of a resource holds one
//!   `expires_at_<action>` / `holder_<action>` pair per action; taking a lock is one
//!   conditional `UpdateItem` requiring every at-least-as-destructive action's lock to be
//!   absent, expired or the caller's own (a retried write).
//! - the open-incident-by-group index, suppressions and feedback are items of the `locks`
//!   table too, keyed `group#<key>`, `suppression#<id>`, `feedback#<incident>#<series>` (with
//!   `ttl`: group entries expire a day after their last event, feedback after 30 days);
//!   listing suppressions and feedback scans that small table.
//! - the incident's group is the JSON attribute `grp` with its version in `grp_version`;
//!   [`IncidentStore::update_group`] is conditional on that version.
//!
//! Every expression names attributes through `ExpressionAttributeNames` (`#n0`, `#n1`, ...),
//! never literally, so DynamoDB's reserved words (`action`, `ttl`, `state`, `status`, ...)
//! can never make an update fail. Transitions are `UpdateItem` with `ConditionExpression`
//! `workflow_state = :from`; a failed condition is "another worker moved it", not an error.
//!
//! Blocks on the SDK: never call from inside an async task.

use crate::aws::{Blocking, error_chain};
use crate::changes::{Change, ChangeIndex, ChangeIndexConfig, sort_newest_first};
use crate::config::StoreConfig;
use crate::group::IncidentGroup;
use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError};
use crate::suppress::{Feedback, Suppression, SuppressionKind};
use crate::text::truncate_utf8;
use aiops_core::{Finding, WorkflowState};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use std::collections::{BTreeMap, HashMap};

/// DynamoDB's item size limit, bytes.
pub const DYNAMODB_MAX_ITEM_BYTES: usize = 400 * 1024;
/// The bound this store keeps items under (a margin below the limit), bytes.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;
/// GSI names, as in `infra/terraform/dynamodb.tf`.
pub const GSI_BY_RESOURCE: &str = "by_resource";
/// GSI by state.
pub const GSI_BY_STATE: &str = "by_state";

type Item = HashMap<String, AttributeValue>;

/// Builds expressions whose every attribute name and value is a placeholder.
#[derive(Debug, Default)]
pub struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// The placeholder (`#nK`) of attribute `attr`.
    pub fn name(&mut self, attr: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == attr) {
            return k.clone();
        }
        let k = format!("#n{}", self.names.len());
        self.names.insert(k.clone(), attr.to_string());
        k
    }

    /// A new value placeholder (`:vK`) for `v`.
    pub fn value(&mut self, v: AttributeValue) -> String {
        let k = format!(":v{}", self.values.len());
        self.values.insert(k.clone(), v);
        k
    }

    /// The `ExpressionAttributeNames` map.
    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// The `ExpressionAttributeValues` map.
    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The size DynamoDB charges for an item, bytes (attribute names plus values; numbers
/// counted as their decimal text, an upper bound), per
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
pub fn item_size(item: &Item) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(x) | AttributeValue::N(x) => x.len(),
            AttributeValue::B(b) => b.as_ref().len(),
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value(e)).sum::<usize>(),
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, e)| 1 + k.len() + value(e)).sum::<usize>()
            }
            AttributeValue::Ss(x) | AttributeValue::Ns(x) => x.iter().map(String::len).sum(),
            AttributeValue::Bs(x) => x.iter().map(|b| b.as_ref().len()).sum(),
            _ => 0,
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// A copy of `finding` whose JSON is at most `max_bytes` (samples, template, summary, ids and
/// resource id cut, then dropped). Returns the copy and whether anything was cut.
pub fn trim_finding(finding: &Finding, max_bytes: usize) -> (Finding, bool) {
    let size = |f: &Finding| serde_json::to_string(f).map_or(usize::MAX, |j| j.len());
    if size(finding) <= max_bytes {
        return (finding.clone(), false);
    }
    let mut f = finding.clone();
    f.evidence.samples.truncate(5);
    for sample in &mut f.evidence.samples {
        *sample = truncate_utf8(sample, 1024);
    }
    f.evidence.event_ids.truncate(20);
    f.evidence.template = f.evidence.template.map(|t| truncate_utf8(&t, 4096));
    f.summary = truncate_utf8(&f.summary, 2048);
    if let Some(r) = f.resource.as_mut() {
        r.resource_id = truncate_utf8(&r.resource_id, 2048);
    }
    if size(&f) > max_bytes {
        f.evidence.samples.clear();
    }
    if size(&f) > max_bytes {
        f.evidence.template = None;
        f.evidence.principal = f.evidence.principal.map(|p| truncate_utf8(&p, 512));
        f.evidence.series_key = f.evidence.series_key.map(|p| truncate_utf8(&p, 512));
        f.summary = truncate_utf8(&f.summary, 512);
    }
    (f, true)
}

fn backend<E, R>(what: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        // A request DynamoDB refuses as invalid (an item over 400 KB, an empty key) is refused
        // again however often it is retried.
        SdkError::ServiceError(se) if se.err().code() == Some("ValidationException") => {
            StoreError::Rejected(format!(
                "{what}: ValidationException: {}",
                se.err().message().unwrap_or_default()
            ))
        }
        SdkError::ServiceError(se) => StoreError::Backend(format!(
            "{what}: {}: {}",
            se.err().code().unwrap_or("unknown"),
            se.err().message().unwrap_or_default()
        )),
        other => StoreError::Backend(format!("{what}: {}", error_chain(other))),
    }
}

fn is_conditional_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// Puts the patch's fields into an update expression (`SET` clauses) of `e`.
fn patch_clauses(e: &mut Expr, patch: &IncidentPatch, sets: &mut Vec<String>) {
    let mut set = |e: &mut Expr, attr: &str, v: Option<AttributeValue>| {
        if let Some(v) = v {
            let k = e.name(attr);
            let p = e.value(v);
            sets.push(format!("{k} = {p}"));
        }
    };
    set(e, "classification", patch.classification.clone().map(s));
    set(
        e,
        "confidence",
        patch.confidence.filter(|c| c.is_finite()).map(n),
    );
    set(e, "severity", patch.severity.map(n));
    set(e, "reasoning", patch.reasoning.clone().map(s));
    set(e, "action", patch.action.clone().map(s));
    set(e, "explainer", patch.explainer.clone().map(s));
    set(
        e,
        "codebuild_project",
        patch.codebuild_project.clone().map(s),
    );
    set(e, "terraform_target", patch.terraform_target.clone().map(s));
    set(e, "outcome", patch.outcome.clone().map(s));
    set(e, "enrichment_note", patch.enrichment_note.clone().map(s));
    set(e, "notification", patch.notification.clone().map(s));
    set(e, "raw_answer", patch.raw_answer.clone().map(s));
    if let Some(b) = &patch.add_build_id {
        let k = e.name("build_ids");
        let empty = e.value(AttributeValue::L(Vec::new()));
        let add = e.value(AttributeValue::L(vec![s(b.clone())]));
        sets.push(format!(
            "{k} = list_append(if_not_exists({k}, {empty}), {add})"
        ));
    }
}

/// The DynamoDB incident store (see the module documentation).
pub struct DynamoStore {
    client: Client,
    s3: Option<aws_sdk_s3::Client>,
    rt: Blocking,
    cfg: StoreConfig,
}

impl DynamoStore {
    /// A store over the tables named in `cfg`. With `cfg.evidence_bucket` set, large evidence
    /// goes to S3 (path-style addressing when the SDK configuration has an endpoint override,
    /// as emulators need).
    pub fn new(sdk: &aws_config::SdkConfig, rt: Blocking, cfg: StoreConfig) -> DynamoStore {
        let s3 = (!cfg.evidence_bucket.is_empty()).then(|| {
            let conf = aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(sdk.endpoint_url().is_some())
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        });
        DynamoStore {
            client: Client::new(sdk),
            s3,
            rt,
            cfg,
        }
    }

    /// The same store over another DynamoDB client (tests: a client with interceptors that
    /// lose responses, to exercise the SDK's retries).
    pub fn with_client(mut self, client: Client) -> DynamoStore {
        self.client = client;
        self
    }

    /// The DynamoDB client (tests, tools).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the incidents, locks and stats tables as `infra/terraform/dynamodb.tf` declares
    /// them (on-demand, GSIs, TTL on `ttl`), skipping tables that exist. For local emulators
    /// and development; deployments create them with Terraform.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a table cannot be created.
    pub fn create_tables(&self) -> Result<(), StoreError> {
        let attr = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let gsi = |name: &str, hash: &str| -> Result<GlobalSecondaryIndex, StoreError> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key("created_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))
        };
        let mut tables = vec![(
            self.cfg.incidents_table.clone(),
            self.client
                .create_table()
                .table_name(&self.cfg.incidents_table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("incident_id", ScalarAttributeType::S)?)
                .attribute_definitions(attr("resource_key", ScalarAttributeType::S)?)
                .attribute_definitions(attr("workflow_state", ScalarAttributeType::S)?)
                .attribute_definitions(attr("created_at", ScalarAttributeType::N)?)
                .key_schema(key("incident_id", KeyType::Hash)?)
                .global_secondary_indexes(gsi(GSI_BY_RESOURCE, "resource_key")?)
                .global_secondary_indexes(gsi(GSI_BY_STATE, "workflow_state")?),
            true,
        )];
        tables.push((
            self.cfg.locks_table.clone(),
            self.client
                .create_table()
                .table_name(&self.cfg.locks_table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attr("resource_key", ScalarAttributeType::S)?)
                .key_schema(key("resource_key", KeyType::Hash)?),
            true,
        ));
        if !self.cfg.stats_table.is_empty() {
            tables.push((
                self.cfg.stats_table.clone(),
                self.client
                    .create_table()
                    .table_name(&self.cfg.stats_table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(attr("pattern_key", ScalarAttributeType::S)?)
                    .key_schema(key("pattern_key", KeyType::Hash)?),
                false,
            ));
        }
        for (name, request, ttl) in tables {
            match self.rt.block_on(request.send()) {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_in_use_exception()) => {}
                Err(e) => return Err(backend(&format!("create table {name}"), &e)),
            }
            if ttl {
                let spec = TimeToLiveSpecification::builder()
                    .attribute_name("ttl")
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::Backend(e.to_string()))?;
                // Already enabled is fine; TTL only deletes expired items eventually.
                let _ = self.rt.block_on(
                    self.client
                        .update_time_to_live()
                        .table_name(&name)
                        .time_to_live_specification(spec)
                        .send(),
                );
            }
        }
        Ok(())
    }

    fn offload(&self, incident_id: &str, body: &str) -> Option<String> {
        let s3 = self.s3.as_ref()?;
        let prefix = self.cfg.evidence_prefix.trim_matches('/');
        let key = if prefix.is_empty() {
            format!("{incident_id}/finding.json")
        } else {
            format!("{prefix}/{incident_id}/finding.json")
        };
        let put = s3
            .put_object()
            .bucket(&self.cfg.evidence_bucket)
            .key(&key)
            .content_type("application/json")
            .body(aws_sdk_s3::primitives::ByteStream::from(
                body.as_bytes().to_vec(),
            ));
        match self.rt.block_on(put.send()) {
            Ok(_) => Some(format!("s3://{}/{key}", self.cfg.evidence_bucket)),
            Err(e) => {
                tracing::warn!(incident = %incident_id, error = %error_chain(&e), "large evidence not written to S3; trimmed inline copy only");
                None
            }
        }
    }

    /// The item written for `incident` (after moving large evidence to S3).
    fn to_item(&self, i: &Incident) -> Result<Item, StoreError> {
        let full = serde_json::to_string(&i.finding)
            .map_err(|e| StoreError::Backend(format!("finding: {e}")))?;
        let max = self.cfg.inline_finding_max_bytes;
        let (inline, evidence_ref, note) = if full.len() > max {
            let evidence_ref = self.offload(&i.incident_id, &full);
            let (trimmed, _) = trim_finding(&i.finding, max);
            let json = serde_json::to_string(&trimmed)
                .map_err(|e| StoreError::Backend(format!("finding: {e}")))?;
            let note = if evidence_ref.is_some() {
                format!(
                    "finding of {} bytes stored in S3; inline copy trimmed",
                    full.len()
                )
            } else {
                format!(
                    "finding of {} bytes trimmed to {} bytes (no evidence bucket configured)",
                    full.len(),
                    json.len()
                )
            };
            (json, evidence_ref.or(i.evidence_ref.clone()), Some(note))
        } else {
            (full, i.evidence_ref.clone(), None)
        };
        let ttl = i.created_at.div_euclid(1_000_000)
            + i64::from(self.cfg.ttl_days).saturating_mul(86_400);
        let mut item: Item = HashMap::new();
        item.insert("incident_id".into(), s(&i.incident_id));
        item.insert("correlation_id".into(), s(&i.correlation_id));
        item.insert("resource_key".into(), s(&i.resource_key));
        item.insert("resource_type".into(), s(&i.resource_type));
        item.insert("resource_id".into(), s(truncate_utf8(&i.resource_id, 2048)));
        item.insert("workflow_state".into(), s(i.state.as_str()));
        item.insert("finding".into(), s(inline));
        item.insert(
            "build_ids".into(),
            AttributeValue::L(i.build_ids.iter().map(|b| s(b.clone())).collect()),
        );
        item.insert(
            "timeline".into(),
            AttributeValue::L(
                i.timeline
                    .iter()
                    .map(|t| {
                        AttributeValue::M(HashMap::from([
                            ("state".to_string(), s(t.state.as_str())),
                            ("at".to_string(), n(t.at)),
                        ]))
                    })
                    .collect(),
            ),
        );
        item.insert("event_time".into(), n(i.event_time));
        item.insert("created_at".into(), n(i.created_at));
        item.insert("updated_at".into(), n(i.updated_at));
        item.insert("ttl".into(), n(ttl));
        item.insert("schema_version".into(), n(1));
        item.insert(
            "grp".into(),
            s(serde_json::to_string(&i.group)
                .map_err(|e| StoreError::Backend(format!("grp: {e}")))?),
        );
        item.insert("grp_version".into(), n(i.group.version));
        let mut opt = |k: &str, v: Option<AttributeValue>| {
            if let Some(v) = v {
                item.insert(k.to_string(), v);
            }
        };
        opt("classification", i.classification.clone().map(s));
        opt("confidence", i.confidence.filter(|c| c.is_finite()).map(n));
        opt("severity", i.severity.map(n));
        opt("reasoning", i.reasoning.clone().map(s));
        opt("action", i.action.clone().map(s));
        opt("explainer", i.explainer.clone().map(s));
        opt("codebuild_project", i.codebuild_project.clone().map(s));
        opt("terraform_target", i.terraform_target.clone().map(s));
        opt("outcome", i.outcome.clone().map(s));
        opt(
            "enrichment_note",
            match (&i.enrichment_note, note) {
                (Some(a), Some(b)) => Some(s(format!("{a}; {b}"))),
                (Some(a), None) => Some(s(a.clone())),
                (None, b) => b.map(s),
            },
        );
        opt("evidence_ref", evidence_ref.map(s));
        opt("notification", i.notification.clone().map(s));
        opt("raw_answer", i.raw_answer.clone().map(s));
        let size = item_size(&item);
        if size > MAX_ITEM_BYTES {
            return Err(StoreError::Rejected(format!(
                "incident {} would be {size} bytes, above the {MAX_ITEM_BYTES}-byte bound",
                i.incident_id
            )));
        }
        Ok(item)
    }

    fn query_index(
        &self,
        index: &str,
        key_attr: &str,
        key: &str,
        limit: usize,
        exclude: Option<&str>,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let mut e = Expr::default();
            let k = e.name(key_attr);
            let v = e.value(s(key));
            let page = i32::try_from((limit - out.len() + 1).min(500)).unwrap_or(500);
            let request = self
                .client
                .query()
                .table_name(&self.cfg.incidents_table)
                .index_name(index)
                .key_condition_expression(format!("{k} = {v}"))
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(false)
                .limit(page)
                .set_exclusive_start_key(start.take());
            let resp = self
                .rt
                .block_on(request.send())
                .map_err(|err| backend(&format!("query {index}"), &err))?;
            for item in resp.items() {
                let i = item_to_incident(item)?;
                if exclude != Some(i.incident_id.as_str()) && out.len() < limit {
                    out.push(i);
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Items of the locks table whose key starts with `prefix`, at most `limit` (a paged
    /// scan of that small table).
    fn scan_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut e = Expr::default();
            let k = e.name("resource_key");
            let p = e.value(s(prefix));
            let resp = self
                .rt
                .block_on(
                    self.client
                        .scan()
                        .table_name(&self.cfg.locks_table)
                        .filter_expression(format!("begins_with({k}, {p})"))
                        .set_expression_attribute_names(e.names())
                        .set_expression_attribute_values(e.values())
                        .consistent_read(true)
                        .set_exclusive_start_key(start.take())
                        .send(),
                )
                .map_err(|err| backend("scan locks", &err))?;
            out.extend(resp.items().iter().cloned());
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn stats_key(resource_type: &str) -> String {
        format!("act/outcomes/{resource_type}")
    }
}

impl IncidentStore for DynamoStore {
    fn create(&self, incident: &Incident) -> Result<bool, StoreError> {
        let item = self.to_item(incident)?;
        self.create_item(item)
    }

    fn transition(
        &self,
        incident_id: &str,
        from: WorkflowState,
        to: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError> {
        if !from.can_move_to(to) {
            return Err(StoreError::IllegalTransition {
                id: incident_id.to_string(),
                from,
                to,
            });
        }
        let mut e = Expr::default();
        let mut sets = Vec::new();
        let ws = e.name("workflow_state");
        let to_v = e.value(s(to.as_str()));
        sets.push(format!("{ws} = {to_v}"));
        let ua = e.name("updated_at");
        let at_v = e.value(n(at));
        sets.push(format!("{ua} = {at_v}"));
        let tl = e.name("timeline");
        let empty = e.value(AttributeValue::L(Vec::new()));
        let entry = e.value(AttributeValue::L(vec![AttributeValue::M(HashMap::from([
            ("state".to_string(), s(to.as_str())),
            ("at".to_string(), n(at)),
        ]))]));
        sets.push(format!(
            "{tl} = list_append(if_not_exists({tl}, {empty}), {entry})"
        ));
        patch_clauses(&mut e, patch, &mut sets);
        let from_v = e.value(s(from.as_str()));
        let condition = format!("{ws} = {from_v}");
        self.update("transition", incident_id, e, sets, condition)
    }

    fn annotate(
        &self,
        incident_id: &str,
        state: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let mut sets = Vec::new();
        let ua = e.name("updated_at");
        let at_v = e.value(n(at));
        sets.push(format!("{ua} = {at_v}"));
        patch_clauses(&mut e, patch, &mut sets);
        let ws = e.name("workflow_state");
        let st = e.value(s(state.as_str()));
        self.update("annotate", incident_id, e, sets, format!("{ws} = {st}"))
    }

    fn try_lock(
        &self,
        resource_key: &str,
        action: &str,
        blocking: &[String],
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let now_v = e.value(n(now));
        let me = e.value(s(holder));
        let mut conds = Vec::new();
        for a in blocking.iter().map(String::as_str).chain([action]) {
            let x = e.name(&format!("expires_at_{a}"));
            let h = e.name(&format!("holder_{a}"));
            let c = format!("(attribute_not_exists({x}) OR {x} <= {now_v} OR {h} = {me})");
            if !conds.contains(&c) {
                conds.push(c);
            }
        }
        let x = e.name(&format!("expires_at_{action}"));
        let h = e.name(&format!("holder_{action}"));
        let exp = e.value(n(expires_at));
        let t = e.name("ttl");
        let ttl = e.value(n(expires_at.div_euclid(1_000_000).saturating_add(1)));
        let request = self
            .client
            .update_item()
            .table_name(&self.cfg.locks_table)
            .key("resource_key", s(resource_key))
            .update_expression(format!("SET {x} = {exp}, {h} = {me}, {t} = {ttl}"))
            .condition_expression(conds.join(" AND "))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values());
        match self.rt.block_on(request.send()) {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(backend("take lock", &err)),
        }
    }

    fn open_groups(&self, keys: &[String], since: i64) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for k in keys.iter().take(64) {
            let resp = self
                .rt
                .block_on(
                    self.client
                        .get_item()
                        .table_name(&self.cfg.locks_table)
                        .key("resource_key", s(format!("group#{k}")))
                        .consistent_read(true)
                        .send(),
                )
                .map_err(|e| backend("get group", &e))?;
            let Some(item) = resp.item() else { continue };
            let last = match item.get("last_event_time") {
                Some(AttributeValue::N(v)) => v.parse::<i64>().unwrap_or(i64::MIN),
                _ => i64::MIN,
            };
            if last < since {
                continue;
            }
            if let Some(AttributeValue::S(id)) = item.get("incident_id")
                && !out.contains(id)
            {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    fn index_groups(
        &self,
        keys: &[String],
        incident_id: &str,
        last_event_time: i64,
    ) -> Result<(), StoreError> {
        for k in keys.iter().take(64) {
            let mut e = Expr::default();
            let key = e.name("resource_key");
            let l = e.name("last_event_time");
            let i = e.name("incident_id");
            let t = e.value(n(last_event_time));
            let id = e.value(s(incident_id));
            let item: Item = HashMap::from([
                ("resource_key".to_string(), s(format!("group#{k}"))),
                ("incident_id".to_string(), s(incident_id)),
                ("last_event_time".to_string(), n(last_event_time)),
                (
                    "ttl".to_string(),
                    n(aiops_core::time::now_micros().div_euclid(1_000_000) + 86_400),
                ),
            ]);
            let request = self
                .client
                .put_item()
                .table_name(&self.cfg.locks_table)
                .set_item(Some(item))
                .condition_expression(format!(
                    "attribute_not_exists({key}) OR {i} = {id} OR {l} <= {t}"
                ))
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values());
            match self.rt.block_on(request.send()) {
                Ok(_) => {}
                Err(err) if is_conditional_failure(&err) => {}
                Err(err) => return Err(backend("index group", &err)),
            }
        }
        Ok(())
    }

    fn update_group(
        &self,
        incident_id: &str,
        expected_version: u64,
        group: &IncidentGroup,
        at: i64,
    ) -> Result<bool, StoreError> {
        let body =
            serde_json::to_string(group).map_err(|e| StoreError::Backend(format!("grp: {e}")))?;
        let mut e = Expr::default();
        let g = e.name("grp");
        let gv = e.name("grp_version");
        let ua = e.name("updated_at");
        let bv = e.value(s(body));
        let vv = e.value(n(group.version));
        let at_v = e.value(n(at));
        let exp = e.value(n(expected_version));
        let id = e.name("incident_id");
        let condition = if expected_version == 0 {
            format!("attribute_exists({id}) AND (attribute_not_exists({gv}) OR {gv} = {exp})")
        } else {
            format!("{gv} = {exp}")
        };
        self.update(
            "update group",
            incident_id,
            e,
            vec![
                format!("{g} = {bv}"),
                format!("{gv} = {vv}"),
                format!("{ua} = {at_v}"),
            ],
            condition,
        )
    }

    fn put_suppression(&self, sup: &Suppression) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from([
            (
                "resource_key".to_string(),
                s(format!("suppression#{}", sup.suppression_id)),
            ),
            ("suppression_id".to_string(), s(&sup.suppression_id)),
            ("kind".to_string(), s(sup.kind.as_str())),
            ("value".to_string(), s(truncate_utf8(&sup.value, 2048))),
            ("created_at".to_string(), n(sup.created_at)),
        ]);
        if let Some(r) = &sup.reason {
            item.insert("reason".into(), s(r));
        }
        if let Some(x) = sup.expires_at {
            item.insert("expires_at".into(), n(x));
            // Removed by TTL a day after it expired.
            item.insert("ttl".into(), n(x.div_euclid(1_000_000) + 86_400));
        }
        self.rt
            .block_on(
                self.client
                    .put_item()
                    .table_name(&self.cfg.locks_table)
                    .set_item(Some(item))
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| backend("put suppression", &e))
    }

    fn list_suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan_prefix("suppression#", 1000)? {
            let get_s = |k: &str| match item.get(k) {
                Some(AttributeValue::S(v)) => Some(v.clone()),
                _ => None,
            };
            let get_i = |k: &str| match item.get(k) {
                Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
                _ => None,
            };
            let id = get_s("suppression_id").unwrap_or_default();
            let kind = get_s("kind")
                .as_deref()
                .and_then(SuppressionKind::parse)
                .ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    reason: "unknown suppression kind".into(),
                })?;
            out.push(Suppression {
                suppression_id: id,
                kind,
                value: get_s("value").unwrap_or_default(),
                reason: get_s("reason"),
                created_at: get_i("created_at").unwrap_or(0),
                expires_at: get_i("expires_at"),
            });
        }
        out.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.suppression_id.cmp(&b.suppression_id))
        });
        Ok(out)
    }

    fn remove_suppression(&self, id_or_value: &str) -> Result<bool, StoreError> {
        let mut removed = false;
        for sup in self.list_suppressions()? {
            if sup.suppression_id == id_or_value || sup.value == id_or_value {
                self.rt
                    .block_on(
                        self.client
                            .delete_item()
                            .table_name(&self.cfg.locks_table)
                            .key(
                                "resource_key",
                                s(format!("suppression#{}", sup.suppression_id)),
                            )
                            .send(),
                    )
                    .map_err(|e| backend("delete suppression", &e))?;
                removed = true;
            }
        }
        Ok(removed)
    }

    fn add_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        let mut item: Item = HashMap::from([
            (
                "resource_key".to_string(),
                s(truncate_utf8(
                    &format!("feedback#{}#{}", f.incident_id, f.series_key),
                    2000,
                )),
            ),
            ("incident_id".to_string(), s(&f.incident_id)),
            ("series_key".to_string(), s(&f.series_key)),
            ("verdict".to_string(), s(&f.verdict)),
            (
                "score".to_string(),
                n(if f.score.is_finite() { f.score } else { 0.0 }),
            ),
            ("at".to_string(), n(f.at)),
            (
                "ttl".to_string(),
                n(f.at.div_euclid(1_000_000) + crate::suppress::FEEDBACK_DAYS * 86_400),
            ),
        ]);
        if let Some(note) = &f.note {
            item.insert("note".into(), s(note));
        }
        self.rt
            .block_on(
                self.client
                    .put_item()
                    .table_name(&self.cfg.locks_table)
                    .set_item(Some(item))
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| backend("put feedback", &e))
    }

    fn list_feedback(&self, since: i64) -> Result<Vec<Feedback>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan_prefix("feedback#", 10_000)? {
            let get_s = |k: &str| match item.get(k) {
                Some(AttributeValue::S(v)) => Some(v.clone()),
                _ => None,
            };
            let get_n = |k: &str| match item.get(k) {
                Some(AttributeValue::N(v)) => v.parse::<f64>().ok(),
                _ => None,
            };
            let at = get_n("at").map_or(0, |v| v as i64);
            if at < since {
                continue;
            }
            out.push(Feedback {
                incident_id: get_s("incident_id").unwrap_or_default(),
                verdict: get_s("verdict").unwrap_or_default(),
                series_key: get_s("series_key").unwrap_or_default(),
                score: get_n("score").unwrap_or(0.0),
                note: get_s("note"),
                at,
            });
        }
        out.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then_with(|| a.incident_id.cmp(&b.incident_id))
                .then_with(|| a.series_key.cmp(&b.series_key))
        });
        Ok(out)
    }

    fn get(&self, incident_id: &str) -> Result<Option<Incident>, StoreError> {
        let resp = self
            .rt
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.cfg.incidents_table)
                    .key("incident_id", s(incident_id))
                    .consistent_read(true)
                    .send(),
            )
            .map_err(|e| backend("get incident", &e))?;
        resp.item().map(item_to_incident).transpose()
    }

    fn list(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        let mut all = Vec::new();
        for state in WorkflowState::ALL {
            all.extend(self.query_index(
                GSI_BY_STATE,
                "workflow_state",
                state.as_str(),
                limit,
                None,
            )?);
        }
        all.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.incident_id.cmp(&b.incident_id))
        });
        all.truncate(limit);
        Ok(all)
    }

    fn stuck(
        &self,
        states: &[WorkflowState],
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.stuck_incidents(states, updated_before, limit)
    }

    fn claim(
        &self,
        incident_id: &str,
        state: WorkflowState,
        seen_updated_at: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.claim_incident(incident_id, state, seen_updated_at, at)
    }

    fn history(
        &self,
        resource_key: &str,
        exclude_incident_id: &str,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.query_index(
            GSI_BY_RESOURCE,
            "resource_key",
            resource_key,
            limit,
            Some(exclude_incident_id),
        )
    }

    fn count_outcome(&self, resource_type: &str, state: WorkflowState) -> Result<(), StoreError> {
        if self.cfg.stats_table.is_empty() {
            return Ok(());
        }
        let mut e = Expr::default();
        let c = e.name(&format!("count_{}", state.as_str().to_ascii_lowercase()));
        let one = e.value(n(1));
        let u = e.name("updated_at");
        let now = e.value(n(aiops_core::time::now_micros()));
        let request = self
            .client
            .update_item()
            .table_name(&self.cfg.stats_table)
            .key("pattern_key", s(Self::stats_key(resource_type)))
            .update_expression(format!("ADD {c} {one} SET {u} = {now}"))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values());
        self.rt
            .block_on(request.send())
            .map(|_| ())
            .map_err(|err| backend("count outcome", &err))
    }

    fn outcome_counts(&self, resource_type: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        if self.cfg.stats_table.is_empty() {
            return Ok(BTreeMap::new());
        }
        let resp = self
            .rt
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.cfg.stats_table)
                    .key("pattern_key", s(Self::stats_key(resource_type)))
                    .send(),
            )
            .map_err(|e| backend("get outcome counters", &e))?;
        let mut out = BTreeMap::new();
        if let Some(item) = resp.item() {
            for state in WorkflowState::ALL {
                let k = format!("count_{}", state.as_str().to_ascii_lowercase());
                if let Some(AttributeValue::N(v)) = item.get(&k)
                    && let Ok(c) = v.parse::<u64>()
                {
                    out.insert(state.as_str().to_string(), c);
                }
            }
        }
        Ok(out)
    }
}

mod changes;
mod item;
mod write;
pub use changes::{CHANGE_BUCKET_MICROS, DynamoChangeIndex};
use item::item_to_incident;
pub use write::{WRITE_TOKEN_ATTR, new_write_token};

#[cfg(test)]
mod tests;
