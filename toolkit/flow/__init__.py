"""Dense optical flow between face crops: DIS (default), Farneback, TV-L1; strain; head-motion compensation."""
from mertk.flow.fields import (
    FlowMethodError,
    compensate_head_motion,
    endpoint_error,
    estimate_flow,
    median_of_rows,
    optical_strain,
    resize_flow,
)
from mertk.flow.methods import CURVE_FLOW_METHODS, FLOW_METHODS

__all__ = [
    "CURVE_FLOW_METHODS",
    "FLOW_METHODS",
    "FlowMethodError",
    "compensate_head_motion",
    "endpoint_error",
    "estimate_flow",
    "median_of_rows",
    "optical_strain",
    "resize_flow",
]
