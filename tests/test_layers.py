"""The architecture as a test: imports run one way, from the front ends down to the engine,
and no module imports itself back through others.

engine, data, store, config, the scaling law and the durable-write helpers at the bottom; the
trainer; what stage 1 trains on, evaluation and the planner; the job queue; the experiment's
runner; the services; what both front ends draw; the CLI and the TUI on top. An import inside a
function counts the same as one at the top of a module.
"""

import ast
from pathlib import Path

import ncalab

LAYERS = {
    "errors": 0, "durable": 0, "plugins": 0, "reporting": 0, "nca": 0, "data": 0, "store": 0, "config": 0,
    "scaling": 0,
    "train": 1,
    "sources": 2, "evaluation": 2, "planning": 2,
    "jobs": 3,
    "experiment": 4,
    "services": 5,
    "display": 6,
    "cli": 7, "tui": 7,
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


def _imported_names(path: Path):
    """Each name a module imports, in full: `from ncalab.store import RunStore` is
    ncalab.store.RunStore, `from ncalab import plugins` ncalab.plugins."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def _module_graph() -> dict[str, set[str]]:
    """Each ncalab module -> the ncalab modules it imports (`from ncalab.pkg import module`
    counts as importing that module)."""
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in names.items():
        # a name imported from a module (ncalab.store.RunStore) is an import of that module
        out = {imported if imported in names else imported.rpartition(".")[0] for imported, _ in _imported_names(path)}
        graph[name] = {m for m in out if m in names and m != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_module_imports_itself_back_through_others():
    assert not _circles(_module_graph())


def test_the_circle_check_sees_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ncalab.tui.app import NcalabApp\n")
    assert list(_imports(bad)) == [("ncalab.tui.app", 2)]
    assert LAYERS["tui"] > LAYERS["nca"]


# What a front end may import: the services do the work, display draws it, and the errors, the
# config types and the store's interfaces are the words they share. Everything below the services
# (the store itself, the queue, the engine, the planner, ...) is reached through a service.
FRONT_ENDS = ("cli", "tui")
FRONT_END_MAY_IMPORT = ("ncalab.services", "ncalab.display", "ncalab.errors", "ncalab.config",
                        "ncalab.store.interfaces", "ncalab.__version__")
# `ncalab` without a command opens the TUI: the CLI's entry point is the one door between the two.
FRONT_END_DOORS = {"cli": ("ncalab.tui.app",)}


def _below_the_services(front_end: str, path: Path) -> list[str]:
    """`line: name` of each ncalab import in a front end's module that it may not make."""
    allowed = (*FRONT_END_MAY_IMPORT, f"ncalab.{front_end}", *FRONT_END_DOORS.get(front_end, ()))
    return [f"{line}: {name}" for name, line in sorted(_imported_names(path), key=lambda n: n[1])
            if name.split(".")[0] == "ncalab" and not any(name == a or name.startswith(a + ".") for a in allowed)]


def test_the_front_ends_reach_below_the_services_only_through_them():
    wrong = []
    for front_end in FRONT_ENDS:
        for path in sorted((ROOT / front_end).rglob("*.py")):
            wrong += [f"{path.relative_to(ROOT)}:{w}" for w in _below_the_services(front_end, path)]
    assert not wrong, "front ends import services, display, errors, config and store.interfaces only:\n" + "\n".join(wrong)


def test_the_front_end_check_sees_a_wrong_import(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text("from ncalab.services.runstore import open_store\nfrom ncalab.store.interfaces import StoreReader\n"
                   "from ncalab.config.keys import flatten\nfrom ncalab.cli.common import Home\nimport typer\n"
                   "def f():\n    from ncalab.store import RunStore\n    import ncalab.jobs.queue\n"
                   "    from ncalab import plugins, __version__\n    from ncalab.tui.app import run_app\n"
                   "    from ncalab.tui.stores import Stores\n")
    wrong = ["7: ncalab.store.RunStore", "8: ncalab.jobs.queue", "9: ncalab.plugins"]
    # the CLI may open the TUI through its app and nothing else of it; the TUI may not import the CLI
    assert _below_the_services("cli", mod) == [*wrong, "11: ncalab.tui.stores.Stores"]
    assert _below_the_services("tui", mod) == ["4: ncalab.cli.common.Home", *wrong]


def test_the_quick_commands_import_nothing_heavy(tmp_path):
    """`ncalab --help`, `--version` and `runs list` start in a fraction of a second: none of them
    may import torch, numpy, transformers, numba, scipy, matplotlib or, listing a store it need
    not write to, SQLAlchemy (each costs 0.1-2 s)."""
    import subprocess
    import sys

    from ncalab.store.store import RunStore

    with RunStore(tmp_path / "h") as store:  # a store with something to list, and no job to mark lost
        store.finish_experiment(store.create_experiment("code", "tiny", 0, {}).id, "completed")
    heavy = ("torch", "numpy", "transformers", "numba", "scipy", "matplotlib", "sqlalchemy")
    for args in (["--help"], ["--version"], ["runs", "list", "--home", str(tmp_path / "h")]):
        code = ("import contextlib, io, sys\nfrom ncalab.cli.main import main\n"
                f"with contextlib.redirect_stdout(io.StringIO()):\n    main({args!r})\n"
                f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        assert out.stdout.strip().splitlines()[-1] == "[]", (args, out.stdout, out.stderr)
