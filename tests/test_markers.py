"""The markers the default run selects on are used as declared: every test that starts several
processes (run_ddp, a ddp strategy) is marked ``ddp``, so the local run leaves it out and CI
(-m 'not slow and not gpu') runs it; and every marker used is registered in pyproject.toml."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PYPROJECT = TESTS.parent / "pyproject.toml"
STARTS_PROCESSES = re.compile(r"run_ddp\(|strategy=\"ddp")


def _marks(node: ast.AST) -> set[str]:
    """Marker names in ``@pytest.mark.x`` decorators, or in a ``pytestmark = ...`` value."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute)
            and n.value.attr == "mark"}


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py"))


def test_every_multi_process_test_is_marked_ddp():
    unmarked, found = [], 0
    for path in _test_files():
        text = path.read_text()
        tree = ast.parse(text)
        module_marks = set().union(*[_marks(n.value) for n in tree.body if isinstance(n, ast.Assign)
                                     and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)])
        funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        # Fixtures that start processes pass that on to the tests using them.
        spawning_fixtures = {f.name for f in funcs if not f.name.startswith("test_")
                             and STARTS_PROCESSES.search(ast.get_source_segment(text, f) or "")}
        for f in funcs:
            if not f.name.startswith("test_"):
                continue
            body = ast.get_source_segment(text, f) or ""
            uses = STARTS_PROCESSES.search(body) or spawning_fixtures & {a.arg for a in f.args.args}
            if uses:
                found += 1
                marks = module_marks | set().union(*[_marks(d) for d in f.decorator_list])
                if "ddp" not in marks:
                    unmarked.append(f"{path.relative_to(TESTS)}::{f.name}")
    assert found >= 10  # the scan sees the multi-process tests (harness, parts, methods, data)
    assert not unmarked, f"start several processes but are not marked @pytest.mark.ddp: {unmarked}"


def test_every_marker_used_is_registered():
    registered = set(re.findall(r'^\s*"(\w+):', PYPROJECT.read_text(), re.M))
    assert {"slow", "ddp", "gpu"} <= registered
    builtin = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings", "timeout"}
    used = set()
    for path in _test_files():
        used |= _marks(ast.parse(path.read_text()))
    assert not used - registered - builtin, f"unregistered markers: {sorted(used - registered - builtin)}"


def test_the_default_run_leaves_out_ddp_and_ci_runs_it():
    text = PYPROJECT.read_text()
    addopts = re.search(r"^addopts = (.*)$", text, re.M).group(1)
    assert "not ddp" in addopts and "not slow" in addopts and "--strict-markers" in addopts
    readme = (TESTS.parent / "README.md").read_text()
    ci = (TESTS.parent / ".ci" / "run").read_text()
    ci_cmd = "python -m pytest -q -m 'not slow and not gpu'"
    assert ci_cmd in ci  # a later -m replaces addopts' -m: ddp tests included
    assert "WANDB_MODE=offline python -m pytest -m 'not slow and not gpu'" in readme
