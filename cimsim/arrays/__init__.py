"""Cells and arrays: a weight matrix programmed as cell conductances, inputs as DAC planes.

    from cimsim.arrays import program
    layer = program(w_int, chip, np.random.default_rng(0))   # a frozen ProgrammedLayer
    y, events = cimsim.engine.run(layer, x_int)

:func:`program` draws the device state (variation, faults) once; :class:`ProgrammedLayer`
holds it with the layer's geometry and ADC tables. :func:`input_range` / :func:`weight_range`
give the integers a chip accepts; :func:`input_planes` splits inputs into the DAC's planes.
"""

from .encoding import InputPlanes, input_planes, input_range, weight_range
from .program import ProgrammedLayer, default_row_tiles, program

__all__ = [
    "InputPlanes",
    "ProgrammedLayer",
    "default_row_tiles",
    "input_planes",
    "input_range",
    "program",
    "weight_range",
]
