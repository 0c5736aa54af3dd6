//! Reading a history table in event-time order, from a local directory or S3.
//!
//! The files of the table (`<root>/<table>/source=<s>/dt=YYYY-MM-DD/hour=HH/*.parquet`, DESIGN
//! §7) are listed, pruned by partition against the `[from, to)` range, and their footers read
//! (on S3 with a ranged GET of the object's tail). Every row group gets a lower bound of its
//! event times: the `event_time` column's minimum statistic, or else the start of its
//! partition hour. The merge is a k-way merge over row groups: row groups are opened in order
//! of their lower bound, each one's rows go into a min-heap keyed by
//! `(event_time, ingest_time, stream, shard, sequence number, sub-sequence number, file, row)`,
//! and a row leaves the heap only when no unopened row group can hold an earlier one. Memory
//! is bounded by the row groups whose time ranges overlap the merge front (the archive writes
//! row groups of at most `rows_per_row_group` rows in arrival order, so only a few overlap),
//! not by the size of the history. An S3 object is downloaded when its first row group is
//! needed and dropped when its last one was opened.

use crate::error::{Context, HistoryError, Result};
use crate::location::{AwsAccess, HistoryLocation};
use aiops_core::Event;
use aiops_ingest::archive::decode_raw_batch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;

const HOUR_US: i64 = 3_600_000_000;
/// Bytes fetched from the end of an S3 object to read its footer in one request.
const FOOTER_PREFETCH: usize = 64 * 1024;
/// Most objects listed under one table prefix.
const MAX_OBJECTS: usize = 2_000_000;

/// Where one file lives.
#[derive(Debug, Clone)]
enum FileLoc {
    Local(PathBuf),
    S3(String),
}

/// One file of the table.
#[derive(Debug, Clone)]
pub struct HistoryFile {
    loc: FileLoc,
    /// Start of its partition hour, microseconds since the Unix epoch, UTC.
    pub hour_start: i64,
    /// Size in bytes.
    pub size: u64,
}

