//! The schemas of the history tables (`raw`, `findings`, `incidents`), their versions, and
//! their Glue/Hive descriptions for Athena and `aiops schema`.

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;
use std::sync::{Arc, OnceLock};

/// Version of the `raw` table schema written in every file's `schema_version` column.
///
/// - 1: the first 41 columns, `schema_version` .. `metric_stream_name`.
/// - 2: adds `decode_warnings`, `event_category` and `insight` at the end.
pub const RAW_SCHEMA_VERSION: i32 = 2;

/// A column of a table, with its Glue/Hive type name (for Athena DDL and `aiops schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnSpec {
    /// Column name (lower-case snake_case).
    pub name: String,
    /// Glue/Hive type: `string`, `int`, `bigint`, `double`, `boolean`, `timestamp`.
    #[serde(rename = "type")]
    pub glue_type: String,
}

/// A table's schema as Athena sees it: columns in file order, then the partition keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// Table name (`raw`, `findings`, `incidents`).
    pub name: String,
    /// Schema version written in the `schema_version` column.
    pub version: i32,
    /// Columns stored in the Parquet files, in order.
    pub columns: Vec<ColumnSpec>,
    /// Hive partition keys, in path order (`source`, `dt`, `hour`).
    pub partition_keys: Vec<ColumnSpec>,
}

/// The Glue/Hive type name of an Arrow type used in our schemas.
pub fn glue_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "unsupported",
    }
}

/// Builds the [`TableSpec`] of a table from its Arrow schema.
pub fn table_spec(name: &str, version: i32, schema: &Schema) -> TableSpec {
    let string = |n: &str| ColumnSpec {
        name: n.to_string(),
        glue_type: "string".to_string(),
    };
    TableSpec {
        name: name.to_string(),
        version,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnSpec {
                name: f.name().clone(),
                glue_type: glue_type(f.data_type()).to_string(),
            })
            .collect(),
        partition_keys: vec![string("source"), string("dt"), string("hour")],
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of the `raw` table (normalised events), version [`RAW_SCHEMA_VERSION`].
/// The partition columns (`source`, `dt`, `hour`) live in the path, not in the file.
///
/// Added in version 2 (null in files of version 1, which readers treat as absent):
/// `decode_warnings` (what the decoder repaired to keep the event, a JSON array of strings,
/// null when there is none), `event_category` (CloudTrail `eventCategory`) and `insight` (the
/// `insightDetails` of a CloudTrail Insights record, a JSON object with the fields of
/// `aiops_core::InsightFields`, null for every other event).
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let f = |n: &str| Field::new(n, DataType::Float64, true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("event_id", DataType::Utf8, false),
                Field::new("event_time", ts_type(), false),
                Field::new("ingest_time", ts_type(), false),
                s("account"),
                s("region"),
                s("stream"),
                s("shard_id"),
                s("sequence_number"),
                Field::new("sub_sequence_number", DataType::Int64, true),
                s("event_source"),
                s("event_name"),
                s("event_type"),
                s("principal_type"),
                s("principal_arn"),
                s("principal_account"),
                s("session_issuer_arn"),
                s("invoked_by"),
                s("user_name"),
                s("source_ip"),
                s("user_agent"),
                s("error_code"),
                s("error_message"),
                Field::new("read_only", DataType::Boolean, true),
                s("resources"),
                s("request_parameters"),
                s("response_elements"),
                s("recipient_account_id"),
                s("log_group"),
                s("log_stream"),
                s("message"),
                s("level"),
                s("namespace"),
                s("metric_name"),
                s("dimensions"),
                f("value_max"),
                f("value_min"),
                f("value_sum"),
                f("value_count"),
                s("unit"),
                s("metric_stream_name"),
                // Version 2.
                s("decode_warnings"),
                s("event_category"),
                s("insight"),
            ]))
        })
        .clone()
}

