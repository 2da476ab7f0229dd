"""Jobs: model specs, benchmark options and command lines, collecting a run's output or a
structured failure, and the container's Ollama flow, with stand-in `ollama` and benchmark
executables at the process boundary (Modal's volume replaced by a recorder)."""

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

from mars_modal import app as modal_app
from mars_modal import jobs as mb
from mars_modal.records import REPORT_SCHEMA, RunOptions

FIXTURE = REPO_ROOT / "tests/python/fixtures/result-strong.json"


def test_model_specs_pick_the_backend():
    jobs = mb.parse_models("tinyllama, qwen2.5-coder:1.5b,embedded,Small Model.Q4.gguf,"
                           "embedded:qwen2.5-coder-1.5b,embedded:dir/m.gguf")
    assert [(j.backend, j.model, j.gguf) for j in jobs] == [
        ("ollama", "tinyllama", None),
        ("ollama", "qwen2.5-coder:1.5b", None),
        ("embedded", None, None),
        ("embedded", None, "Small Model.Q4.gguf"),
        ("embedded", "qwen2.5-coder-1.5b", None),
        ("embedded", None, "dir/m.gguf"),
    ]
    assert [j.slug for j in jobs] == ["tinyllama", "qwen2.5-coder-1.5b", "embedded",
                                      "Small-Model.Q4.gguf", "embedded-qwen2.5-coder-1.5b",
                                      "embedded-dir-m.gguf"]
    with pytest.raises(ValueError, match="listed twice"):
        mb.parse_models("tinyllama,tinyllama")
    with pytest.raises(ValueError, match="no model"):
        mb.parse_models(" , ")
    with pytest.raises(ValueError, match="names no model"):
        mb.parse_models("embedded:")


def test_options_pass_only_what_was_given_and_carry_task_files(tmp_path):
    options = mb.run_options("baseline,reread", "ladder", samples=3, temperature=0.5)
    assert options == RunOptions(("--strategies", "baseline,reread", "--samples", "3",
                                  "--temperature", "0.5"), "ladder", None)
    assert mb.run_options().args == ()
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"task_id": "x"}\n')
    assert mb.run_options(tasks=str(tasks)).tasks_jsonl == '{"task_id": "x"}\n'
    with pytest.raises(OSError):
        mb.run_options(tasks=str(tmp_path / "missing.jsonl"))


def test_command_lines_per_backend(tmp_path):
    ollama, embedded, gguf, preset = mb.parse_models(
        "qwen2.5-coder:1.5b,embedded,m.gguf,embedded:smollm2-135m")
    options = mb.run_options("baseline", samples=1)
    cmd = mb.benchmark_command("bench", ollama, options, tmp_path, "seed", ollama.model)
    assert cmd[:5] == ["bench", "--backend", "ollama", "--model", "qwen2.5-coder:1.5b"]
    assert cmd[cmd.index("--json") + 1] == str(tmp_path / "qwen2.5-coder-1.5b.json")
    assert "--quiet" in cmd and "--svg" in cmd and "--markdown" in cmd
    # The binary's default model: no --model at all.
    cmd = mb.benchmark_command("bench", embedded, options, tmp_path, "seed", None)
    assert cmd[:4] == ["bench", "--backend", "embedded", "--tasks"]
    cmd = mb.benchmark_command("bench", gguf, options, tmp_path, "seed", "/models/gguf/m.gguf")
    assert cmd[1:5] == ["--backend", "embedded", "--model", "/models/gguf/m.gguf"]
    cmd = mb.benchmark_command("bench", preset, options, tmp_path, "seed", preset.model)
    assert cmd[1:5] == ["--backend", "embedded", "--model", "smollm2-135m"]
    assert "--model-path" not in cmd


