"""What the demo models share: pickle-free ``.npz`` weights, deterministic CPU training, accuracy.

Both bundled models (:mod:`.digits_cnn`, :mod:`.resnet_digits`) are trained by scripts in the
repository and shipped as ``.npz`` files in ``cimsim/data``; this module holds the one copy of
the weight I/O and of the training loop that reproduces them.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._atomic import write_bytes
from .._seed import check_positive_int, check_seed
from ..data import bundled_file
from ..evaluate import accuracy

__all__ = ["deterministic_cpu", "evaluate", "fit_classifier", "load_state", "save_weights"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def deterministic_cpu(seed: int) -> Iterator[None]:
    """Seed torch and force bitwise-reproducible CPU kernels, restoring state on exit (the
    global RNG too: the seeding was left behind, the caller's random stream reset)."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        # Multi-threaded reductions can split work differently on machines with
        # different core counts; one thread makes the weights identical everywhere.
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(prev_threads)
            torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn_only)


def fit_classifier(
    build: Callable[[], nn.Module],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    cosine_lr: bool = False,
) -> nn.Module:
    """Train ``build()`` with Adam on cross-entropy, deterministically on CPU.

    The minibatch order comes from a ``torch.Generator`` seeded by ``seed``; given the same
    arguments and the same torch build, the returned weights are bitwise identical run to run.

    Parameters
    ----------
    build : callable
        Returns a fresh model; called after seeding, so ``seed`` fixes its initialisation.
    x_train, y_train : torch.Tensor
        Inputs ``(n, ...)`` and int64 labels ``(n,)``.
    seed, epochs, batch_size, lr, weight_decay
        Training settings (Adam's L2 ``weight_decay``).
    cosine_lr : bool
        Anneal the learning rate to zero over the epochs with a cosine schedule.

    Returns
    -------
    nn.Module
        The trained model in eval mode, on CPU.
    """
    seed = check_seed(seed)
    # epochs = 0 returned an untrained model; batch_size = 0 failed in range()
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    n = x_train.shape[0]
    # (no input divided the epoch's loss by 0; labels of another count were cut to the inputs'
    # or failed in the batch loop)
    if n == 0:
        raise ValueError("x_train holds no input; allowed: inputs (n, ...) with n >= 1")
    if y_train.shape[:1] != (n,):
        raise ValueError(f"y_train has shape {tuple(y_train.shape)}; allowed: one label per "
                         f"input of x_train, shape ({n},)")
    with deterministic_cpu(seed):
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
                    if cosine_lr else None)
        loss_fn = nn.CrossEntropyLoss()
        # A dedicated generator keeps the batch order independent of any other
        # consumer of the global RNG after initialisation.
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * idx.numel()
            if schedule is not None:
                schedule.step()
            logger.debug("epoch %d/%d: train loss %.4f", epoch + 1, epochs, total / n)
    model.eval()
    return model


_INTEGERS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16,
             torch.uint32)
"""The integer dtypes int64 holds exactly (a uint64 may not)."""


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model.state_dict()`` to an uncompressed, pickle-free ``.npz``.

    Floating-point tensors are stored as float32, integer ones (BatchNorm's
    ``num_batches_tracked``) as int64.

    Parameters
    ----------
    model : torch.nn.Module
        Model whose state dict holds floating-point and integer tensors.
    path : str or pathlib.Path
        Destination file; parent directories are created.

    Raises
    ------
    TypeError
        If the state dict holds a tensor that is neither floating-point nor integer (it would
        not round-trip).
    """
    arrays: dict[str, np.ndarray] = {}
    for name, tensor in model.state_dict().items():
        # cast in torch: NumPy has no bfloat16 ('Got unsupported ScalarType BFloat16'), and
        # an int8 / uint8 buffer was refused as "expected a float or integer tensor"
        if tensor.is_floating_point():
            dtype = torch.float32
        elif tensor.dtype in _INTEGERS:
            dtype = torch.int64
        else:
            raise TypeError(f"state_dict entry {name!r} has dtype {tensor.dtype}; expected a "
                            "float or integer tensor")
        arrays[name] = tensor.detach().cpu().to(dtype).numpy().copy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # made in memory, then written whole or not at all (cimsim._atomic): a kill mid-write
    # left a truncated archive in place of the earlier weights (BadZipFile at the next load);
    # a file object also keeps numpy from appending a second ".npz"
    buf = io.BytesIO()
    # (numpy's stubs type every keyword as its `allow_pickle` flag; names here are tensors)
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    write_bytes(path, buf.getvalue())
    logger.info("wrote %d arrays to %s", len(arrays), path)


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Read an ``.npz`` state dict; ``allow_pickle=False`` so a file cannot run code."""
    state: dict[str, torch.Tensor] = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            arr = npz[key]
            dtype = np.int64 if np.issubdtype(arr.dtype, np.integer) else np.float32
            state[key] = torch.from_numpy(np.array(arr, dtype=dtype))
    return state


def load_state(model: nn.Module, path: str | Path | None, bundled: str) -> nn.Module:
    """Load weights into ``model`` (strict names and shapes) and put it in eval mode.

    Parameters
    ----------
    model : nn.Module
        A freshly built model of the file's architecture.
    path : str, pathlib.Path or None
        A file written by :func:`save_weights`; ``None`` reads the bundled file ``bundled``.
    bundled : str
        File name inside ``cimsim/data``.

    Raises
    ------
    KeyError, RuntimeError
        If the file's arrays do not match the model's parameter names/shapes
        (raised by ``load_state_dict(strict=True)``).
    """
    if path is None:
        with bundled_file(bundled) as file:
            state = _read_state(file)
    else:
        state = _read_state(Path(path))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Classification accuracy of ``model`` on ``(x, y)``, measured in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``(B, ...)`` inputs to ``(B, 10)`` logits. It is put in eval mode
        and its previous mode is restored afterwards.
    x : torch.Tensor
        Inputs, shape ``(n, ...)``.
    y : torch.Tensor
        Labels, int64, shape ``(n,)``.
    batch_size : int, optional
        Inputs per forward pass.

    Returns
    -------
    float
        Fraction of correctly classified inputs, in ``[0, 1]``.
    """
    from ..train._modes import module_modes, restore_modes  # (cimsim.train imports torch)

    # Dropout and batch-norm statistics must not vary while the accuracy is measured; each
    # module's own mode comes back (a BatchNorm frozen in eval mode in a training model too)
    modes = module_modes(model)
    model.eval()
    try:
        return accuracy(model, x, y, batch_size=batch_size)
    finally:
        restore_modes(modes)
