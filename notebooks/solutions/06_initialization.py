"""Solutions to the exercises of notebooks/06_initialization.ipynb (the teacher's version)."""

import math


def xavier_std(fan_in, fan_out):
    """Xavier/Glorot: Var(w) = 2 / (fan_in + fan_out)."""
    return math.sqrt(2 / (fan_in + fan_out))


def kaiming_std(fan_in):
    """Kaiming/He for ReLU: Var(w) = 2 / fan_in (ReLU zeroes half of its inputs)."""
    return math.sqrt(2 / fan_in)
