"""Output folders of the commands (`--out`): checked before any work, cleaned only on `--overwrite`.

A command checks its `--out` first, so a path that is a file, cannot be created or is not writable fails
in a second instead of after the model has loaded or half the outputs were written. A folder that already
holds files is refused unless the command may reuse them (`reusable`, e.g. the demo's one overlay) or the
user passes `--overwrite`: otherwise a second run would leave the first run's files (another task's
predictions, a longer video's PNGs) next to its own, and nobody could tell them apart.

`--overwrite` deletes only what an earlier run of the command wrote (`owned`); a folder that also holds
other files is refused even then, so a mistyped `--out` never deletes a user's data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path

from vidseg.errors import DataFormatError

# The names an earlier run left in a folder that are its own (safe for `--overwrite` to delete).
Owned = Callable[[Path], Collection[str]]


def check_out_dir(
    path: str | Path,
    *,
    overwrite: bool = False,
    owned: Owned | None = None,
    reusable: Collection[str] = (),
    flag: str = "--out",
) -> Path:
    """Check that `path` is, or can be created as, a writable folder this run may fill.

    Raises `DataFormatError` naming the folder and `flag` when it is a file, cannot be created or written,
    or holds files other than `reusable` ones (without `overwrite`, or when they are not `owned`).
    Nothing is deleted here: `clean_out_dir` does that once the run is known to start.
    """
    out = Path(path)
    _check_folder_name(path, flag)
    leftovers = _leftovers(out, reusable)
    if leftovers:
        if not overwrite:
            raise DataFormatError(out, f"is not empty ({_names(leftovers)}); pass --overwrite to replace an "
                                  "earlier run's outputs, or choose a new folder", field=flag)
        foreign = sorted(set(leftovers) - set(owned(out) if owned else ()))
        if foreign:
            raise DataFormatError(out, f"holds files vidseg did not write ({_names(foreign)}); --overwrite only "
                                  "deletes an earlier run's outputs: choose a new folder", field=flag)
    return check_writable_dir(out, flag)


def check_writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """Check that `path` is, or can be created as, a folder this process can write into (its contents are
    left alone; nothing is created). Raises `DataFormatError` naming the folder and `flag`."""
    _check_folder_name(path, flag)
    out = Path(path)
    _check_writable(out, flag)
    return out


def _check_folder_name(path: str | Path, flag: str) -> None:
    if not str(path).strip():
        raise DataFormatError(None, "empty folder name", field=flag)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise DataFormatError(path, "exists and is not a folder; give a folder name", field=flag)


def clean_out_dir(
    path: str | Path, *, owned: Owned | None = None, reusable: Collection[str] = ()
) -> list[str]:
    """Delete the earlier run's outputs that `check_out_dir(overwrite=True)` accepted; returns their names.

    Called after the inputs and the model are known to be good, so a failing run deletes nothing.
    """
    out = Path(path)
    mine = set(owned(out) if owned else ())
    removed = [name for name in _leftovers(out, reusable) if name in mine]
    for name in removed:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    return removed


def _leftovers(out: Path, reusable: Collection[str]) -> list[str]:
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.iterdir() if p.name not in reusable)


def _check_writable(out: Path, flag: str) -> None:
    """Write a temporary file into `out`, or into the nearest existing folder above it: nothing is created,
    so a run that fails on a later check leaves no empty folder behind."""
    try:
        existing = next(p for p in (out, *out.absolute().parents) if os.path.lexists(p))
        if not existing.is_dir():
            raise DataFormatError(out, f"cannot create it: {existing} is a file", field=flag)
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:  # no permission, read-only disk, name too long
        raise DataFormatError(out, f"cannot write here ({e.strerror or e})", field=flag) from None
    except ValueError as e:  # e.g. a NUL byte in the name
        raise DataFormatError(out, f"invalid folder name ({e})", field=flag) from None


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def recorded_outputs(out: Path) -> set[str]:
    """The outputs an earlier `vidseg segment` listed in its `summary.json` (and the summary itself)."""
    import json

    try:
        outputs = json.loads((out / "summary.json").read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return set()
    # Only top-level names: a summary edited to list "../x" must not make --overwrite reach outside.
    return {o for o in outputs if isinstance(o, str) and o and "/" not in o and o not in (".", "..")} | {
        "summary.json", "summary.json.tmp"}
