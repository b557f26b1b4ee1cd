"""Exceptions raised by cimsim. All derive from :class:`CimsimError`."""


class CimsimError(Exception):
    """Base class of every error cimsim raises on purpose."""


class ConfigError(CimsimError, ValueError):
    """A configuration value is invalid; the message names the field, value and what is allowed."""


class MappingError(CimsimError, ValueError):
    """A model or operand cannot be mapped onto the arrays as asked."""


class CapacityError(CimsimError):
    """The model needs more arrays than the chip has and time-multiplexing is not allowed."""
