"""The names of the optical flow methods (`mertk.flow.fields` builds them; the command line
offers these lists without loading OpenCV). What each one is: see `mertk.flow.fields`; their
endpoint errors and costs: `benchmarks/bench_build_unimer.py` and the README."""
from __future__ import annotations

FLOW_METHODS = ("dis", "dis_medium", "farneback", "tvl1")  # onset->apex flow
CURVE_FLOW_METHODS = ("dis_light", "dis_fast", *FLOW_METHODS)  # also cheaper ones for the motion curve
