"""The architecture as a test: imports run one way, from the front ends down to the engine.

engine, data, store, config and the durable-write helpers at the bottom; the trainer; the
experiment pipeline and the job queue; the services; what both front ends draw; the CLI and
the TUI on top. An import inside a function counts the same as one at the top of a module.
"""

import ast
from pathlib import Path

import ncalab

LAYERS = {
    "errors": 0, "durable": 0, "plugins": 0, "nca": 0, "data": 0, "store": 0, "config": 0,
    "evals": 0, "scaling": 0,
    "train": 1,
    "experiment": 2, "jobs": 2,
    "services": 3,
    "display": 4,
    "cli": 5, "tui": 5,
}
ROOT = Path(ncalab.__file__).parent


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(LAYERS)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    wrong = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "__init__.py":
            continue
        own = rel.parts[0].removesuffix(".py")
        for module, line in _imports(path):
            parts = module.split(".")
            if parts[0] != "ncalab" or len(parts) < 2:
                continue
            if LAYERS[parts[1]] > LAYERS[own]:
                wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ncalab.tui.app import NcalabApp\n")
    assert list(_imports(bad)) == [("ncalab.tui.app", 2)]
    assert LAYERS["tui"] > LAYERS["nca"]


def test_the_quick_commands_import_nothing_heavy(tmp_path):
    """`ncalab --help`, `--version` and `runs list` start in a fraction of a second: none of them
    may import torch, numpy, transformers, numba, scipy or matplotlib (each costs 0.1-2 s)."""
    import subprocess
    import sys

    heavy = ("torch", "numpy", "transformers", "numba", "scipy", "matplotlib")
    for args in (["--help"], ["--version"], ["runs", "list", "--home", str(tmp_path / "h")]):
        code = ("import contextlib, io, sys\nfrom ncalab.cli.main import main\n"
                f"with contextlib.redirect_stdout(io.StringIO()):\n    main({args!r})\n"
                f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout, out.stderr)
