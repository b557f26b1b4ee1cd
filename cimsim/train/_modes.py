"""Every module's own training flag, kept across a pass that needs eval mode
(:mod:`cimsim._modes`, which ``cimsim.evaluate`` shares without importing the training
package)."""

from __future__ import annotations

from .._modes import evaluated, module_modes, restore_modes

__all__ = ["evaluated", "module_modes", "restore_modes"]
