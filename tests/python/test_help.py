"""`python modal_benchmark.py --help` describes every option of both entry points: `--local`'s
(argparse) and `modal run`'s (the Modal entry point's signature, whose own `--help` can list
only names and types)."""

import inspect
import re
import subprocess
import sys

from conftest import REPO_ROOT

from mars_modal import app
from mars_modal.local import LOCAL_HELP, MODAL_HELP, parser

SCRIPT = str(REPO_ROOT / "modal_benchmark.py")


def squeeze(text: str) -> str:
    """Text without whitespace, so help wrapped at any width (and at hyphens) still matches."""
    return re.sub(r"\s+", "", text)


def help_output(flag: str) -> str:
    out = subprocess.run([sys.executable, SCRIPT, flag], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout


def entry_point_options() -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(app.main.info.raw_f).parameters)


def test_every_modal_entry_point_option_has_help_and_no_help_is_stale():
    assert set(MODAL_HELP) == set(entry_point_options())
    assert all(text.strip() for text in MODAL_HELP.values())


def test_every_local_option_has_help():
    actions = [a for a in parser()._actions if a.dest != "help"]
    assert {a.dest for a in actions} == set(LOCAL_HELP)
    for action in actions:
        assert action.help and LOCAL_HELP[action.dest] in action.help, action.dest


def test_help_describes_both_entry_points():
    for flag in ("--help", "-h"):
        text = help_output(flag)
        assert text.startswith("usage: python modal_benchmark.py --local [options]")
        local, modal = text.split("Modal entry point: modal run modal_benchmark.py [options]")
        for action in parser()._actions:
            assert any(o in local for o in action.option_strings), action.dest
            if action.dest != "help":
                assert squeeze(LOCAL_HELP[action.dest]) in squeeze(local), action.dest
        for name, param in entry_point_options().items():
            flag_line = re.search(rf"^  --{name.replace('_', '-')} [A-Z]+$", modal, re.M)
            assert flag_line, name
            described = MODAL_HELP[name]
            if param.default is not None:
                described += f" (default: {param.default})"
            assert squeeze(described) in squeeze(modal), name


def test_the_defaults_the_help_names_are_the_ones_used():
    args = parser().parse_args(["--local"])
    assert (args.models, args.strategies, args.tasks) == ("embedded", "seed", "seed")
    assert args.timeout == float(app.TIMEOUT_S)
    assert args.output == "MODAL_BENCHMARK_RESULTS.md"
    assert args.samples is None and args.temperature is None
    text = help_output("--help")
    modal = text.split("Modal entry point:")[1]
    assert squeeze("(default: tinyllama)") in squeeze(modal)
    assert squeeze("(default: embedded)") in squeeze(text.split("Modal entry point:")[0])
