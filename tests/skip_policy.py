"""Skips: each with its reason on a contributor's machine, and never silent in CI.

A pytest plugin (tests/conftest.py imports its hooks): with NCALAB_STRICT_SKIPS=1, which .ci/run
sets, a test that skips for a reason not on ALLOWED_SKIPS fails instead, with its name and reason.
"""

import os

import pytest

# What no install step can give a machine, so CI may skip for it too. Every other skip (a missing
# PostgreSQL server, Chromium, an extra, git) fails the run where NCALAB_STRICT_SKIPS=1 (.ci/run
# sets it): there, a skip would silently drop the store's server tests or the browser test.
ALLOWED_SKIPS = (
    "needs a CUDA GPU",
    "golden frames were computed on x86-64 with FMA",
)
STRICT_SKIPS = os.environ.get("NCALAB_STRICT_SKIPS") == "1"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_a_skip_not_allowed(report) -> None:
    if not (STRICT_SKIPS and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if reason not in ALLOWED_SKIPS:
        report.outcome = "failed"
        allowed = "; ".join(repr(r) for r in ALLOWED_SKIPS)
        report.longrepr = (f"{report.nodeid} skipped ({reason}), and this run allows skips only for: {allowed} "
                           "(ALLOWED_SKIPS in tests/skip_policy.py; NCALAB_STRICT_SKIPS=1)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_skip_not_allowed(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module skipped as a whole (importorskip at its top)
    _fail_a_skip_not_allowed(outcome.get_result())
