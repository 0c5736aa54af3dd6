//! Reading CloudTrail log files (and any other input aiops decodes) straight from S3, for
//! `aiops replay s3://bucket/prefix [--from T] [--to T]`.
//!
//! **Listing by the trail's layout.** A trail delivers its log files under
//! `[<key prefix>/]AWSLogs/[<org id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/`, one folder
//! per day of delivery (CloudTrail User Guide, "Finding your CloudTrail log files"). The
//! listing walks that layout with the delimiter `/` (accounts, services, regions, years,
//! months, days) and lists the objects of only the days that can hold events of the event-time
//! range `[from, to)`: a file delivered at time `T` holds events of at most `T`, and of at
//! least `T` minus the delivery lag (CloudTrail delivers within about 5 minutes, not
//! guaranteed; [`DELIVERY_LAG_MICROS`] allows one hour). Within a day, an object whose file
//! name carries its delivery time (`<account>_CloudTrail_<region>_YYYYMMDDTHHmmZ_<id>.json.gz`)
//! is read only when that time is within the lag of the range. `CloudTrail-Insight/` is walked
//! as `CloudTrail/` is; `CloudTrail-Digest/` and other services' folders (`vpcflowlogs/`,
//! `elasticloadbalancing/`, ...) are not read.
//!
//! **Anything else** (a prefix that is not in a trail layout, or a folder of it that does not
//! look as expected) is listed whole and read; its events outside the range are dropped by the
//! pipeline, as for local files.
//!
//! **Reading**: objects are fetched with up to `concurrency` GETs in flight and handed over
//! in key order (so a replay from S3 sees the files in the order a replay of the same files
//! from disk does).

use crate::objects::{ListedObject, ObjectError, get_object, list_pages};
use aiops_ingest::manifest::EventTimeRange;
use std::collections::VecDeque;

/// GETs in flight by default.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// How long after an event CloudTrail may deliver the file holding it, as allowed for when
/// choosing the days and files to read: one hour, in microseconds.
pub const DELIVERY_LAG_MICROS: i64 = 3_600_000_000;
/// Most objects and prefixes one listing may return.
pub const MAX_OBJECTS: usize = 2_000_000;
/// The service folders under an account that hold CloudTrail events, walked by date.
pub const TRAIL_SERVICES: [&str; 2] = ["CloudTrail", "CloudTrail-Insight"];

const DAY_US: i64 = 86_400_000_000;

/// Errors of reading inputs from S3.
#[derive(Debug, thiserror::Error)]
pub enum S3InputError {
    /// The async runtime of the blocking facade could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A listing failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
}

/// What the listing found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrailListing {
    /// The objects to read, in key order.
    pub objects: Vec<ListedObject>,
    /// Objects the listings returned (before the choice by delivery time).
    pub listed: u64,
    /// ListObjectsV2 requests made.
    pub list_requests: u64,
    /// The day folders listed (`.../YYYY/MM/DD/`), in key order.
    pub day_prefixes: Vec<String>,
    /// The prefixes listed whole because they are not in a trail layout.
    pub whole_prefixes: Vec<String>,
    /// Folders not read: digest files, other services' logs.
    pub skipped_prefixes: Vec<String>,
}

/// Where a folder is in the trail layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Above `AWSLogs/`: its `AWSLogs/` child is walked, other children are listed whole.
    Above,
    /// `AWSLogs/` or `AWSLogs/<org id>/`: children are accounts (or an organization id).
    Accounts,
    /// `<account>/`: children are services.
    Services,
    /// `CloudTrail/`: children are regions.
    Regions,
    /// `<region>/`: children are years.
    Years,
    /// `YYYY/`: children are months.
    Months { year: i64 },
    /// `YYYY/MM/`: children are days.
    Days { year: i64, month: u32 },
    /// `YYYY/MM/DD/`: every object under it (start of the day, µs).
    Day { start: i64 },
    /// Not in the layout: every object under it.
    Whole,
    /// Not read: not CloudTrail events (digest files, other services' logs).
    Skip,
    /// Not read: delivered when no event of the range can be in it.
    OutOfRange,
}

