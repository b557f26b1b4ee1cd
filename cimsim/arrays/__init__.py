"""Cells and arrays: a weight matrix programmed as cell conductances, inputs as DAC planes.

    from cimsim.arrays import program
    layer = program(w_int, chip, np.random.default_rng(0))   # a frozen ProgrammedLayer
    y, events = cimsim.engine.run(layer, x_int)

:func:`program` draws the device state (variation, faults) once; :class:`ProgrammedLayer`
holds it with the layer's geometry and ADC tables. :func:`input_range` / :func:`weight_range`
give the integers a chip accepts; :func:`input_planes` splits inputs into the DAC's planes.
"""

import os

# Numba's parallel kernels run on OpenMP (libgomp), whose idle workers spin by default; between
# the many short kernels and GEMMs of a forward pass the spinning workers took the cores the
# next GEMM needed (docs/performance.md). Passive waiting unless the user chose a policy; read
# when the OpenMP runtime starts, i.e. at the first parallel kernel.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .encoding import InputPlanes, input_planes, input_range, weight_range  # noqa: E402
from .program import ProgrammedLayer, default_row_tiles, program  # noqa: E402

__all__ = [
    "InputPlanes",
    "ProgrammedLayer",
    "default_row_tiles",
    "input_planes",
    "input_range",
    "program",
    "weight_range",
]
