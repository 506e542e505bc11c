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
    "errors": 0, "lazy": 0, "durable": 0, "plugins": 0, "reporting": 0, "nca": 0, "data": 0, "store": 0, "config": 0,
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
# ncalab.lazy is a third-party library imported late (numpy for a widget's drawing), not a layer's work.
FRONT_ENDS = ("cli", "tui")
FRONT_END_MAY_IMPORT = ("ncalab.services", "ncalab.display", "ncalab.errors", "ncalab.config",
                        "ncalab.store.interfaces", "ncalab.__version__", "ncalab.lazy")
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
    commands = tuple(f"ncalab.cli.{m}" for m in ("browse", "evaluate", "match", "nca", "report", "run", "runs_jobs",
                                                  "runs_plot", "sources", "store_cmd", "study", "sweep"))
    for args, may_load in ((["--help"], ()), (["--version"], ()),
                           (["runs", "list", "--home", str(tmp_path / "h")], ("ncalab.cli.browse",))):
        code = ("import contextlib, io, sys\nfrom ncalab.cli.main import main\n"
                f"with contextlib.redirect_stdout(io.StringIO()):\n    main({args!r})\n"
                f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
                f"print(sorted(m for m in {commands!r} if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        libraries, modules = out.stdout.strip().splitlines()[-2:]
        assert libraries == "[]", (args, out.stdout, out.stderr)
        # the root's and `runs`' help list the sub-commands from their tables: only the command that runs is imported
        assert modules == repr(sorted(may_load)), (args, out.stdout, out.stderr)


def test_the_groups_help_lines_are_the_commands_own():
    """`ncalab --help` and `ncalab runs --help` list each sub-command by the line in their table
    (cli/main.py's, cli/browse.py's), without importing it: the line is the first paragraph of the
    command's own help."""
    from ncalab.cli.browse import RUNS_COMMANDS
    from ncalab.cli.groups import load_command
    from ncalab.cli.main import COMMANDS

    for table in (COMMANDS, RUNS_COMMANDS):
        for name, (_, _, line) in table.items():
            command = load_command(table, name)
            assert command.name == name and (command.help or "").split("\n\n")[0] == line, name


# Where an import of ncalab's own modules may sit inside a function (module -> why): every other
# one is at its module's top. The heavy third-party libraries come late through ncalab/lazy.py.
LOCAL_IMPORTS_ALLOWED: dict[str, str] = {
    "ncalab.cli.main": "`ncalab` alone opens the TUI: its modules (textual, 0.2 s) load only then",
    "ncalab.services.runstore": "the quick commands' way to the store: the ORM (SQLAlchemy) loads when a store is opened",
    "ncalab.jobs.queue": "reached from the store's quick path: placing a job (torch, SQLAlchemy) loads when one is placed",
    "ncalab.services.nca": "every command's options (cli/common) use its settings: the NCA engine (torch, numba) "
                           "loads when a rule is run",
    "ncalab.tui.app": "the TUI's first frame: the runs list and the queue load in a worker after it",
    "ncalab.services.live": "the TUI's first frame: the store and the queue (SQLAlchemy, torch) load in a worker after it",
    "ncalab.tui.screens.explore": "the TUI's first frame: the NCA engine (torch, numba) loads when a rule is drawn",
}


def _local_own_imports(path: Path):
    """`line: module` of each import of an ncalab module made inside a function's body."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module.split(".")[0] == "ncalab":
                    yield f"{child.lineno}: {child.module}"
            elif in_function and isinstance(child, ast.ImportFrom) and child.level:
                yield f"{child.lineno}: {'.' * child.level}{child.module or ','.join(a.name for a in child.names)}"
            elif in_function and isinstance(child, ast.Import):
                yield from (f"{child.lineno}: {a.name}" for a in child.names if a.name.split(".")[0] == "ncalab")
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(ast.parse(path.read_text()), False)


def test_ncalab_modules_are_imported_at_the_top():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        if name not in LOCAL_IMPORTS_ALLOWED:
            wrong += [f"{path.relative_to(ROOT)}:{w}" for w in _local_own_imports(path)]
    assert not wrong, "import ncalab's modules at the top of the module (ncalab/lazy.py for heavy libraries):\n" + \
        "\n".join(wrong)


def test_the_top_import_check_sees_a_local_import(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text("import json\nfrom ncalab.errors import NcalabError\n\n\ndef f():\n    import numpy\n"
                   "    from ncalab.store import RunStore\n\n\nclass A:\n    async def g(self):\n"
                   "        if self:\n            import ncalab.jobs.queue\n        from . import x\n")
    assert list(_local_own_imports(mod)) == ["7: ncalab.store", "13: ncalab.jobs.queue", "14: .x"]
    assert set(LOCAL_IMPORTS_ALLOWED) <= {".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
                                          for p in ROOT.rglob("*.py")}


# Where a library of ncalab/lazy.py's HEAVY may still be imported inside a function (`module: what it
# imports` -> why). Everywhere else a heavy library comes through the stand-ins of ncalab.lazy, or at
# the top of a module that needs it while it is being imported (which the quick commands never import).
HEAVY_LOCAL_IMPORTS_ALLOWED: dict[str, str] = {
    "ncalab.experiment.tracking: torch.utils.tensorboard": "an optional extra (tensorboard): _need checks it is "
                                                           "installed first and says how to install it",
    "ncalab.experiment.tracking: mlflow.entities": "an optional extra (mlflow), checked by _need the same way",
    "ncalab.experiment.tracking: mlflow.tracking": "an optional extra (mlflow), checked by _need the same way",
    "ncalab.train.distributed: torch.distributed.fsdp": "FSDP2 exists from torch 2.6 (ncalab runs on 2.4): imported "
                                                        "when a model is sharded",
    "ncalab.train.headloss: torch.distributed.fsdp": "FSDP2 again: a torch without it takes the unsharded path",
}


def _local_heavy_imports(path: Path):
    """`line: module` of each import of a HEAVY library (by its top-level package) inside a function's body."""
    from ncalab.lazy import HEAVY

    heavy = {name.split(".")[0] for name in HEAVY}
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            yield from (f"{node.lineno}: {name}" for name in names if name.split(".")[0] in heavy)


def test_heavy_libraries_are_imported_through_ncalab_lazy():
    wrong, seen = [], set()
    for path in sorted(ROOT.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
        for found in dict.fromkeys(_local_heavy_imports(path)):  # a nested function's import is walked twice
            key = f"{name}: {found.split(': ', 1)[1]}"
            if key in HEAVY_LOCAL_IMPORTS_ALLOWED:
                seen.add(key)
            else:
                wrong.append(f"{path.relative_to(ROOT)}:{found}")
    assert not wrong, "heavy libraries come through `from ncalab.lazy import ...` at the module's top " \
        "(add a stand-in there if one is missing):\n" + "\n".join(wrong)
    assert seen == set(HEAVY_LOCAL_IMPORTS_ALLOWED), f"allowed but no longer made: {set(HEAVY_LOCAL_IMPORTS_ALLOWED) - seen}"


def test_the_heavy_import_check_sees_a_local_import(tmp_path):
    mod = tmp_path / "mod.py"
    mod.write_text("import numpy as np\nfrom ncalab.lazy import torch\n\n\ndef f():\n    import json\n"
                   "    import numpy.linalg\n    from transformers import AutoTokenizer\n\n\nclass A:\n"
                   "    async def g(self):\n        from matplotlib.figure import Figure\n        import ncalab.store\n")
    assert list(dict.fromkeys(_local_heavy_imports(mod))) == ["7: numpy.linalg", "8: transformers",
                                                               "13: matplotlib.figure"]
