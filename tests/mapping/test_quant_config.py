"""The transformer deploy options of ``QuantConfig`` (``act_zero_point``, ``smooth_alpha``):
validation naming the field, TOML round trip."""

from __future__ import annotations

import pytest

import cimsim
from cimsim.config import ChipConfig, QuantConfig
from cimsim.errors import ConfigError


def test_defaults_are_off():
    q = QuantConfig()
    assert q.act_zero_point is False and q.smooth_alpha is None


@pytest.mark.parametrize("kwargs, field", [
    ({"act_zero_point": 1}, "act_zero_point"),
    ({"act_zero_point": "yes"}, "act_zero_point"),
    ({"smooth_alpha": -0.1}, "smooth_alpha"),
    ({"smooth_alpha": 1.5}, "smooth_alpha"),
    ({"smooth_alpha": float("nan")}, "smooth_alpha"),
    ({"smooth_alpha": "half"}, "smooth_alpha"),
    ({"smooth_alpha": True}, "smooth_alpha"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"QuantConfig.{field}"):
        QuantConfig(**kwargs)


@pytest.mark.parametrize("alpha", [None, 0.5, 1])
def test_toml_round_trip(tmp_path, alpha):
    chip = cimsim.load_chip("ideal")
    chip = chip.replace(quant=chip.quant.replace(act_zero_point=True, smooth_alpha=alpha))
    path = tmp_path / "chip.toml"
    chip.save(path)
    back = cimsim.load_chip(path)
    assert back == chip
    assert back.quant.smooth_alpha == (None if alpha is None else float(alpha))
    assert ChipConfig.from_dict(chip.to_dict()) == chip
