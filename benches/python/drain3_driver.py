#!/usr/bin/env python3
"""Drain3 side of the template-mining comparison (benches/compare-templates).

Runs Drain3's ``TemplateMiner`` (PyPI ``drain3``, pinned in requirements-drain3.txt) over the
``Content`` column of every Loghub 2k data set (``<dir>/<D>/<D>_2k.log_structured.csv``), the
same lines the Rust side (benches/examples/compare_templates.rs) reads, and writes one JSON
object with, per data set, the cluster id of every line (in file order) and the time of the
``add_log_message`` loop.

Configuration: ``TemplateMinerConfig()`` defaults (Drain ``sim_th`` 0.4, ``depth`` 4,
``max_children`` 100, ``max_clusters`` None, no extra delimiters, numeric tokens
parametrized, no persistence, profiling off) plus the masking of Drain3's own
``examples/drain3.ini`` (its ``[MASKING]`` section, verbatim, in ``MASKING`` below):
colon-separated hex ids (``ID``), IPv4 addresses (``IP``), runs of three or more 6+-digit
lowercase hex words (``SEQ``), runs of four or more 4-digit uppercase hex words (``SEQ``),
``0x`` hex numbers (``HEX``), signed decimal integers (``NUM``) and the quoted argument after
``executed cmd `` (``CMD``), with ``mask_prefix`` ``<:`` and ``mask_suffix`` ``:>``. The
other sections of that file (``[DRAIN]`` ``sim_th``/``depth``/``max_children`` equal the
defaults; its ``max_clusters = 1024`` and ``extra_delimiters = ["_"]`` are not defaults, so
they are not applied; snapshots and profiling are off).

Timing: each repetition builds a fresh miner per data set (outside the timed region) and
times only the ``add_log_message`` loop over that data set's lines with
``time.perf_counter`` (and its CPU time with ``time.thread_time``); a repetition's time is
the sum over the data sets. Lines/s is the total line count over the median repetition time.

Output (stdout or ``--out FILE``)::

    {"side": "drain3", "drain3_version": "0.9.11", "python": "3.11.7", "repetitions": 5,
     "lines": 20000, "seconds": [..per repetition..], "cpu_seconds": [..per repetition..],
     "lines_per_second": <median>,
     "config": {...}, "datasets": [{"dataset": "Apache", "lines": 2000,
     "fnv1a64": "<hex of the lines' FNV-1a 64 hash>", "seconds": [..per repetition..],
     "cluster_ids": [1, 1, 2, ...]}, ...]}

``fnv1a64`` is FNV-1a (64 bit) over each line's UTF-8 bytes followed by a ``\\n``; the Rust
side checks it to be sure both sides mined the same lines. Cluster ids are the same in every
repetition (Drain3 is deterministic); the driver checks that too.

Usage: ``drain3_driver.py LOGHUB_DIR [--repetitions N] [--out FILE]``
"""

import argparse
import csv
import json
import logging
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

# Drain3 examples/drain3.ini, [MASKING] section (logpai/Drain3), verbatim.
MASKING = [
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)(([0-9a-f]{2,}:){3,}([0-9a-f]{2,}))((?=[^A-Za-z0-9])|$)", "mask_with": "ID"},
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)", "mask_with": "IP"},
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{6,} ?){3,}((?=[^A-Za-z0-9])|$)", "mask_with": "SEQ"},
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)([0-9A-F]{4} ?){4,}((?=[^A-Za-z0-9])|$)", "mask_with": "SEQ"},
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)(0x[a-f0-9A-F]+)((?=[^A-Za-z0-9])|$)", "mask_with": "HEX"},
    {"regex_pattern": r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)", "mask_with": "NUM"},
    {"regex_pattern": r"(?<=executed cmd )(\".+?\")", "mask_with": "CMD"},
]
MASK_PREFIX = "<:"
MASK_SUFFIX = ":>"

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def fnv1a64(lines):
    """FNV-1a 64 over each line's UTF-8 bytes followed by a newline, as 16 hex digits."""
    h = FNV_OFFSET
    for line in lines:
        for b in line.encode("utf-8") + b"\n":
            h = ((h ^ b) * FNV_PRIME) & MASK64
    return f"{h:016x}"


def datasets(root):
    """(name, structured CSV path) for every <D>/<D>_2k.log_structured.csv under root, sorted."""
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, f"{name}_2k.log_structured.csv")
        if os.path.isfile(path):
            out.append((name, path))
    if not out:
        sys.exit(f"no <D>/<D>_2k.log_structured.csv found under {root}")
    return out


def read_content(path):
    """The Content column of a Loghub structured CSV, in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "Content" not in reader.fieldnames:
            sys.exit(f"{path}: missing column Content")
        return [row["Content"] for row in reader]


def make_config():
    config = TemplateMinerConfig()
    config.masking_instructions = [MaskingInstruction(m["regex_pattern"], m["mask_with"]) for m in MASKING]
    config.mask_prefix = MASK_PREFIX
    config.mask_suffix = MASK_SUFFIX
    config.profiling_enabled = False
    return config


def mine(lines, config):
    """Cluster ids of `lines` with a fresh miner, and the seconds (wall clock, then CPU time of
    this thread) of the add loop alone."""
    miner = TemplateMiner(persistence_handler=None, config=config)
    add = miner.add_log_message
    ids = []
    append = ids.append
    start = time.perf_counter()
    cpu_start = time.thread_time()
    for line in lines:
        append(add(line)["cluster_id"])
    cpu = time.thread_time() - cpu_start
    elapsed = time.perf_counter() - start
    return ids, elapsed, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("loghub_dir")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args()
    if args.repetitions < 1:
        sys.exit("--repetitions must be at least 1")
    # Drain3 logs its configuration at INFO on creating a miner; keep stderr quiet.
    logging.basicConfig(level=logging.WARNING)

    config = make_config()
    data = [(name, read_content(path)) for name, path in datasets(args.loghub_dir)]
    reports = [
        {"dataset": name, "lines": len(lines), "fnv1a64": fnv1a64(lines), "seconds": [], "cluster_ids": None}
        for name, lines in data
    ]
    totals = []
    cpu_totals = []
    for _ in range(args.repetitions):
        total = 0.0
        cpu_total = 0.0
        for (name, lines), report in zip(data, reports):
            ids, secs, cpu = mine(lines, config)
            cpu_total += cpu
            if report["cluster_ids"] is None:
                report["cluster_ids"] = ids
            elif report["cluster_ids"] != ids:
                sys.exit(f"{name}: Drain3 cluster ids differ between repetitions")
            report["seconds"].append(secs)
            total += secs
        totals.append(total)
        cpu_totals.append(cpu_total)

    n_lines = sum(r["lines"] for r in reports)
    median = statistics.median(totals)
    out = {
        "side": "drain3",
        "drain3_version": version("drain3"),
        "python": platform.python_version(),
        "repetitions": args.repetitions,
        "lines": n_lines,
        "seconds": totals,
        "cpu_seconds": cpu_totals,
        "lines_per_second": n_lines / median if median > 0 else 0.0,
        "config": {
            "sim_th": config.drain_sim_th,
            "depth": config.drain_depth,
            "max_children": config.drain_max_children,
            "max_clusters": config.drain_max_clusters,
            "extra_delimiters": config.drain_extra_delimiters,
            "parametrize_numeric_tokens": config.parametrize_numeric_tokens,
            "mask_prefix": MASK_PREFIX,
            "mask_suffix": MASK_SUFFIX,
            "masking": MASKING,
        },
        "datasets": reports,
    }
    text = json.dumps(out)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
