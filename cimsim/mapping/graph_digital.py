"""What an exported graph (``.pt2``, TorchScript) computes digitally, made visible to deploy.

A model loaded as a Python module lists its digital parts by module: an ``nn.Embedding`` ("layer
type not supported"), an ``nn.MultiheadAttention``'s activation products ("attention
products"), weights reaching a product without a module (``cimsim.mapping.functional``). In an
exported graph these are bare aten calls, and they used to run in float unlisted. Here:

- ``aten.embedding`` on a constant table becomes an ``nn.Embedding`` module (deploy then lists
  and warns about it as for a Python model);
- ``aten.scaled_dot_product_attention`` becomes an :class:`AttentionProducts` module, which
  deploy lists as the activation products it keeps digital (``digital_row``);
- the aten forms of the matrix products (:data:`ATEN_PRODUCTS`) are watched by
  ``cimsim.mapping.functional`` like ``torch.matmul``: a parameter reaching one is named.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ATEN_PRODUCTS", "ATTENTION_REASON", "AttentionProducts", "digital_module_for"]

ATTENTION_REASON = "activation x activation (Q·Kᵀ, softmax, ·V) kept digital"

_aten = torch.ops.aten
#: matrix products as an exported graph calls them
ATEN_PRODUCTS = frozenset({
    _aten.matmul.default, _aten.mm.default, _aten.bmm.default, _aten.mv.default,
    _aten.addmm.default, _aten.baddbmm.default, _aten.addbmm.default, _aten.einsum.default,
    _aten.tensordot.default, _aten.inner.default, _aten.linear.default,
    _aten.bilinear.default, _aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default,
    _aten.convolution.default,
})


class AttentionProducts(nn.Module):
    """``F.scaled_dot_product_attention`` of an exported graph, as a module deploy lists."""

    digital_row = ("attention products", ATTENTION_REASON)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return F.scaled_dot_product_attention(*args, **kwargs)


def digital_module_for(node: torch.fx.Node, table: torch.Tensor | None) -> nn.Module | None:
    """The module standing for ``node`` (``table``: its constant first operand, or None), or
    None when ``node`` is neither an embedding look-up of a constant table nor an attention."""
    if node.target is _aten.scaled_dot_product_attention.default:
        return AttentionProducts()
    if node.target is _aten.embedding.default and table is not None and table.dim() == 2:
        padding_idx: Any = node.args[2] if len(node.args) > 2 else -1
        # the table's dtype and device: a float64 model's embedding rebuilt in float32 fed
        # float32 rows to its float64 layers ("mat1 and mat2 must have the same dtype")
        emb = nn.Embedding(table.shape[0], table.shape[1],
                           padding_idx=None if padding_idx < 0 else int(padding_idx),
                           dtype=table.dtype, device=table.device)
        with torch.no_grad():
            emb.weight.copy_(table)
        return emb
    return None
