"""The job process of one experiment: `python -m ncalab.cli.job --home H EXP_ID`, or each
process of a multi-process job under `torchrun --standalone --nproc-per-node N -m ncalab.cli.job`.
What the job does is ncalab.services.worker's; this is its command line."""

from __future__ import annotations

import argparse
import sys

from ncalab.cli.quiet import quiet_third_party, verbose_requested
from ncalab.services.worker import run_job


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ncalab-job")
    ap.add_argument("--home", required=True)
    ap.add_argument("experiment")
    args = ap.parse_args(argv)
    quiet_third_party(verbose_requested())  # the log keeps ncalab's lines only, unless --verbose started it

    return run_job(args.home, args.experiment)


if __name__ == "__main__":
    sys.exit(main())
