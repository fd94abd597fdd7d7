"""recast: align a black-box LLM by recasting its input with a small refiner LM."""

import os

__version__ = "0.1.0"

# OpenMP threads that spin at every barrier wait for peers the OS has descheduled when the CPU
# is shared with other jobs: on this 2-core machine under load, a 1.5B forward pass ran 1.5-4x
# faster with passive waiting (docs/method.md, "Speed"). It must be set before torch loads
# OpenMP; an explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
