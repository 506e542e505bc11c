"""The skip policy (tests/skip_policy.py) as a user of the suite meets it: on a contributor's
machine a test skips with its reason; in CI (NCALAB_STRICT_SKIPS=1) a skip fails the run, with the
test's name and reason, unless its reason is on the declared list."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from skip_policy import ALLOWED_SKIPS

TESTS = Path(__file__).parent

MODULE_THAT_SKIPS = '''
import pytest

pytest.importorskip("a_module_no_machine_has")
'''

TESTS_THAT_SKIP = f'''
import pytest

def test_runs():
    assert True

@pytest.mark.skipif(True, reason="no server here")
def test_needs_a_server():
    pass

@pytest.fixture
def browser():
    pytest.skip("no browser here")

def test_needs_a_browser(browser):
    pass

@pytest.mark.skipif(True, reason={ALLOWED_SKIPS[0]!r})
def test_needs_what_ci_may_lack():
    pass
'''


def _pytest(folder: Path, strict: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NCALAB_STRICT_SKIPS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if strict:
        env["NCALAB_STRICT_SKIPS"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-p", "skip_policy", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-rs", "--rootdir", str(folder), "-c", os.devnull, str(folder)]
    return subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def suite(tmp_path) -> Path:
    (tmp_path / "test_some.py").write_text(TESTS_THAT_SKIP)
    return tmp_path


@pytest.fixture
def module_suite(tmp_path) -> Path:
    (tmp_path / "test_module_skip.py").write_text(MODULE_THAT_SKIPS)
    return tmp_path


def test_on_a_contributors_machine_tests_skip_with_their_reason(suite, module_suite):
    run = _pytest(suite, strict=False)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 4 skipped" in run.stdout
    for reason in ("no server here", "no browser here", "a_module_no_machine_has", ALLOWED_SKIPS[0]):
        assert reason in run.stdout


def test_in_ci_a_skip_not_on_the_list_fails_with_its_name_and_reason(suite):
    run = _pytest(suite, strict=True)
    out = run.stdout
    assert run.returncode != 0, out
    assert "1 passed, 1 skipped, 2 errors" in out, out
    assert "test_some.py::test_needs_a_server skipped (no server here)" in out
    assert "test_some.py::test_needs_a_browser skipped (no browser here)" in out
    # the one skip on the list stays a skip, its reason shown
    assert "SKIPPED [1] test_some.py:" in out and ALLOWED_SKIPS[0] in out


def test_in_ci_a_module_skipped_whole_fails_the_run(module_suite):
    run = _pytest(module_suite, strict=True)
    assert run.returncode != 0, run.stdout
    assert "test_module_skip.py skipped (could not import 'a_module_no_machine_has'" in run.stdout