impl HistoryFile {
    /// The path or S3 key, for messages.
    pub fn name(&self) -> String {
        match &self.loc {
            FileLoc::Local(p) => p.display().to_string(),
            FileLoc::S3(k) => k.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RowGroupRef {
    file: usize,
    index: usize,
    min_time: i64,
}

/// The sort key of a row (see the module documentation).
type RowKey = (i64, i64, String, String, u128, u64, usize, usize);

/// Where the bytes come from: the local file system, or S3 through the SDK (blocking on a
/// runtime owned here; never call from inside an async task).
pub struct Fetcher {
    s3: Option<(tokio::runtime::Runtime, aws_sdk_s3::Client, String)>,
}

impl Fetcher {
    /// A fetcher for `location`: for S3, loads the SDK configuration from the standard chain
    /// (`access` may set the region and endpoint; an endpoint override, or `AWS_ENDPOINT_URL`,
    /// selects path-style addressing).
    ///
    /// # Errors
    /// When the async runtime cannot start.
    pub fn new(location: &HistoryLocation, access: &AwsAccess) -> Result<Fetcher> {
        match location {
            HistoryLocation::Local(_) => Ok(Fetcher { s3: None }),
            HistoryLocation::S3 { bucket, .. } => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the async runtime")?;
                let endpoint = access.endpoint_url.as_deref();
                let sdk = rt.block_on(aiops_aws::sdk::load(access.region.as_deref(), endpoint));
                let path_style = aiops_aws::sdk::endpoint_overridden(endpoint);
                let client = aiops_aws::sdk::s3_client(&sdk, path_style);
                Ok(Fetcher {
                    s3: Some((rt, client, bucket.clone())),
                })
            }
        }
    }

    fn s3(&self) -> Result<&(tokio::runtime::Runtime, aws_sdk_s3::Client, String)> {
        self.s3
            .as_ref()
            .ok_or_else(|| HistoryError::Invalid("not an S3 location".into()))
    }

    fn get(&self, key: &str, range: Option<&str>) -> Result<Vec<u8>> {
        let (rt, client, bucket) = self.s3()?;
        Ok(rt.block_on(aiops_aws::objects::get_object(client, bucket, key, range))?)
    }

    fn list(&self, prefix: &str) -> Result<Vec<aiops_aws::objects::ListedObject>> {
        let (rt, client, bucket) = self.s3()?;
        Ok(rt.block_on(aiops_aws::objects::list_objects(
            client,
            bucket,
            prefix,
            MAX_OBJECTS,
        ))?)
    }

    fn metadata(&self, f: &HistoryFile) -> Result<ParquetMetaData> {
        match &f.loc {
            FileLoc::Local(p) => {
                let file = std::fs::File::open(p)
                    .with_context(|| format!("cannot open {}", p.display()))?;
                Ok(ParquetMetaDataReader::new().parse_and_finish(&file)?)
            }
            FileLoc::S3(key) => {
                let want = FOOTER_PREFETCH.min(usize::try_from(f.size).unwrap_or(usize::MAX));
                let tail = self.get(key, Some(&format!("bytes=-{want}")))?;
                let footer_at = tail.len().checked_sub(8).ok_or_else(|| {
                    HistoryError::Invalid(format!("{key}: shorter than a Parquet footer"))
                })?;
                let last8 = tail.get(footer_at..).unwrap_or_default();
                let len = FooterTail::try_from(last8)?.metadata_length();
                let body = match footer_at.checked_sub(len) {
                    Some(start) => tail.get(start..footer_at).unwrap_or_default().to_vec(),
                    None => {
                        let all = self.get(key, Some(&format!("bytes=-{}", len + 8)))?;
                        all.get(..len).unwrap_or_default().to_vec()
                    }
                };
                Ok(ParquetMetaDataReader::decode_metadata(&body)?)
            }
        }
    }
}

/// Parses `dt=YYYY-MM-DD` and `hour=HH` path components into the start of the hour (µs).
fn partition_start(dt: &str, hour: &str) -> Option<i64> {
    let t = aiops_core::time::parse_timestamp_micros(&format!("{dt}T00:00:00Z")).ok()?;
    let h: i64 = hour.parse().ok()?;
    (0..24).contains(&h).then(|| t + h * HOUR_US)
}

/// The partition hour start of a relative path `source=<s>/dt=<d>/hour=<h>/<file>`; `None`
/// when the path is not in the layout or is hidden (a file being written).
fn layout_hour(rel: &[&str]) -> Option<i64> {
    let [source, dt, hour, name] = rel else {
        return None;
    };
    if !source.starts_with("source=") || name.starts_with('.') || !name.ends_with(".parquet") {
        return None;
    }
    partition_start(dt.strip_prefix("dt=")?, hour.strip_prefix("hour=")?)
}

/// Lists the files of `table` at `location` whose partition hour overlaps `[from, to)`
/// (microseconds; `None` is unbounded), sorted by partition and name.
///
/// # Errors
/// When the directory or bucket cannot be listed.
pub fn list_files(
    location: &HistoryLocation,
    fetcher: &Fetcher,
    table: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<HistoryFile>> {
    let keep = |h: i64| from.is_none_or(|f| h + HOUR_US > f) && to.is_none_or(|t| h < t);
    let mut out = Vec::new();
    match location {
        HistoryLocation::Local(root) => {
            let dir = root.join(table);
            if !dir.is_dir() {
                return Err(HistoryError::Invalid(format!(
                    "no {table} table under {} (expected {}/source=.../dt=.../hour=.../*.parquet)",
                    root.display(),
                    dir.display()
                )));
            }
            for path in aiops_ingest::files::list_files(&dir) {
                let Ok(rel) = path.strip_prefix(&dir) else {
                    continue;
                };
                let parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                if let Some(h) = layout_hour(&refs)
                    && keep(h)
                {
                    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                    out.push(HistoryFile {
                        loc: FileLoc::Local(path),
                        hour_start: h,
                        size,
                    });
                }
            }
        }
        HistoryLocation::S3 { prefix, .. } => {
            let base = if prefix.is_empty() {
                format!("{table}/")
            } else {
                format!("{prefix}/{table}/")
            };
            for o in fetcher.list(&base)? {
                let rel: Vec<&str> = o.key.get(base.len()..).unwrap_or("").split('/').collect();
                if let Some(h) = layout_hour(&rel)
                    && keep(h)
                {
                    out.push(HistoryFile {
                        loc: FileLoc::S3(o.key.clone()),
                        hour_start: h,
                        size: o.size,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| {
        a.hour_start
            .cmp(&b.hour_start)
            .then(a.name().cmp(&b.name()))
    });
    Ok(out)
}

/// The smallest `event_time` of a row group from its statistics.
fn min_event_time(meta: &ParquetMetaData, rg: usize) -> Option<i64> {
    let schema = meta.file_metadata().schema_descr();
    let col = (0..schema.num_columns()).find(|&i| schema.column(i).name() == "event_time")?;
    match meta.row_group(rg).column(col).statistics()? {
        Statistics::Int64(s) => s.min_opt().copied(),
        _ => None,
    }
}

fn sequence_number(s: &str) -> u128 {
    s.parse().unwrap_or(u128::MAX)
}

/// A k-way merge of the `raw` table in event-time order (see the module documentation).
pub struct RawMerge {
    fetcher: Fetcher,
    files: Vec<HistoryFile>,
    groups: Vec<RowGroupRef>,
    next_group: usize,
    /// Row groups not yet opened, per file (an S3 body is dropped when it reaches 0).
    unopened: Vec<usize>,
    bodies: HashMap<usize, bytes::Bytes>,
    heap: BinaryHeap<Reverse<(RowKey, usize)>>,
    slots: Vec<Option<Event>>,
    free: Vec<usize>,
    from: Option<i64>,
    to: Option<i64>,
    total_rows: u64,
    /// Largest number of rows buffered at once.
    pub peak_buffered: usize,
    /// Rows read from files (before the time filter).
    pub rows_read: u64,
}

impl RawMerge {
    /// Opens the `raw` table at `location` for the event-time range `[from, to)` (µs, either
    /// end unbounded with `None`): lists the files and reads their footers.
    ///
    /// # Errors
    /// When listing or a footer fails.
    pub fn open(
        location: &HistoryLocation,
        access: &AwsAccess,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Self> {
        let fetcher = Fetcher::new(location, access)?;
        let files = list_files(location, &fetcher, "raw", from, to)?;
        let mut groups = Vec::new();
        let mut unopened = Vec::with_capacity(files.len());
        let mut total_rows = 0u64;
        for (fi, f) in files.iter().enumerate() {
            let meta = fetcher
                .metadata(f)
                .with_context(|| format!("cannot read the Parquet footer of {}", f.name()))?;
            unopened.push(meta.num_row_groups());
            for rg in 0..meta.num_row_groups() {
                total_rows += u64::try_from(meta.row_group(rg).num_rows()).unwrap_or(0);
                groups.push(RowGroupRef {
                    file: fi,
                    index: rg,
                    min_time: min_event_time(&meta, rg)
                        .unwrap_or(f.hour_start)
                        .max(f.hour_start),
                });
            }
        }
        groups.sort_by_key(|g| (g.min_time, g.file, g.index));
        Ok(RawMerge {
            fetcher,
            files,
            groups,
            next_group: 0,
            unopened,
            bodies: HashMap::new(),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            from,
            to,
            total_rows,
            peak_buffered: 0,
            rows_read: 0,
        })
    }

    /// Rows in the selected files (an upper bound of the events the merge yields).
    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    /// Files selected.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    fn open_group(&mut self, g: RowGroupRef) -> Result<()> {
        let Some(file) = self.files.get(g.file) else {
            return Ok(());
        };
        let events = match &file.loc {
            FileLoc::Local(p) => {
                let f = std::fs::File::open(p)
                    .with_context(|| format!("cannot open {}", p.display()))?;
                read_group(f, g.index).with_context(|| format!("reading {}", p.display()))?
            }
            FileLoc::S3(key) => {
                let body = match self.bodies.get(&g.file) {
                    Some(b) => b.clone(),
                    None => {
                        let b = bytes::Bytes::from(self.fetcher.get(key, None)?);
                        self.bodies.insert(g.file, b.clone());
                        b
                    }
                };
                read_group(body, g.index).with_context(|| format!("reading s3 object {key}"))?
            }
        };
        if let Some(n) = self.unopened.get_mut(g.file) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.bodies.remove(&g.file);
            }
        }
        self.rows_read += events.len() as u64;
        for (row, e) in events.into_iter().enumerate() {
            if self.from.is_some_and(|f| e.event_time < f)
                || self.to.is_some_and(|t| e.event_time >= t)
            {
                continue;
            }
            let key: RowKey = (
                e.event_time,
                e.ingest_time,
                e.position.stream.clone(),
                e.position.shard_id.clone(),
                sequence_number(&e.position.sequence_number),
                e.position.sub_sequence_number.unwrap_or(0),
                g.file,
                row,
            );
            let slot = match self.free.pop() {
                Some(s) => {
                    if let Some(x) = self.slots.get_mut(s) {
                        *x = Some(e);
                    }
                    s
                }
                None => {
                    self.slots.push(Some(e));
                    self.slots.len() - 1
                }
            };
            self.heap.push(Reverse((key, slot)));
        }
        self.peak_buffered = self.peak_buffered.max(self.heap.len());
        Ok(())
    }

    /// The next event in event-time order, `None` at the end.
    ///
    /// # Errors
    /// When a file cannot be read or decoded.
    pub fn next_event(&mut self) -> Result<Option<Event>> {
        loop {
            let front = self.heap.peek().map(|Reverse((k, _))| k.0);
            match self.groups.get(self.next_group).copied() {
                Some(g) if front.is_none_or(|t| g.min_time <= t) => {
                    self.next_group += 1;
                    self.open_group(g)?;
                }
                _ => break,
            }
        }
        let Some(Reverse((_, slot))) = self.heap.pop() else {
            return Ok(None);
        };
        let e = self.slots.get_mut(slot).and_then(Option::take);
        self.free.push(slot);
        Ok(e)
    }
}

fn read_group<T: parquet::file::reader::ChunkReader + 'static>(
    reader: T,
    index: usize,
) -> Result<Vec<Event>> {
    let rows = ParquetRecordBatchReaderBuilder::try_new(reader)?
        .with_row_groups(vec![index])
        .build()?;
    let mut out = Vec::new();
    for batch in rows {
        out.extend(decode_raw_batch(&batch?)?);
    }
    Ok(out)
}

/// Reads every row of `table` at `location` whose partition overlaps `[from, to)` with `f`
/// (one record batch at a time, files in partition order): for the small `findings` table.
///
/// # Errors
/// When a file cannot be listed, read or decoded by `f`.
pub fn for_each_batch(
    location: &HistoryLocation,
    access: &AwsAccess,
    table: &str,
    mut f: impl FnMut(&arrow_array::RecordBatch) -> Result<()>,
) -> Result<()> {
    let fetcher = Fetcher::new(location, access)?;
    for file in list_files(location, &fetcher, table, None, None)? {
        let batches: Vec<arrow_array::RecordBatch> = match &file.loc {
            FileLoc::Local(p) => ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p)?)?
                .build()?
                .collect::<Result<_, _>>()?,
            FileLoc::S3(key) => ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(
                fetcher.get(key, None)?,
            ))?
            .build()?
            .collect::<Result<_, _>>()?,
        };
        for b in &batches {
            f(b)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{EventBody, LogFields, Position};
    use aiops_ingest::archive::{ArchiveConfig, LocalArchive};

    fn ev(id: usize, t: i64, seq: usize) -> Event {
        Event {
            event_id: format!("e{id}"),
            event_time: t,
            ingest_time: 1,
            decode_warnings: Vec::new(),
            account: None,
            region: None,
            position: Position {
                stream: "s".into(),
                shard_id: "file".into(),
                sequence_number: seq.to_string(),
                sub_sequence_number: None,
            },
            body: EventBody::Logs(LogFields {
                log_group: "g".into(),
                log_stream: "x".into(),
                message: "m".into(),
                level: None,
            }),
        }
    }

    #[test]
    fn merges_out_of_order_files_into_event_time_order_with_bounded_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_714_564_800_000_000; // 2024-05-01T12:00:00Z
        let cfg = ArchiveConfig {
            rows_per_row_group: 10,
            max_rows_per_file: 50,
            ..ArchiveConfig::default()
        };
        let mut a = LocalArchive::new(dir.path(), cfg);
        // 3 hours, 300 events, arriving with a small disorder (pairs swapped).
        for (n, i) in (0..300i64).enumerate() {
            let j = if i % 2 == 0 { i + 1 } else { i - 1 };
            a.append(&ev(n, t0 + j * 36_000_000, n)).unwrap();
        }
        a.flush().unwrap();
        let loc = HistoryLocation::Local(dir.path().to_path_buf());
        let mut m = RawMerge::open(&loc, &AwsAccess::default(), None, None).unwrap();
        assert_eq!(m.total_rows(), 300);
        let mut times = Vec::new();
        while let Some(e) = m.next_event().unwrap() {
            times.push(e.event_time);
        }
        assert_eq!(times.len(), 300);
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        // Row groups of 10 rows overlap only their neighbours.
        assert!(m.peak_buffered <= 20, "{}", m.peak_buffered);
        // A range selects whole and partial partitions.
        let mut r = RawMerge::open(
            &loc,
            &AwsAccess::default(),
            Some(t0 + 3_600_000_000),
            Some(t0 + 3_600_000_000 + 360_000_000),
        )
        .unwrap();
        let mut k = 0;
        while r.next_event().unwrap().is_some() {
            k += 1;
        }
        assert_eq!(k, 10);
        assert_eq!(r.files(), 2);
    }

    #[test]
    fn layout_paths_are_recognised() {
        assert_eq!(
            layout_hour(&["source=logs", "dt=2024-05-01", "hour=12", "a.parquet"]),
            Some(1_714_564_800_000_000)
        );
        assert_eq!(
            layout_hour(&[
                "source=logs",
                "dt=2024-05-01",
                "hour=12",
                ".a.parquet.inprogress"
            ]),
            None
        );
        assert_eq!(
            layout_hour(&["source=logs", "dt=2024-05-01", "hour=24", "a.parquet"]),
            None
        );
        assert_eq!(layout_hour(&["x", "a.parquet"]), None);
    }
}