fn digits(s: &str, n: usize) -> Option<i64> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_account(s: &str) -> bool {
    digits(s, 12).is_some()
}

fn is_org_id(s: &str) -> bool {
    s.strip_prefix("o-").is_some_and(|r| {
        !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn month_start(year: i64, month: u32) -> i64 {
    aiops_core::time::days_from_civil(year, month, 1) * DAY_US
}

fn next_month_start(year: i64, month: u32) -> i64 {
    if month >= 12 {
        month_start(year + 1, 1)
    } else {
        month_start(year, month + 1)
    }
}

/// Whether files delivered in `[start, end)` (µs) can hold events of `range`.
fn delivered_may_hold(range: &EventTimeRange, start: i64, end: i64) -> bool {
    range.from.is_none_or(|f| end > f)
        && range
            .to
            .is_none_or(|t| start.saturating_sub(DELIVERY_LAG_MICROS) < t)
}

/// The level of the child folder `name` (without `/`) of a folder at `parent`.
fn child_level(parent: Level, name: &str, range: &EventTimeRange) -> Level {
    match parent {
        Level::Above if name == "AWSLogs" => Level::Accounts,
        Level::Above => Level::Whole,
        Level::Accounts if is_org_id(name) => Level::Accounts,
        Level::Accounts if is_account(name) => Level::Services,
        Level::Accounts => Level::Whole,
        Level::Services if TRAIL_SERVICES.contains(&name) => Level::Regions,
        Level::Services => Level::Skip,
        Level::Regions => Level::Years,
        Level::Years => match digits(name, 4) {
            Some(year)
                if delivered_may_hold(range, month_start(year, 1), month_start(year + 1, 1)) =>
            {
                Level::Months { year }
            }
            Some(_) => Level::OutOfRange,
            None => Level::Whole,
        },
        Level::Months { year } => match digits(name, 2).and_then(|m| u32::try_from(m).ok()) {
            Some(month @ 1..=12) => {
                if delivered_may_hold(
                    range,
                    month_start(year, month),
                    next_month_start(year, month),
                ) {
                    Level::Days { year, month }
                } else {
                    Level::OutOfRange
                }
            }
            _ => Level::Whole,
        },
        Level::Days { year, month } => match digits(name, 2).and_then(|d| u32::try_from(d).ok()) {
            Some(day @ 1..=31) => {
                let start = aiops_core::time::days_from_civil(year, month, day) * DAY_US;
                if delivered_may_hold(range, start, start + DAY_US) {
                    Level::Day { start }
                } else {
                    Level::OutOfRange
                }
            }
            _ => Level::Whole,
        },
        Level::Day { .. } | Level::Whole | Level::Skip | Level::OutOfRange => parent,
    }
}

/// The level of folder `prefix` (empty, or ending with `/`) given by the user, by walking its
/// segments from the top.
fn level_of(prefix: &str, range: &EventTimeRange) -> Level {
    let mut level = Level::Above;
    for seg in prefix.split('/').filter(|s| !s.is_empty()) {
        level = match level {
            // Until `AWSLogs` is met, anything goes (a trail's own key prefix).
            Level::Above if seg != "AWSLogs" => Level::Above,
            Level::Skip => Level::Whole,
            other => child_level(other, seg, range),
        };
    }
    match level {
        // Named explicitly: read it whole rather than nothing.
        Level::Skip => Level::Whole,
        other => other,
    }
}

/// The delivery time in a CloudTrail file name (`..._YYYYMMDDTHHmmZ_...`), µs.
fn name_time(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    name.split(['_', '.']).find_map(|part| {
        let b = part.as_bytes();
        if b.len() != 14 || b[8] != b'T' || b[13] != b'Z' {
            return None;
        }
        let date = part.get(..8)?;
        let time = part.get(9..13)?;
        let y = digits(date.get(..4)?, 4)?;
        let m = u32::try_from(digits(date.get(4..6)?, 2)?).ok()?;
        let d = u32::try_from(digits(date.get(6..8)?, 2)?).ok()?;
        let hh = digits(time.get(..2)?, 2)?;
        let mm = digits(time.get(2..4)?, 2)?;
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 {
            return None;
        }
        Some(aiops_core::time::days_from_civil(y, m, d) * DAY_US + (hh * 60 + mm) * 60_000_000)
    })
}

/// Whether object `key` is read for `range`: its name's delivery time, when it has one, is
/// within the delivery lag of the range. Folder markers (keys ending with `/`) never are.
fn worth_reading(key: &str, range: &EventTimeRange) -> bool {
    if key.ends_with('/') {
        return false;
    }
    match name_time(key) {
        Some(t) => {
            range
                .from
                .is_none_or(|f| t.saturating_add(DELIVERY_LAG_MICROS) > f)
                && range
                    .to
                    .is_none_or(|e| t.saturating_sub(DELIVERY_LAG_MICROS) < e)
        }
        None => true,
    }
}

/// Lists the objects to read under `prefix` (a folder; a trailing `/` is implied) in
/// `bucket` for the event-time range `range`, by the trail layout where there is one (see
/// the module documentation). When nothing is found under the folder, `prefix` is listed as
/// a plain key prefix (so a single object's key works too).
///
/// # Errors
/// [`ObjectError::Read`] when a listing fails or returns more than [`MAX_OBJECTS`] entries.
pub async fn list_trail_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    range: &EventTimeRange,
) -> Result<TrailListing, ObjectError> {
    let trimmed = prefix.trim_start_matches('/');
    let folder = if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_string()
    } else {
        format!("{trimmed}/")
    };
    let mut out = TrailListing::default();
    let mut work = vec![(folder.clone(), level_of(&folder, range))];
    while let Some((p, level)) = work.pop() {
        match level {
            Level::Skip => {
                tracing::info!(prefix = %p, "not read: not CloudTrail events");
                out.skipped_prefixes.push(p);
            }
            Level::OutOfRange => {}
            Level::Day { .. } | Level::Whole => {
                let listing = list_pages(client, bucket, &p, None, MAX_OBJECTS).await?;
                out.list_requests += listing.requests;
                take(&mut out, listing.objects, range);
                if matches!(level, Level::Day { .. }) {
                    out.day_prefixes.push(p);
                } else {
                    out.whole_prefixes.push(p);
                }
            }
            _ => {
                let listing = list_pages(client, bucket, &p, Some("/"), MAX_OBJECTS).await?;
                out.list_requests += listing.requests;
                take(&mut out, listing.objects, range);
                for child in listing.prefixes {
                    let name = child
                        .strip_prefix(p.as_str())
                        .unwrap_or(&child)
                        .trim_end_matches('/');
                    let next = child_level(level, name, range);
                    work.push((child, next));
                }
            }
        }
    }
    if out.listed == 0 && folder != trimmed {
        let listing = list_pages(client, bucket, trimmed, None, MAX_OBJECTS).await?;
        out.list_requests += listing.requests;
        take(&mut out, listing.objects, range);
        out.whole_prefixes.push(trimmed.to_string());
    }
    out.objects.sort_by(|a, b| a.key.cmp(&b.key));
    out.objects.dedup_by(|a, b| a.key == b.key);
    out.day_prefixes.sort();
    out.whole_prefixes.sort();
    out.skipped_prefixes.sort();
    Ok(out)
}

fn take(out: &mut TrailListing, objects: Vec<ListedObject>, range: &EventTimeRange) {
    out.listed += objects.len() as u64;
    out.objects
        .extend(objects.into_iter().filter(|o| worth_reading(&o.key, range)));
}

/// Fetches `objects` of `bucket` with up to `concurrency` GETs in flight and hands each to
/// `deliver` in the order given, with its bytes or why it could not be read (an object larger
/// than `max_bytes` is not downloaded). Stops early when `deliver` returns false.
pub async fn fetch_in_order(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    objects: &[ListedObject],
    concurrency: usize,
    max_bytes: u64,
    mut deliver: impl FnMut(&ListedObject, Result<Vec<u8>, String>) -> bool,
) {
    enum Pending {
        Ready(Result<Vec<u8>, String>),
        Task(tokio::task::JoinHandle<Result<Vec<u8>, String>>),
    }
    let too_big = |size: u64| {
        format!("object of {size} bytes exceeds the {max_bytes}-byte limit (ingest.max_file_bytes)")
    };
    let mut in_flight: VecDeque<(usize, Pending)> = VecDeque::new();
    let mut next = 0;
    loop {
        while in_flight.len() < concurrency.max(1) {
            let Some(o) = objects.get(next) else {
                break;
            };
            let pending = if o.size > max_bytes {
                Pending::Ready(Err(too_big(o.size)))
            } else {
                let (client, bucket, key) = (client.clone(), bucket.to_string(), o.key.clone());
                Pending::Task(tokio::spawn(async move {
                    get_object(&client, &bucket, &key, None)
                        .await
                        .map_err(|e| e.to_string())
                }))
            };
            in_flight.push_back((next, pending));
            next += 1;
        }
        let Some((i, pending)) = in_flight.pop_front() else {
            break;
        };
        let result = match pending {
            Pending::Ready(r) => r,
            Pending::Task(handle) => match handle.await {
                Ok(Ok(data)) if data.len() as u64 > max_bytes => Err(too_big(data.len() as u64)),
                Ok(r) => r,
                Err(e) => Err(format!("download task failed: {e}")),
            },
        };
        let Some(o) = objects.get(i) else {
            break;
        };
        if !deliver(o, result) {
            break;
        }
    }
    for (_, pending) in in_flight {
        if let Pending::Task(handle) = pending {
            handle.abort();
        }
    }
}

/// A blocking facade for code off any async runtime (the replay's feed thread): an S3 client
/// from the standard credential chain and a runtime of its own.
pub struct S3Inputs {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3Inputs {
    /// Loads the SDK configuration (`region` and `endpoint_url` override the chain's; an
    /// endpoint override, or `AWS_ENDPOINT_URL`, selects path-style addressing, as emulators
    /// need).
    ///
    /// # Errors
    /// [`S3InputError::Runtime`] when the runtime cannot start.
    pub fn connect(
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> Result<S3Inputs, S3InputError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(S3InputError::Runtime)?;
        let sdk = rt.block_on(crate::sdk::load(region, endpoint_url));
        let client = crate::sdk::s3_client(&sdk, crate::sdk::endpoint_overridden(endpoint_url));
        Ok(S3Inputs { rt, client })
    }

    /// [`list_trail_objects`], blocking.
    ///
    /// # Errors
    /// As [`list_trail_objects`].
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        range: &EventTimeRange,
    ) -> Result<TrailListing, S3InputError> {
        Ok(self
            .rt
            .block_on(list_trail_objects(&self.client, bucket, prefix, range))?)
    }

    /// [`fetch_in_order`], blocking (`deliver` runs on this thread and may block: the
    /// downloads in flight wait meanwhile).
    pub fn fetch(
        &self,
        bucket: &str,
        objects: &[ListedObject],
        concurrency: usize,
        max_bytes: u64,
        deliver: impl FnMut(&ListedObject, Result<Vec<u8>, String>) -> bool,
    ) {
        self.rt.block_on(fetch_in_order(
            &self.client,
            bucket,
            objects,
            concurrency,
            max_bytes,
            deliver,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> i64 {
        aiops_core::time::parse_timestamp_micros(text).unwrap()
    }

    fn range(from: &str, to: &str) -> EventTimeRange {
        EventTimeRange {
            from: Some(t(from)),
            to: Some(t(to)),
        }
    }

    #[test]
    fn folders_are_placed_in_the_trail_layout() {
        let all = EventTimeRange::default();
        assert_eq!(level_of("", &all), Level::Above);
        assert_eq!(level_of("trail-prefix/", &all), Level::Above);
        assert_eq!(level_of("AWSLogs/", &all), Level::Accounts);
        assert_eq!(level_of("x/AWSLogs/o-ab12cd34ef/", &all), Level::Accounts);
        assert_eq!(level_of("AWSLogs/123456789012/", &all), Level::Services);
        assert_eq!(
            level_of("AWSLogs/o-ab12/123456789012/CloudTrail/", &all),
            Level::Regions
        );
        assert_eq!(
            level_of("AWSLogs/123456789012/CloudTrail/us-east-1/", &all),
            Level::Years
        );
        assert_eq!(
            level_of(
                "AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2024/05/",
                &all
            ),
            Level::Days {
                year: 2024,
                month: 5
            }
        );
        assert_eq!(
            level_of(
                "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/02/",
                &all
            ),
            Level::Day {
                start: t("2024-05-02T00:00:00Z")
            }
        );
        // Not the layout: read whole, even a service folder named explicitly.
        assert_eq!(level_of("AWSLogs/exports/", &all), Level::Whole);
        assert_eq!(
            level_of("AWSLogs/123456789012/vpcflowlogs/", &all),
            Level::Whole
        );
        assert_eq!(
            level_of("AWSLogs/123456789012/CloudTrail/us-east-1/latest/", &all),
            Level::Whole
        );
        assert_eq!(
            child_level(Level::Services, "CloudTrail-Digest", &all),
            Level::Skip
        );
        assert_eq!(child_level(Level::Above, "exports", &all), Level::Whole);
    }

    #[test]
    fn only_days_that_can_hold_events_of_the_range_are_listed() {
        let r = range("2024-05-02T00:00:00Z", "2024-05-04T00:00:00Z");
        let days = Level::Days {
            year: 2024,
            month: 5,
        };
        let day = |d: &str| child_level(days, d, &r);
        assert_eq!(
            day("01"),
            Level::OutOfRange,
            "delivered before the range starts"
        );
        assert_eq!(
            day("02"),
            Level::Day {
                start: t("2024-05-02T00:00:00Z")
            }
        );
        assert_eq!(
            day("03"),
            Level::Day {
                start: t("2024-05-03T00:00:00Z")
            }
        );
        // Files delivered early on the 4th may hold events of the 3rd's last hour.
        assert_eq!(
            day("04"),
            Level::Day {
                start: t("2024-05-04T00:00:00Z")
            }
        );
        assert_eq!(day("05"), Level::OutOfRange);
        assert_eq!(day("xx"), Level::Whole);
        let months = Level::Months { year: 2024 };
        assert_eq!(child_level(months, "04", &r), Level::OutOfRange);
        assert_eq!(
            child_level(months, "05", &r),
            Level::Days {
                year: 2024,
                month: 5
            }
        );
        assert_eq!(child_level(months, "06", &r), Level::OutOfRange);
        assert_eq!(child_level(Level::Years, "2023", &r), Level::OutOfRange);
        assert_eq!(
            child_level(Level::Years, "2024", &r),
            Level::Months { year: 2024 }
        );
        assert_eq!(
            child_level(
                Level::Days {
                    year: 2024,
                    month: 12
                },
                "31",
                &EventTimeRange::default()
            ),
            Level::Day {
                start: t("2024-12-31T00:00:00Z")
            }
        );
    }

    #[test]
    fn files_are_chosen_by_the_delivery_time_in_their_name() {
        let key = |time: &str| {
            format!(
                "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/04/123456789012_CloudTrail_us-east-1_{time}_AbCd.json.gz"
            )
        };
        assert_eq!(
            name_time(&key("20240504T0005Z")),
            Some(t("2024-05-04T00:05:00Z"))
        );
        assert_eq!(name_time("x/other-name.json"), None);
        assert_eq!(
            name_time("x/123_CloudTrail_us-east-1_20241304T0005Z_a.json.gz"),
            None
        );
        let r = range("2024-05-02T00:00:00Z", "2024-05-04T00:00:00Z");
        assert!(
            worth_reading(&key("20240504T0005Z"), &r),
            "within the lag of the end"
        );
        assert!(!worth_reading(&key("20240504T1205Z"), &r));
        assert!(!worth_reading(&key("20240501T2255Z"), &r));
        assert!(worth_reading(&key("20240501T2305Z"), &r));
        assert!(worth_reading("AWSLogs/exports/anything.json", &r));
        assert!(!worth_reading("AWSLogs/exports/", &r));
    }
}
