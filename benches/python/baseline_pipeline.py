#!/usr/bin/env python3
"""Plain-Python baseline of aiops' CloudTrail path: change rules and a windowed z-score.

The approach of the system aiops replaces, written the way a Python engineer would: standard
library only (Python 3.11+: tomllib), one process, one thread. It reads the CloudTrail log
files that `aiops replay` reads (S3-delivered `{"Records":[...]}` files, gzip or plain,
named *.json or *.json.gz, found recursively under the given paths, in path order;
documents without `Records`, such as
digest files, are skipped; a file holding one record is read as one record), json-decodes
each file, and for each record:

1. Change rules: the rule set aiops uses, loaded with tomllib from `detect/rules/default.toml`
   (plus `[detect.change_rules]` of a pipeline.toml: extra or replacing rules,
   `disabled_rules`, `ignore_principals`, `ignore_aws_service_calls`), with aiops' semantics
   (detect/src/rules.rs): rules are looked up by (eventSource, eventName with Lambda's API
   version suffix removed); failed calls (non-blank errorCode), read-only calls, calls by AWS
   services (userIdentity.type AWSService, an amazonaws.com invokedBy or sourceIPAddress,
   service-linked roles) and calls by ignored principals never match; all conditions must
   hold; one finding per resource id, taken from the rule's paths (ARNs reduced to their last
   `/` or `:` segment), else from the record's `resources`, else "unknown".
2. Statistics: one count series per principal x eventSource x eventName (aiops' api_call
   series; the principal is the session issuer ARN, else the ARN, else invokedBy, else
   type:account), in tumbling event-time windows of `window_secs` (60 s). A window closes
   when the watermark (largest event time seen minus --lateness, default 900 s, because
   CloudTrail delivers files up to ~15 minutes late and out of order) passes its end; an event
   for a closed window is counted as late and dropped. At each close every known series is
   scored (empty windows count as zero): z = (count - mean) / max(sd, --sd-floor) over the
   series' trailing --history windows (default 60), running sums, flagged when the series has
   at least --min-history windows (default 5) of history, count >= --min-count (default 5,
   aiops' min_count) and z > --z (default 3).

Output on stdout: one JSON line per finding
  {"kind":"change","rule","event_id","resource_type","resource_id","event_name","principal","event_time"}
  {"kind":"anomaly","series","window_start","count","mean","sd","z"}
and last a summary line
  {"kind":"summary","events","files","skipped_documents","change_findings",
   "change_findings_by_rule","anomaly_findings","late_events","series","elapsed_s","events_per_s",...}
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import sys
import time
import tomllib
from collections import deque
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_RULES = os.path.join(REPO, "detect", "rules", "default.toml")
DEFAULT_CONFIG = os.path.join(REPO, "pipeline.toml")


# --------------------------------------------------------------------------------------------
# Change rules
# --------------------------------------------------------------------------------------------

API_VERSION = re.compile(r"(.*\D)\d{8}(?:v\d+)?")


def strip_api_version(name: str) -> str:
    """`UpdateFunctionCode20150331v2` -> `UpdateFunctionCode`: drops Lambda's API version
    suffix (exactly eight digits after a non-digit, optionally followed by `v<digits>`)."""
    m = API_VERSION.fullmatch(name)
    return m.group(1) if m else name


def glob_regex(pattern: str) -> re.Pattern:
    """`*` matches any run of characters; everything else is literal."""
    return re.compile(".*".join(re.escape(p) for p in pattern.split("*")) + r"\Z", re.S)


def load_rules(rules_path: str, config_path: str | None):
    """The effective rules and the change-rule settings of a pipeline.toml."""
    cfg = {}
    if config_path:
        with open(config_path, "rb") as f:
            cfg = tomllib.load(f).get("detect", {}).get("change_rules", {})
    rules = []
    if cfg.get("use_default_rules", True):
        with open(rules_path, "rb") as f:
            rules = tomllib.load(f)["rules"]
    for extra in cfg.get("rules", []):
        rules = [r for r in rules if r["name"] != extra["name"]] + [extra]
    disabled = set(cfg.get("disabled_rules", []))
    rules = [r for r in rules if r["name"] not in disabled]
    index = {}
    for r in rules:
        r["_paths"] = [p.split(".") for p in r["resource_id_paths"]]
        r["_conditions"] = [(c["path"].split("."), c["equals"]) for c in r.get("conditions", [])]
        for n in r["event_names"]:
            index.setdefault((r["event_source"], strip_api_version(n)), []).append(r)
    settings = {
        "enabled": cfg.get("enabled", True),
        "ignore_principals": [glob_regex(p) for p in cfg.get("ignore_principals", ["arn:aws:iam::*:role/aiops-recovery*"])],
        "ignore_aws_service_calls": cfg.get("ignore_aws_service_calls", True),
    }
    return rules, index, settings


def collect_path(value, segments, out):
    """Values at a dotted path; `key[*]` walks each element of an array."""
    if not segments:
        out.append(value)
        return
    first = segments[0]
    each = first.endswith("[*]")
    key = first[:-3] if each else first
    if not isinstance(value, dict) or key not in value:
        return
    nxt = value[key]
    if each and isinstance(nxt, list):
        for item in nxt[:1000]:
            collect_path(item, segments[1:], out)
    else:
        collect_path(nxt, segments[1:], out)


def json_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def scalar_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v or None
    if isinstance(v, (int, float)):
        return str(v)
    return None


def id_from_arn(s: str) -> str:
    return re.split(r"[/:]", s)[-1] if s.startswith("arn:") else s


def text(v):
    """A non-empty string field, else None (aiops treats empty strings as absent)."""
    return v if isinstance(v, str) and v else None


def principal_key(ui) -> str:
    if not isinstance(ui, dict):
        return "unknown"
    issuer = ((ui.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
    for k in (text(issuer), text(ui.get("arn")), text(ui.get("invokedBy"))):
        if k:
            return k
    t, a = text(ui.get("type")), text(ui.get("accountId"))
    if t:
        return f"{t}:{a}" if a else t
    return "unknown"


def is_aws_service_call(rec, ui) -> bool:
    if text(ui.get("type")) == "AWSService":
        return True
    by = text(ui.get("invokedBy"))
    if by and (by.endswith(".amazonaws.com") or by == "AWS Internal"):
        return True
    ip = text(rec.get("sourceIPAddress"))
    if ip and (ip.endswith(".amazonaws.com") or ip == "AWS Internal"):
        return True
    issuer = ((ui.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
    for a in (text(ui.get("arn")), text(issuer)):
        if a and (":role/aws-service-role/" in a or "assumed-role/AWSServiceRoleFor" in a):
            return True
    return False


def resource_ids(rule, rec):
    ids = []
    for segs in rule["_paths"]:
        vals = []
        collect_path(rec, segs, vals)
        for v in vals:
            t = scalar_text(v)
            if t is not None:
                i = id_from_arn(t)
                if i not in ids:
                    ids.append(i)
        if ids:
            return ids
    res = rec.get("resources")
    if isinstance(res, list):
        for r in res:
            if isinstance(r, dict):
                arn = text(r.get("ARN"))
                if arn is None and text(r.get("type")) is None:
                    continue
            elif isinstance(r, str):
                arn = text(r)
            else:
                continue
            if arn is None:
                continue
            last = re.split(r"[/:]", arn)[-1]
            i = id_from_arn(last or arn)
            if i not in ids:
                ids.append(i)
    return ids or ["unknown"]


def evaluate(rec, index, settings, skipped):
    """Change findings (rule, resource id) for one record; counts why a candidate was skipped."""
    if not settings["enabled"]:
        return []
    candidates = index.get((rec.get("eventSource"), strip_api_version(rec.get("eventName") or "")))
    if not candidates:
        return []
    code = rec.get("errorCode")
    if isinstance(code, str) and code.strip():
        skipped["failed_call"] += 1
        return []
    ro = rec.get("readOnly")
    if ro is True or (isinstance(ro, str) and ro.lower() == "true"):
        skipped["read_only"] += 1
        return []
    ui = rec.get("userIdentity") or {}
    if settings["ignore_aws_service_calls"] and is_aws_service_call(rec, ui):
        skipped["aws_service"] += 1
        return []
    issuer = ((ui.get("sessionContext") or {}).get("sessionIssuer") or {}).get("arn")
    arns = [a for a in (text(ui.get("arn")), text(issuer)) if a]
    if any(p.match(a) for p in settings["ignore_principals"] for a in arns):
        skipped["ignored_principal"] += 1
        return []
    out = []
    condition_false = False
    for rule in candidates:
        ok = True
        for segs, expected in rule["_conditions"]:
            vals = []
            collect_path(rec, segs, vals)
            if not any(json_equal(v, expected) for v in vals):
                ok = False
                break
        if not ok:
            condition_false = True
            continue
        for rid in resource_ids(rule, rec):
            out.append((rule, rid))
    if not out and condition_false:
        skipped["condition_false"] += 1
    return out


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def input_files(paths):
    """CloudTrail files (`*.json`, `*.json.gz`) under `paths`, recursively, in path order;
    hidden names skipped. A path naming a file is read whatever its name."""
    out = []
    for p in paths:
        if os.path.isfile(p):
            out.append(p)
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.extend(os.path.join(root, f) for f in sorted(files)
                       if not f.startswith(".") and f.endswith((".json", ".json.gz")))
    return sorted(out)


def read_json(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


# --------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------

def run(paths, args, out) -> dict:
    rules, index, settings = load_rules(args.rules, args.config)
    window = args.window_secs
    if args.config:
        with open(args.config, "rb") as f:
            window = tomllib.load(f).get("detect", {}).get("statistics", {}).get("window_secs", window)
    emit = out.write
    started = time.perf_counter()

    events = 0
    files = 0
    skipped_documents = 0
    late = 0
    change_by_rule = {}
    skipped = {"failed_call": 0, "read_only": 0, "aws_service": 0, "ignored_principal": 0, "condition_false": 0}
    anomalies = 0

    open_windows = {}        # window start (s) -> {series: count}
    series = {}              # series -> [deque of counts, sum, sum of squares]
    next_close = None        # start of the oldest window not yet closed
    max_time = None

    empty_run = 0            # consecutive closed windows without any event

    def close(w):
        nonlocal anomalies, empty_run
        counts = open_windows.pop(w, {})
        empty_run = 0 if counts else empty_run + 1
        for key in counts:
            if key not in series:
                series[key] = [deque(maxlen=args.history), 0, 0]
        for key, st in series.items():
            c = counts.get(key, 0)
            hist, s, ss = st
            n = len(hist)
            if n >= args.min_history and c >= args.min_count:
                mean = s / n
                sd = max(math.sqrt(max(ss / n - mean * mean, 0.0)), args.sd_floor)
                z = (c - mean) / sd
                if z > args.z:
                    anomalies += 1
                    emit(json.dumps({"kind": "anomaly", "series": key, "window_start": w, "count": c,
                                     "mean": round(mean, 4), "sd": round(sd, 4), "z": round(z, 3)}) + "\n")
            if n == hist.maxlen:
                old = hist[0]
                s -= old
                ss -= old * old
            hist.append(c)
            st[1] = s + c
            st[2] = ss + c * c

    def close_until(w, limit):
        """Closes windows from `w` while they end at or before `limit`; returns the next."""
        while w + window <= limit:
            if empty_run >= args.history and w not in open_windows:
                # Every history is all zeros: empty windows change nothing until the next
                # window holding events (or the limit).
                last = int((limit - window) // window) * window + window
                w = min([last] + [k for k in open_windows if k > w])
                continue
            close(w)
            w += window
        return w

    for path in input_files(paths):
        files += 1
        doc = read_json(path)
        if isinstance(doc, dict) and "Records" in doc:
            records = doc["Records"]
        elif isinstance(doc, dict) and "eventName" in doc:
            records = [doc]             # a single-record file
        else:
            records = None
        if not isinstance(records, list):
            skipped_documents += 1      # digest files and anything else without Records
            continue
        for rec in records:
            events += 1
            when = datetime.fromisoformat(rec["eventTime"])
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            t = when.timestamp()

            for rule, rid in evaluate(rec, index, settings, skipped):
                change_by_rule[rule["name"]] = change_by_rule.get(rule["name"], 0) + 1
                emit(json.dumps({"kind": "change", "rule": rule["name"], "event_id": rec.get("eventID"),
                                 "resource_type": rule["resource_type"], "resource_id": rid,
                                 "event_name": rec.get("eventName"),
                                 "principal": principal_key(rec.get("userIdentity")),
                                 "event_time": rec.get("eventTime")}) + "\n")

            key = f"api_call:{principal_key(rec.get('userIdentity'))}:{rec['eventSource']}:{rec['eventName']}"
            w = int(t // window) * window
            if next_close is None:
                next_close = w
            if w < next_close:
                late += 1
                continue
            bucket = open_windows.get(w)
            if bucket is None:
                bucket = open_windows[w] = {}
            bucket[key] = bucket.get(key, 0) + 1
            if max_time is None or t > max_time:
                max_time = t
                watermark = max_time - args.lateness
                next_close = close_until(next_close, watermark)

    if next_close is not None and max_time is not None:
        close_until(next_close, max_time + window)      # end of input: close what is left

    elapsed = time.perf_counter() - started
    return {
        "kind": "summary",
        "events": events,
        "files": files,
        "skipped_documents": skipped_documents,
        "change_findings": sum(change_by_rule.values()),
        "change_findings_by_rule": dict(sorted(change_by_rule.items())),
        "change_rule_skips": skipped,
        "anomaly_findings": anomalies,
        "late_events": late,
        "series": len(series),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1) if elapsed > 0 else None,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Plain-Python change rules and windowed z-score over CloudTrail log files.")
    ap.add_argument("paths", nargs="+", help="CloudTrail log files or directories")
    ap.add_argument("--rules", default=DEFAULT_RULES, help="rule set TOML (default: detect/rules/default.toml)")
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help="pipeline.toml whose [detect.change_rules] and window_secs apply (default: the repo's)")
    ap.add_argument("--window-secs", type=int, default=60, help="window length when no config gives one")
    ap.add_argument("--lateness", type=float, default=900.0, help="allowed lateness in seconds (default 900)")
    ap.add_argument("--history", type=int, default=60, help="trailing windows of history per series (default 60)")
    ap.add_argument("--min-history", type=int, default=5, help="windows of history before scoring (default 5)")
    ap.add_argument("--min-count", type=int, default=5, help="smallest count that can be flagged (default 5)")
    ap.add_argument("--sd-floor", type=float, default=1.0, help="smallest standard deviation used (default 1)")
    ap.add_argument("--z", type=float, default=3.0, help="flag z above this (default 3)")
    ap.add_argument("--findings", help="write findings here instead of stdout")
    args = ap.parse_args(argv)
    if sys.version_info < (3, 11):
        ap.error("Python 3.11 or newer is needed (tomllib)")
    if args.findings:
        with open(args.findings, "w") as out:
            summary = run(args.paths, args, out)
    else:
        summary = run(args.paths, args, sys.stdout)
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
