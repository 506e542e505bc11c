"""The store, the services and the runner type-check (mypy, the settings in pyproject.toml), so
an editor follows a call into the store through its typed faces (ncalab/store/interfaces.py)."""

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ["ncalab/store", "ncalab/services", "ncalab/experiment"]


def _mypy(*paths: str, cache: Path) -> tuple[int, str]:
    out, err, code = api.run(["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache), *paths])
    return code, out + err


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One mypy cache for this file's checks (the second reads what the first analysed)."""
    return tmp_path_factory.mktemp("mypy-cache")


def test_the_store_the_services_and_the_runner_type_check(cache, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, text = _mypy(*CHECKED, cache=cache)
    assert code == 0, text


def test_the_check_sees_a_write_through_a_reader(cache, tmp_path, monkeypatch):
    """A function given only the reading face that writes: the kind of mistake the types catch."""
    monkeypatch.chdir(ROOT)
    bad = tmp_path / "writes_through_a_reader.py"
    bad.write_text("from ncalab.store.interfaces import StoreReader\n\n\n"
                   "def tag(store: StoreReader, exp_id: str) -> None:\n    store.tag(exp_id, 'x')\n")
    code, text = _mypy(str(bad), cache=cache)
    assert code == 1 and '"StoreReader" has no attribute "tag"' in text, text
