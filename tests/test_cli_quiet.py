"""Commands print only ncalab's own output: other libraries' progress bars, log lines and
warnings stay off stdout and stderr unless --verbose."""

import json
import os
import subprocess
import sys

import pytest

from ncalab.cli.quiet import _QUIET_ENV, VERBOSE_ENV


def _clean_env() -> dict:
    """This process's environment without what an earlier in-process command set, so the child
    quiets itself or nothing does."""
    return {k: v for k, v in os.environ.items() if k not in _QUIET_ENV and k != VERBOSE_ENV}


NOISY = r"""
import sys, types
from ncalab.cli.quiet import quiet_third_party

quiet_third_party(verbose=sys.argv[1] == "verbose")
somelib = types.ModuleType("somelib")  # a third-party module raising a warning from its own code
exec("import warnings\ndef f():\n    warnings.warn('somelib: this will change', UserWarning)\n", somelib.__dict__)
somelib.f()
from transformers.utils import logging as hf_logging

hf_logging.get_logger("transformers.modeling_utils").warning("transformers: a log line")
for _ in hf_logging.tqdm(range(3), desc="Loading weights"):
    pass
import datasets

datasets.utils.logging.get_logger("datasets.builder").warning("datasets: a log line")
print("ncalab's own output")
"""


def test_other_libraries_are_silent_unless_verbose():
    def run(mode):
        return subprocess.run([sys.executable, "-c", NOISY, mode], capture_output=True, text=True, env=_clean_env(),
                              timeout=300)

    quiet = run("quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "ncalab's own output\n" and quiet.stderr == ""
    loud = run("verbose")
    assert loud.returncode == 0, loud.stderr
    for line in ("somelib: this will change", "transformers: a log line", "Loading weights", "datasets: a log line"):
        assert line in loud.stderr


# slow (end to end); the fast suite keeps test_other_libraries_are_silent_unless_verbose, and
# test_evaluation's --json calls ask for an empty stderr
@pytest.mark.slow
def test_eval_json_is_one_object_and_stderr_stays_empty(micro_home, code_corpus):
    home = micro_home
    from ncalab.store import RunStore

    with RunStore(home) as store:
        (exp,) = store.list_experiments()
    out = subprocess.run([sys.executable, "-m", "ncalab.cli.main", "eval", exp.id, "--corpus", str(code_corpus),
                          "--home", str(home), "--tokens", "4096", "--seq-len", "64", "--json"],
                         capture_output=True, text=True, env=_clean_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.count("\n") == 1
    results = json.loads(out.stdout)["results"]
    assert [r["label"] for r in results] == [f"{exp.id}/nca", f"{exp.id}/scratch"]
    assert all(r["ppl"] > 1 for r in results)
