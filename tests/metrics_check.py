#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
#
# Checks a choria-adapterd /metrics text with the Prometheus client's own
# parser, plus the rules that parser lets pass (HELP and TYPE for every
# family, families in one piece, no repeated series, histogram buckets
# that add up), and that every family is one choria-adapterd documents,
# with its type and labels. Prints each sample as `name{labels} value`,
# labels sorted, for the C tests to look values up; exits 1 with the
# reasons on standard error when the text is wrong.
#
# Usage: metrics_check.py FILE   (- for standard input)

import math
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

ADAPTER = {"name", "role", "identity"}
GAUGE = {"name", "identity"}
REASON = {"name", "identity", "reason"}
FAMILIES = {
    "choria_adapterd_build_info": ("gauge", {"version"}),
    "choria_adapterd_config_last_reload_successful": ("gauge", {"identity"}),
    "choria_adapterd_config_last_reload_success_timestamp_seconds": ("gauge", {"identity"}),
    # Written choria_adapterd_config_reloads_total, as Prometheus' own.
    "choria_adapterd_config_reloads": ("counter", {"identity", "result"}),
    "choria_adapterd_metrics_connections": ("gauge", set()),
    "choria_adapterd_metrics_connections_refused": ("counter", set()),
    "choria_adapterd_metrics_requests_timed_out": ("counter", set()),
    "choria_adapter_received_msgs": ("counter", ADAPTER),
    "choria_adapter_published_msgs": ("counter", ADAPTER),
    "choria_adapter_errors": ("counter", ADAPTER),
    "choria_adapter_bytes": ("counter", ADAPTER),
    "choria_adapter_time": ("histogram", ADAPTER),
    "choria_adapter_queue_length": ("gauge", GAUGE),
    "choria_adapter_queue_capacity": ("gauge", GAUGE),
    "choria_adapter_in_flight_msgs": ("gauge", GAUGE),
    "choria_adapter_rejected_msgs": ("counter", REASON),
    "choria_adapter_dropped_msgs": ("counter", REASON),
    "choria_adapter_lost_msgs": ("counter", REASON),
    "choria_adapter_publish_retries": ("counter", GAUGE),
    "choria_adapter_connection_up": ("gauge", {"name", "role", "identity", "connection"}),
}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count")}
# Counters whose samples carry the _total suffix in the text.
TOTAL_SUFFIXED = {"choria_adapterd_config_reloads"}
SAMPLE_NAME = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]")


def family_of(sample_name, declared):
    if sample_name in declared:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample_name[: -len(suffix)]
        if sample_name.endswith(suffix) and declared.get(base) == "histogram":
            return base
    return None


def check_raw(text, errors):
    """The rules of the format that the parser does not enforce."""
    if text and not text.endswith("\n"):
        errors.append("the text does not end with a line feed")
    declared, helped, finished = {}, set(), set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            helped.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4:
                errors.append(f"line {n}: malformed TYPE line")
                continue
            name, kind = parts[2], parts[3]
            if name in declared:
                errors.append(f"line {n}: {name} is declared twice")
            if name not in helped:
                errors.append(f"line {n}: {name} has no HELP before its TYPE")
            declared[name] = kind
            if current:
                finished.add(current)
            current = name
            continue
        if line.startswith("#") or not line.strip():
            errors.append(f"line {n}: unexpected line {line!r}")
            continue
        m = SAMPLE_NAME.match(line)
        fam = family_of(m.group(1), declared) if m else None
        if fam is None:
            errors.append(f"line {n}: sample without a TYPE: {line!r}")
        elif fam != current or fam in finished:
            errors.append(f"line {n}: {fam} is split by another family")


def fmt(value):
    if value == math.inf:
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(value)


def escape(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series(name, labels):
    inner = ",".join(f'{k}="{escape(labels[k])}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def check_histogram(fam, errors):
    groups = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        g = groups.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if s.name.endswith("_bucket"):
            g["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_sum"):
            g["sum"] = s.value
        elif s.name.endswith("_count"):
            g["count"] = s.value
    for key, g in groups.items():
        where = f"{fam.name}{dict(key)}"
        bounds = [b for b, _ in g["buckets"]]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            errors.append(f"{where}: buckets are not in increasing order")
        if not bounds or bounds[-1] != math.inf:
            errors.append(f"{where}: no +Inf bucket")
        values = [v for _, v in g["buckets"]]
        if values != sorted(values):
            errors.append(f"{where}: bucket counts are not cumulative")
        if g["sum"] is None or g["count"] is None:
            errors.append(f"{where}: _sum or _count is missing")
        elif values and values[-1] != g["count"]:
            errors.append(f"{where}: +Inf bucket {values[-1]} != _count {g['count']}")
        elif g["sum"] < 0:
            errors.append(f"{where}: negative _sum")


def text_has_sample(text, name):
    return re.search("^" + re.escape(name) + "[{ ]", text, re.MULTILINE) is not None


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    errors = []
    check_raw(text, errors)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises several kinds
        print(f"the Prometheus parser refused the text: {e!r}", file=sys.stderr)
        return 1
    out, seen = [], set()
    for fam in families:
        want = FAMILIES.get(fam.name)
        if want is None:
            errors.append(f"{fam.name}: not a documented choria-adapterd metric")
            continue
        if fam.type != want[0]:
            errors.append(f"{fam.name}: type {fam.type}, expected {want[0]}")
        for s in fam.samples:
            names = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            if names != want[1]:
                errors.append(f"{s.name}: labels {sorted(names)}, expected {sorted(want[1])}")
            if fam.type == "counter" and s.value < 0:
                errors.append(f"{s.name}: a counter below zero")
            # The parser names counter samples NAME_total; ours carry the
            # family's own name, as the Go adapter's do, but for those
            # named as Prometheus' own.
            name = fam.name if fam.type == "counter" else s.name
            if fam.name in TOTAL_SUFFIXED:
                name = fam.name + "_total"
                if not text_has_sample(text, name):
                    errors.append(f"{fam.name}: its samples are not named {name}")
            key = series(name, s.labels)
            if key in seen:
                errors.append(f"{key}: repeated")
            seen.add(key)
            out.append(f"{key} {fmt(s.value)}")
        if fam.type == "histogram":
            check_histogram(fam, errors)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
