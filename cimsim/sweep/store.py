"""What a sweep keeps on disk: the identity of a point and ``sweep.jsonl``, its records.

A point's id hashes everything its result depends on (resolved axis values, model, data,
calibration, base chip, seed), so a record found under that id in ``sweep.jsonl`` is that
point's result and need not be computed again: this is how an interrupted sweep resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .._atomic import exclusive_lock
from .._digest import hash_named as _hash_named
from .._digest import hash_tensor as _hash_tensor
from .._json import saved_numbers
from ..config import ChipConfig, without_set_note
from ..engine import engine_settings

__all__ = ["JSONL", "append_record", "clean", "context_hash", "data_fingerprint",
           "model_fingerprint", "point_id", "read_records", "repair_tail", "results_lock"]

log = logging.getLogger(__name__)

JSONL = "sweep.jsonl"
"""File name of the records, in the sweep's output folder."""


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a model's class, printed structure, every state-dict tensor and, where it
    has any, its non-persistent buffers (a mask registered with ``persistent=False`` changed
    the outputs, not the id: a rerun resumed the other model's results). A model with none
    keeps the id it had before they were hashed. Code (an edited ``forward``) and plain
    attributes are not hashed: docs/sweep.md says to sweep such a model into another folder."""
    h = hashlib.sha256()
    h.update(type(model).__qualname__.encode())
    h.update(repr(model).encode())
    state = model.state_dict()
    _hash_named(h, state.items())
    extra = [(n, b) for n, b in model.named_buffers() if n not in state]
    if extra:
        h.update(b"non-persistent buffers")
        _hash_named(h, extra)
    return h.hexdigest()


def data_fingerprint(*tensors: Any) -> str:
    """SHA-256 of tensors (``None`` entries count as absent; a dict of keyword inputs by its
    names and tensors, in name order)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none")
        elif isinstance(t, dict):
            _hash_named(h, t.items())
        else:
            _hash_tensor(h, t)
    return h.hexdigest()


#: The sweep's default inputs per batch: a sweep at it keeps the ids it had before the batch
#: size was hashed (:func:`context_hash`).
DEFAULT_BATCH_SIZE = 256


def context_hash(model_fp: str, data_fp: str, calibration: Any, chip: ChipConfig,
                 seed: int, exclude: tuple[str, ...] = (),
                 batch_size: int = DEFAULT_BATCH_SIZE) -> str:
    """SHA-256 of what every point of a sweep shares: model and data fingerprints, the
    calibration (a count of first inputs, or a tensor), the base chip, the seed, the layers
    kept digital (absent when none: a sweep without ``exclude`` keeps the ids it had before
    the option existed, and resumes) and the batch size (a noisy chip draws its noise per
    batch; absent at :data:`DEFAULT_BATCH_SIZE`, for the same reason), and the process's
    engine settings where not the defaults (:func:`cimsim.engine.engine_settings`)."""
    cal_key = (f"first:{calibration}" if isinstance(calibration, int)
               else data_fingerprint(calibration))
    fields = chip.to_dict()
    # the words --set adds to the description ("... (with --set tech.vdd_v=0.8)") are no
    # field: a --set to the preset's own value is the preset, and resumes its points
    fields["description"] = without_set_note(str(fields.get("description", "")))
    shared: dict[str, Any] = {"model": model_fp, "data": data_fp, "calibration": cal_key,
                              "chip": fields, "seed": seed}
    if exclude:
        shared["exclude"] = list(exclude)
    if batch_size != DEFAULT_BATCH_SIZE:
        shared["batch_size"] = batch_size
    shared.update(engine_settings())  # none at the defaults: the ids sweeps had
    text = json.dumps(shared, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def point_id(resolved: Mapping[str, Any], context: str) -> str:
    """Stable id of a point: a hash of its resolved axis values and the sweep's context
    (:func:`context_hash`)."""
    text = json.dumps({"point": dict(sorted(resolved.items())), "context": context},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, NumPy scalars plain numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records of ``sweep.jsonl`` by point id (the last one wins). A line that is not a JSON
    record (a torn write; bytes that are not UTF-8, which failed the sweep with a traceback)
    or whose figures are not numbers (an edited ``"accuracy": "abc"`` was trusted, an empty
    figure beside status ``ok``) is skipped with a warning: its point runs again."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            rec = _record(raw)
            if rec is None:
                log.warning("%s:%d: unreadable line skipped (an interrupted write?)", path, n)
                continue
            try:
                rec = saved_numbers(rec, f"{path}:{n}")
                _check_fields(rec, f"{path}:{n}")
            except TypeError as exc:
                log.warning("%s; the record is skipped and its point runs again", exc)
                continue
            records[rec["point_id"]] = rec
    return records


def _check_fields(rec: dict[str, Any], where: str) -> None:
    """The fields a record's readers take for given, as a sweep writes them: a text
    ``point_id`` (``[1]`` failed the sweep, "unhashable type", at every rerun), a text
    ``status`` (a record without one was taken for a finished point and never run again) and
    a whole ``n_arrays`` (7.5 failed the table after every point had run, no file written).
    A TypeError naming ``where`` and the field otherwise."""
    for key in ("point_id", "status"):
        if not isinstance(rec.get(key), str):
            raise TypeError(f"{where}: {key!r} is {rec.get(key)!r}, not text")
    arrays = rec.get("n_arrays")
    if arrays is not None and not (isinstance(arrays, (int, float)) and float(arrays).is_integer()):
        raise TypeError(f"{where}: 'n_arrays' is {arrays!r}, not a whole number")


def repair_tail(path: Path) -> int:
    """Cut a torn last line (a write killed half-way) off ``path``, so that the next record
    starts on a line of its own instead of being glued to the torn one and lost again at every
    rerun. Returns the number of bytes removed."""
    if not path.is_file():
        return 0
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # find the end of the last complete line, reading backwards in blocks
        end, block = size, 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - block)
            fh.seek(start)
            chunk = fh.read(end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            end = start
        fh.seek(keep)
        if _record(fh.read(size - keep)) is not None:
            # a complete record whose newline was lost (an editor, a tool stripping it): kept
            fh.write(b"\n")
            log.warning("%s: the last record had no newline; one was added", path)
            return 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: removed a torn last line (%d bytes) left by an interrupted write", path,
                size - keep)
    return size - keep


def _record(raw: bytes) -> dict[str, Any] | None:
    """``raw`` (one line of ``sweep.jsonl``, its newline or not) as a record, or None where
    it is none: not UTF-8, not JSON (the torn start of one), or no point's record."""
    try:
        # (utf-8-sig: an editor's byte-order mark made the first record "unreadable")
        rec = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and "point_id" in rec else None


@contextlib.contextmanager
def results_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` for the duration: a second sweep into
    the same folder is refused at once instead of computing every point again beside the
    first (:func:`cimsim._atomic.exclusive_lock`)."""
    with exclusive_lock(path.with_name(path.name + ".lock"), "sweep",
                        "wait for it or use another --out"):
        yield


def append_record(path: Path, record: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``record`` to ``path`` as one JSON line, on disk before returning (a kill after
    this loses nothing); returns the record as it will read back."""
    cleaned = clean(dict(record))
    line = json.dumps(cleaned, allow_nan=False, sort_keys=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return json.loads(line)