FAKE_BENCH = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_RECORD"], "a") as f:
    f.write(json.dumps({{"argv": args, "OLLAMA_HOST": os.environ.get("OLLAMA_HOST"),
                        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME")}}) + "\\n")
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "fail":
    print("error: the benchmark could not start: no such task file", file=sys.stderr)
    sys.exit(2)
if mode == "hang":
    time.sleep(60)
if mode in ("ok", "old-schema", "backend-failed"):
    fixture = json.load(open({fixture!r}))
    if mode == "old-schema":
        fixture["report"]["schema_version"] = 1
    out = {{flag: args[args.index(flag) + 1] for flag in ("--json", "--markdown", "--svg")}}
    open(out["--json"], "w").write(json.dumps(fixture["report"]))
    open(out["--markdown"], "w").write(fixture["markdown"])
    open(out["--svg"], "w").write(fixture["svg"])
print("backend: fake")
if mode in ("backend-failed", "backend-failed-silent"):
    print("error: every sample of reread is a backend error", file=sys.stderr)
    sys.exit(1)
"""

FAKE_OLLAMA = """#!{python}
import http.server, json, os, sys
command = sys.argv[1]
if command == "serve":
    if os.environ.get("FAKE_OLLAMA") == "dead":
        print("Error: listen tcp: address already in use")
        sys.exit(1)
    host, port = os.environ["OLLAMA_HOST"].split(":")
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({{"version": "0.0-fake"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    http.server.HTTPServer((host, int(port)), Handler).serve_forever()
elif command == "pull":
    if sys.argv[2] == "no-such-model":
        print("Error: pull model manifest: file does not exist", file=sys.stderr)
        sys.exit(1)
    print("success")
elif command == "ps":
    print("NAME          ID      SIZE      PROCESSOR    UNTIL")
    print("tinyllama     abc     1.0 GB    100% GPU     4 minutes from now")
"""


def executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.format(python=sys.executable, fixture=str(FIXTURE)))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


class Volume:
    def __init__(self):
        self.commits = 0

    def commit(self):
        self.commits += 1


@pytest.fixture
def container(tmp_path, monkeypatch):
    """The container's surroundings: a repo with the stand-in binary, `ollama` on PATH, a free
    port for it, a local folder as the volume."""
    repo = tmp_path / "repo"
    executable(repo / mb.BINARY, FAKE_BENCH)
    executable(tmp_path / "bin/ollama", FAKE_OLLAMA)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.jsonl"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(modal_app, "REMOTE_REPO", str(repo))
    monkeypatch.setattr(modal_app, "OLLAMA_HOST", f"127.0.0.1:{port}")
    monkeypatch.setattr(modal_app, "VOLUME_PATH", str(tmp_path / "volume"))
    volume = Volume()
    monkeypatch.setattr(modal_app, "models_volume", volume)
    record = tmp_path / "record.jsonl"
    def calls():
        return [json.loads(line) for line in record.read_text().splitlines()]

    return {"volume": volume, "calls": calls, "port": port, "root": tmp_path}


def job(spec: str):
    (j,) = mb.parse_models(spec)
    return j


def in_container(spec: str, options=None):
    return modal_app.run_in_container(job(spec), options or mb.run_options(), 600)


def test_container_serves_pulls_and_runs_ollama_models(container):
    options = mb.run_options("baseline", samples=1)
    result = in_container("tinyllama", options)
    assert result.ok, result
    assert result.report == json.loads(FIXTURE.read_text())["report"]
    assert result.ollama_version == "0.0-fake"
    assert "100% GPU" in result.ollama_ps
    assert result.setup_s >= 0 and result.wall_s >= 0
    assert container["volume"].commits == 1
    (call,) = container["calls"]()
    assert call["argv"][:4] == ["--backend", "ollama", "--model", "tinyllama"]
    assert call["OLLAMA_HOST"] == f"127.0.0.1:{container['port']}"
    # The server is stopped afterwards.
    assert mb.ollama_version(f"http://127.0.0.1:{container['port']}") is None


def test_a_failed_pull_is_reported_with_its_output(container):
    result = in_container("no-such-model")
    assert not result.ok
    assert result.error == "ollama pull no-such-model failed (status 1)"
    assert "file does not exist" in result.log_tail
    assert container["volume"].commits == 0


def test_a_server_that_dies_is_reported_with_its_log(container, monkeypatch):
    monkeypatch.setenv("FAKE_OLLAMA", "dead")
    result = in_container("tinyllama")
    assert not result.ok
    assert "did not answer /api/version" in result.error
    assert "address already in use" in result.log_tail


def test_embedded_models_come_from_the_volume(container):
    missing = in_container("small.gguf")
    assert not missing.ok
    assert "modal volume put mars-models small.gguf gguf/small.gguf" in missing.error
    gguf = container["root"] / "volume/gguf/small.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    assert in_container("small.gguf").ok
    assert in_container("embedded").ok
    assert in_container("embedded:qwen2.5-coder-1.5b").ok
    with_path, default, preset = container["calls"]()
    assert with_path["argv"][:4] == ["--backend", "embedded", "--model", str(gguf)]
    assert default["argv"][:3] == ["--backend", "embedded", "--tasks"]
    assert preset["argv"][:4] == ["--backend", "embedded", "--model", "qwen2.5-coder-1.5b"]
    # The default model and the presets are fetched into (and later read from) the volume.
    cache = str(container["root"] / "volume/cache")
    assert default["XDG_CACHE_HOME"] == cache and preset["XDG_CACHE_HOME"] == cache
    assert with_path["XDG_CACHE_HOME"] != cache
    assert container["volume"].commits == 3


@pytest.mark.parametrize("mode,error", [
    ("fail", "the benchmark exited with status 2"),
    ("silent", "the benchmark exited with status 0 but its output is unreadable"),
    ("backend-failed-silent", "the benchmark exited with status 1 but its output is unreadable"),
    ("hang", "the benchmark did not finish within 2 s"),
    ("old-schema", (f"the benchmark wrote report schema 1; this runner reads schema "
                    f"{REPORT_SCHEMA}")),
])
def test_a_run_that_fails_is_a_structured_failure(container, monkeypatch, tmp_path, mode, error):
    monkeypatch.setenv("FAKE_MODE", mode)
    work = tmp_path / "work"
    work.mkdir()
    result = mb.run_binary(str(container["root"] / "repo" / mb.BINARY), job("embedded"),
                           mb.run_options(), work, dict(os.environ), 2)
    assert not result.ok
    assert result.error.startswith(error)
    if mode == "fail":
        assert "no such task file" in result.log_tail


def test_a_run_whose_strategy_got_only_backend_errors_keeps_its_report(container, monkeypatch,
                                                                      tmp_path):
    # Exit status 1: the run completed and wrote its outputs, but every sample of some strategy
    # is a backend error. The report is kept (the merge and the report's own recommendations
    # say so); the binary's message is in the log.
    monkeypatch.setenv("FAKE_MODE", "backend-failed")
    work = tmp_path / "work"
    work.mkdir()
    result = mb.run_binary(str(container["root"] / "repo" / mb.BINARY), job("embedded"),
                           mb.run_options(), work, dict(os.environ), 60)
    assert result.ok and result.error is None
    assert result.report == json.loads(FIXTURE.read_text())["report"]
    assert "every sample of reread is a backend error" in result.log_tail


def test_a_missing_binary_is_a_structured_failure(tmp_path):
    result = mb.run_binary(str(tmp_path / "nope"), job("embedded"), mb.run_options(), tmp_path,
                           dict(os.environ), 5)
    assert not result.ok
    assert result.error.startswith("could not start the benchmark binary")