/// Version of the `findings` table schema.
///
/// - 1: the first 26 columns, `schema_version` .. `samples`.
/// - 2: adds `direction`, `priority`, `top_contributors` and `related` at the end.
/// - 3: adds `template_id` at the end.
/// - 4: adds `suppressed` at the end.
pub const FINDINGS_SCHEMA_VERSION: i32 = 4;
/// Version of the `incidents` table schema.
pub const INCIDENTS_SCHEMA_VERSION: i32 = 1;

/// The Arrow schema of the `findings` table, version [`FINDINGS_SCHEMA_VERSION`]: one row per
/// finding; JSON lists (`event_ids`, `samples`) are strings.
///
/// Added in version 2 (absent from files of version 1, which readers take as no direction,
/// priority `HIGH`, no contributors, nothing related): `direction` (`spike` or `drop`, null
/// for change rules and novelty), `priority` (`HIGH`, `MEDIUM` or `LOW`), `top_contributors`
/// (a JSON array of `{"name": ..., "count": ...}`, largest first, null when none) and
/// `related` (the merged findings of nested series, a JSON array of strings, null when none).
///
/// Added in version 3 (absent from older files, read as null): `template_id`, the
/// content-derived id of the finding's log template (16 lowercase hexadecimal digits, the last
/// part of a `log_template:<group>:<id>` series key), null for findings not about a template.
/// The template text beside it is the `template` column (variables as `<*>`), there since
/// version 1.
///
/// Added in version 4 (absent from older files, read as null): `suppressed`, why act opened
/// no incident for the finding (a suppression's key and reason, or "not an incident"
/// feedback on its series), null when it was not suppressed.
pub fn findings_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let f = |n: &str| Field::new(n, DataType::Float64, true);
            let t = |n: &str| Field::new(n, ts_type(), true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("finding_id", DataType::Utf8, false),
                s("kind"),
                s("detector"),
                t("event_time"),
                t("detected_at"),
                s("resource_type"),
                s("resource_id"),
                s("account"),
                s("region"),
                f("score"),
                s("summary"),
                s("default_action"),
                Field::new("recoverable", DataType::Boolean, true),
                s("series_key"),
                t("window_start"),
                t("window_end"),
                f("observed"),
                f("expected"),
                s("template"),
                s("event_ids"),
                s("principal"),
                s("event_source"),
                s("event_name"),
                s("source_ip"),
                s("samples"),
                // Version 2.
                s("direction"),
                s("priority"),
                s("top_contributors"),
                s("related"),
                // Version 3.
                s("template_id"),
                // Version 4.
                s("suppressed"),
            ]))
        })
        .clone()
}

/// The Arrow schema of the `incidents` table, version [`INCIDENTS_SCHEMA_VERSION`]: one row
/// per incident state snapshot; `timeline` and `build_ids` are JSON strings.
pub fn incidents_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let t = |n: &str| Field::new(n, ts_type(), true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("incident_id", DataType::Utf8, false),
                s("correlation_id"),
                s("resource_key"),
                s("resource_type"),
                s("resource_id"),
                s("account"),
                s("region"),
                s("finding_id"),
                s("detector"),
                s("kind"),
                s("workflow_state"),
                s("classification"),
                Field::new("confidence", DataType::Float64, true),
                Field::new("severity", DataType::Int32, true),
                s("reasoning"),
                s("action"),
                s("explainer"),
                s("codebuild_project"),
                s("terraform_target"),
                s("build_ids"),
                s("outcome"),
                s("timeline"),
                t("event_time"),
                t("created_at"),
                t("updated_at"),
            ]))
        })
        .clone()
}

/// The [`TableSpec`]s of every table, in the order `raw`, `findings`, `incidents`.
pub fn all_table_specs() -> Vec<TableSpec> {
    vec![
        table_spec("raw", RAW_SCHEMA_VERSION, &raw_schema()),
        table_spec("findings", FINDINGS_SCHEMA_VERSION, &findings_schema()),
        table_spec("incidents", INCIDENTS_SCHEMA_VERSION, &incidents_schema()),
    ]
}
