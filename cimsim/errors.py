"""Exceptions raised by cimsim. All derive from :class:`CimsimError`."""


class CimsimError(Exception):
    """Base class of every error cimsim raises on purpose."""


class ConfigError(CimsimError, ValueError):
    """A configuration value is invalid; the message names the field, value and what is allowed."""


class MappingError(CimsimError, ValueError):
    """A model or operand cannot be mapped onto the arrays as asked."""


class CapacityError(CimsimError):
    """The model needs more arrays than the chip has and time-multiplexing is not allowed."""


class WeightReadError(MappingError, AttributeError):
    """The model's own code computes with a weight of a mapped (or twin) layer, whose weights
    are on the simulated arrays (or quantized in its call): a refusal like any other. Reading
    the weight gives a ``WeightView`` (``cimsim.mapping.weight_view``): its dtype, device and
    shape, no values; any operation on it raises this. An ``AttributeError`` too, as the read
    of a weight the source module did not hold is."""


class SignedInputError(ConfigError):
    """Layers' calibration inputs go below 0 on a chip whose 1-b inputs cannot hold a sign.
    ``layers``: each by the name ``exclude`` takes to keep it digital -> its lowest input;
    ``input_bits``: the chip's."""

    def __init__(self, message: str, layers: dict[str, float] | None = None,
                 input_bits: int | None = None):
        super().__init__(message)
        self.layers = dict(layers or {})
        self.input_bits = input_bits
