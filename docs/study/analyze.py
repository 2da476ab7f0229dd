#!/usr/bin/env python3
"""Reads the --jsonl files of a study and prints what the benchmark's own report does not:
paired comparisons against baseline (McNemar's exact test over the same tasks and seeds),
final answers cut off at the token limit, and what the repair rounds and CodeT's generated
tests did, read from each sample's trace.

Usage: python3 docs/study/analyze.py FILE.jsonl [FILE.jsonl ...]
       python3 docs/study/analyze.py --versus A.jsonl B.jsonl
The second form pairs each strategy of A with the same strategy of B over the same tasks and
seeds (two runs that differ in one setting, such as --verifier-examples). Prints Markdown.
Standard library only.
"""

import json
import re
import sys
from collections import Counter, OrderedDict
from math import comb


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def mcnemar_p(b, c):
    """Two-sided exact McNemar p-value: b and c are the discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def by_strategy(rows):
    groups = OrderedDict()
    for r in rows:
        groups.setdefault(r["strategy"], []).append(r)
    return groups


def passed(r):
    return r["verdict"] == "pass"


def paired(groups):
    base = {(r["task_id"], r["sample"]): passed(r) for r in groups.get("baseline", [])}
    out = []
    for name, rs in groups.items():
        if name == "baseline" or not base:
            continue
        b = sum(1 for r in rs if passed(r) and not base.get((r["task_id"], r["sample"]), True))
        c = sum(1 for r in rs if not passed(r) and base.get((r["task_id"], r["sample"]), False))
        out.append((name, b, c, mcnemar_p(b, c)))
    return out


def truncated(r):
    trace = r.get("trace") or {}
    return trace.get("finish_reason") == "length"


ATTEMPT = re.compile(r"chain (\d+) attempt (\d+)")


def first_error(feedback):
    """The first compiler error line of a feedback text, or the feedback's first line."""
    for line in feedback.splitlines():
        if line.startswith("error"):
            return line.strip()
    return feedback.splitlines()[0].strip() if feedback else ""


REPAIR_KEYS = (
    "samples",
    "model calls",
    "first answer passed the verifier",
    "  ... and the hidden tests",
    "  ... but failed the hidden tests",
    "first answer failed the verifier",
    "  repaired: a later attempt passed the verifier",
    "    ... and the hidden tests",
    "    ... but failed the hidden tests",
    "  not repaired within the rounds",
    "repair attempts",
    "  attempt returned the same code as before",
    "  attempt failed with the same first error as before",
    "no trace (backend error)",
)


def repair_rounds(rows):
    """Counts over repair samples, read from the attempts in each trace, in REPAIR_KEYS order."""
    stats = Counter({k: 0 for k in REPAIR_KEYS})
    for r in rows:
        trace = r.get("trace")
        if not trace:
            stats["no trace (backend error)"] += 1
            continue
        attempts = [s for s in trace.get("steps", []) if ATTEMPT.fullmatch(s["stage"])]
        verified = [s.get("note", "").endswith("passed") for s in attempts]
        stats["samples"] += 1
        stats["model calls"] += r["model_calls"]
        if verified and verified[0]:
            stats["first answer passed the verifier"] += 1
            stats["  ... and the hidden tests" if passed(r) else "  ... but failed the hidden tests"] += 1
            continue
        stats["first answer failed the verifier"] += 1
        if any(verified):
            stats["  repaired: a later attempt passed the verifier"] += 1
            stats["    ... and the hidden tests" if passed(r) else "    ... but failed the hidden tests"] += 1
        else:
            stats["  not repaired within the rounds"] += 1
        texts = [c["text"] for c in trace.get("candidates", [])]
        for i in range(1, len(attempts)):
            stats["repair attempts"] += 1
            if i < len(texts) and texts[i] == texts[i - 1]:
                stats["  attempt returned the same code as before"] += 1
            elif first_error(attempts[i]["text"]) == first_error(attempts[i - 1]["text"]) and not verified[i]:
                stats["  attempt failed with the same first error as before"] += 1
    return stats


