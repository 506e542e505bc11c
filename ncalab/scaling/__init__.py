"""Scaling laws for the two arms: fit L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla's approach
3 as replicated by Besiroglu et al. 2024), bootstrap and leave-one-out its uncertainty, and turn
a scratch and a warm arm's laws into effective data transferred and a crossover size.

Pure numpy and scipy: law.py (the law and its fit), bootstrap.py (intervals, leave-one-out),
transfer.py (effective data transferred, gain, crossover).
"""

from ncalab.scaling.bootstrap import Bootstrap, Interval, LeaveOneOut, LeftOut, bootstrap_law, leave_one_out
from ncalab.scaling.law import INIT_GRID, CannotFit, Fit, Law, fit_law
from ncalab.scaling.transfer import (
                                     Crossover,
                                     crossover,
                                     crossover_interval,
                                     gain,
                                     measured_transfer,
                                     scratch_tokens,
                                     transfer,
                                     transfer_multiple,
)

__all__ = ["INIT_GRID", "Bootstrap", "CannotFit", "Crossover", "Fit", "Interval", "Law", "LeaveOneOut", "LeftOut",
           "bootstrap_law", "crossover", "crossover_interval", "fit_law", "gain", "leave_one_out",
           "measured_transfer", "scratch_tokens", "transfer", "transfer_multiple"]
