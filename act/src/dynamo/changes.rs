//! The recent-changes index of aws mode on DynamoDB (see [`DynamoChangeIndex`]).

use super::*;
/// Width of one partition of the recent-changes table, microseconds of event time (5 min).
pub const CHANGE_BUCKET_MICROS: i64 = 300 * 1_000_000;
/// Most partitions one look-up reads (a 24 h window).
const MAX_CHANGE_BUCKETS: i64 = 288;

/// The recent-changes index of aws mode (DESIGN §6): written where events are seen (the
/// ingest or detect workers), read where incidents open (act workers).
///
/// Table `changes_table` (`[act.changes] table`): partition key `bucket` (S, the 5-minute
/// event-time bucket number, so one look-up reads at most lookback/5 min + 1 partitions and no
/// scope needs to be known in advance, as for log findings), sort key `sort_key` (S,
/// `<event time, 20 digits>#<event id>`); attributes `account`, `region`, `body` (the
/// [`Change`] as JSON) and `ttl` (seconds: the later of event time and now, plus
/// `retention_secs`). Writes are conditional (`attribute_not_exists`), so a change delivered
/// twice is stored once. Bounded in time by TTL (and by the window every read filters on, as
/// TTL deletes lazily) and in count on every read (`limit`, and `max_per_scope` per account
/// and region).
pub struct DynamoChangeIndex {
    client: Client,
    rt: Blocking,
    cfg: ChangeIndexConfig,
}

fn change_sort_key(event_time: i64, event_id: &str) -> String {
    format!("{:020}#{event_id}", event_time.max(0))
}

impl DynamoChangeIndex {
    /// An index over the table `cfg.table`.
    pub fn new(sdk: &aws_config::SdkConfig, rt: Blocking, cfg: ChangeIndexConfig) -> Self {
        DynamoChangeIndex {
            client: Client::new(sdk),
            rt,
            cfg,
        }
    }

    /// Creates the table (on-demand, TTL on `ttl`) unless it exists. For emulators and
    /// development; deployments create it with Terraform.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it cannot be created.
    pub fn create_table(&self) -> Result<(), StoreError> {
        let b = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        let request = self
            .client
            .create_table()
            .table_name(&self.cfg.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("bucket")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(b)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sort_key")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(b)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("bucket")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(b)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("sort_key")
                    .key_type(KeyType::Range)
                    .build()
                    .map_err(b)?,
            );
        match self.rt.block_on(request.send()) {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) => {}
            Err(e) => return Err(backend("create table changes", &e)),
        }
        let spec = TimeToLiveSpecification::builder()
            .attribute_name("ttl")
            .enabled(true)
            .build()
            .map_err(b)?;
        let _ = self.rt.block_on(
            self.client
                .update_time_to_live()
                .table_name(&self.cfg.table)
                .time_to_live_specification(spec)
                .send(),
        );
        Ok(())
    }
}

impl ChangeIndex for DynamoChangeIndex {
    fn record(&self, change: &Change) -> Result<bool, StoreError> {
        let body = serde_json::to_string(change)
            .map_err(|e| StoreError::Backend(format!("change: {e}")))?;
        let retention = i64::try_from(self.cfg.retention_secs).unwrap_or(i64::MAX / 2);
        let ttl = change
            .event_time
            .max(aiops_core::time::now_micros())
            .div_euclid(1_000_000)
            .saturating_add(retention);
        let item: Item = HashMap::from([
            (
                "bucket".to_string(),
                s(change
                    .event_time
                    .div_euclid(CHANGE_BUCKET_MICROS)
                    .to_string()),
            ),
            (
                "sort_key".to_string(),
                s(change_sort_key(change.event_time, &change.event_id)),
            ),
            ("account".to_string(), s(&change.account)),
            ("region".to_string(), s(&change.region)),
            ("body".to_string(), s(body)),
            ("ttl".to_string(), n(ttl)),
        ]);
        let mut e = Expr::default();
        let k = e.name("bucket");
        let request = self
            .client
            .put_item()
            .table_name(&self.cfg.table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({k})"))
            .set_expression_attribute_names(e.names());
        match self.rt.block_on(request.send()) {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(backend("put change", &err)),
        }
    }

    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let mut out: Vec<Change> = Vec::new();
        if until < since || limit == 0 {
            return Ok(out);
        }
        let last = until.div_euclid(CHANGE_BUCKET_MICROS);
        let first = since
            .div_euclid(CHANGE_BUCKET_MICROS)
            .max(last - MAX_CHANGE_BUCKETS + 1);
        let mut per_scope: HashMap<(String, String), usize> = HashMap::new();
        let mut bucket = last;
        while bucket >= first && out.len() < limit {
            let mut start: Option<Item> = None;
            loop {
                let mut e = Expr::default();
                let b = e.name("bucket");
                let sk = e.name("sort_key");
                let bv = e.value(s(bucket.to_string()));
                let lo = e.value(s(change_sort_key(since, "")));
                let hi = e.value(s(change_sort_key(until, "~")));
                let request = self
                    .client
                    .query()
                    .table_name(&self.cfg.table)
                    .key_condition_expression(format!("{b} = {bv} AND {sk} BETWEEN {lo} AND {hi}"))
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .scan_index_forward(false)
                    .limit(500)
                    .set_exclusive_start_key(start.take());
                let resp = self
                    .rt
                    .block_on(request.send())
                    .map_err(|err| backend("query changes", &err))?;
                for item in resp.items() {
                    let Some(AttributeValue::S(body)) = item.get("body") else {
                        continue;
                    };
                    let c: Change =
                        serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
                            id: "changes".into(),
                            reason: e.to_string(),
                        })?;
                    if c.event_time < since || c.event_time > until {
                        continue;
                    }
                    if let Some((a, r)) = scope
                        && (c.account != a || c.region != r)
                    {
                        continue;
                    }
                    let count = per_scope
                        .entry((c.account.clone(), c.region.clone()))
                        .or_default();
                    if *count >= self.cfg.max_per_scope {
                        continue;
                    }
                    *count += 1;
                    out.push(c);
                }
                match resp.last_evaluated_key() {
                    Some(k) if !k.is_empty() && out.len() < limit => start = Some(k.clone()),
                    _ => break,
                }
            }
            bucket -= 1;
        }
        sort_newest_first(&mut out);
        out.truncate(limit);
        Ok(out)
    }
}