CODET_KEYS = (
    "samples",
    "generated tests parsed",
    "samples with no usable generated test",
    "samples where no candidate passed any test",
)


def codet_tests(rows):
    stats = Counter({k: 0 for k in CODET_KEYS})
    for r in rows:
        trace = r.get("trace")
        if not trace:
            continue
        stats["samples"] += 1
        for s in trace.get("steps", []):
            note = s.get("note") or ""
            m = re.match(r"(\d+) test lines? parsed", note)
            if s["stage"] == "generated tests" and m:
                parsed_tests = int(m.group(1))
                stats["generated tests parsed"] += parsed_tests
                if parsed_tests == 0:
                    stats["samples with no usable generated test"] += 1
            if s["stage"] == "test matrix":
                rows_ = re.findall(r"candidate \d+: ([P.]*) passes (\d+)", s["text"])
                if rows_ and all(int(n) == 0 for _, n in rows_):
                    stats["samples where no candidate passed any test"] += 1
    return stats


def report(path):
    rows = load(path)
    groups = by_strategy(rows)
    print(f"## {path}\n")
    print("| strategy | samples | pass | compile_error | test_failure | other | final answer cut off at the token limit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in groups.items():
        v = Counter(r["verdict"] for r in rs)
        other = len(rs) - v["pass"] - v["compile_error"] - v["test_failure"]
        cut = sum(1 for r in rs if truncated(r))
        print(f"| {name} | {len(rs)} | {v['pass']} | {v['compile_error']} | {v['test_failure']} | {other} | {cut} |")
    print()
    pairs = paired(groups)
    if pairs:
        print("Paired against baseline (same tasks, same seeds): b = passes where baseline failed,")
        print("c = failures where baseline passed; p = McNemar's exact two-sided test.\n")
        print("| strategy | b | c | b - c | p |")
        print("|---|---:|---:|---:|---:|")
        for name, b, c, p in pairs:
            print(f"| {name} | {b} | {c} | {b - c:+d} | {p:.3g} |")
        print()
    for name, rs in groups.items():
        if name.split("&")[-1] == "repair":
            print(f"Repair rounds ({name}):\n")
            for k, n in repair_rounds(rs).items():
                print(f"- {k}: {n}")
            print()
        if name.split("&")[-1] == "codet":
            print(f"CodeT's generated tests ({name}):\n")
            for k, n in codet_tests(rs).items():
                print(f"- {k}: {n}")
            print()


def across(rows_a, rows_b):
    """For each strategy in both runs: (name, passes in A, passes in B, b, c, p), paired by task
    and sample; b = passes in A that fail in B, c = the reverse."""
    a, b = by_strategy(rows_a), by_strategy(rows_b)
    out = []
    for name, rows in a.items():
        if name not in b:
            continue
        other = {(r["task_id"], r["sample"]): passed(r) for r in b[name]}
        pairs = [(passed(r), other[(r["task_id"], r["sample"])]) for r in rows
                 if (r["task_id"], r["sample"]) in other]
        wins = sum(1 for x, y in pairs if x and not y)
        losses = sum(1 for x, y in pairs if y and not x)
        out.append((name, sum(x for x, _ in pairs), sum(y for _, y in pairs), wins, losses,
                    mcnemar_p(wins, losses)))
    return out


def versus(path_a, path_b):
    print(f"## {path_a} against {path_b}\n")
    print("Paired by task and seed: b = passes in A that fail in B, c = the reverse;")
    print("p = McNemar's exact two-sided test.\n")
    print("| strategy | A pass | B pass | b | c | p |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, pass_a, pass_b, b, c, p in across(load(path_a), load(path_b)):
        print(f"| {name} | {pass_a} | {pass_b} | {b} | {c} | {p:.3g} |")
    print()


def main(argv):
    if len(argv) == 4 and argv[1] == "--versus":
        versus(argv[2], argv[3])
        return 0
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for path in argv[1:]:
        report(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
