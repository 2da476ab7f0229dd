"""The committed fixtures still say what the current binary makes of their recorded answers, so
the merge tests follow the report schema as it is, not as it was."""

import json
import sys

from conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests/python/fixtures"
sys.path.insert(0, str(FIXTURES))

import generate  # noqa: E402

# What a replay decides; timings are recorded in the answers, error texts depend on rustc.
STABLE = ("strategy", "pass", "pass_at_k", "verdicts", "mean_total_tokens", "latency_p50_ms",
          "mean_calls", "passes_per_1k_tokens", "tokens_vs_baseline", "vs_baseline")


def test_fixtures_match_what_the_binary_makes_now(binary, tmp_path):
    for name in generate.MODELS:
        work = tmp_path / name
        work.mkdir()
        fresh = generate.generate(binary, name, work)
        assert fresh.ok, (fresh.error or "") + fresh.log_tail
        committed = json.loads((FIXTURES / f"result-{name}.json").read_text())
        now, then = fresh.report, committed["report"]
        assert set(fresh.to_json()) == set(committed)
        assert set(now) == set(then)
        for key in ("schema_version", "config", "tasks", "backend"):
            assert now[key] == then[key], key
        assert [set(s) for s in now["strategies"]] == [set(s) for s in then["strategies"]]
        assert [{k: s[k] for k in STABLE} for s in now["strategies"]] == \
            [{k: s[k] for k in STABLE} for s in then["strategies"]]
        assert [set(c) for c in now["cells"]] == [set(c) for c in then["cells"]]
        assert now["recommendations"] == then["recommendations"]
