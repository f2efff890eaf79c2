"""Control engineering: linearisation, python-control both ways (``lti``), step and
frequency responses (``response``), operating points (``operating``)."""

from blockflow.control.lti import from_control, linearize, to_control
from blockflow.control.operating import OperatingPoint, find_operating_point
from blockflow.control.response import frequency_response, step_response

__all__ = ["OperatingPoint", "find_operating_point", "frequency_response", "from_control",
           "linearize", "step_response", "to_control"]
