"""JSON and list files: loading with errors that name the file and field, deterministic writing.

The dataset readers (`vidseg.data`) and the evaluators (`vidseg.evaluation`) read their JSON through these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidseg.errors import DataFormatError


def load_json(path: str | Path) -> Any:
    """Parse a JSON file; `DataFormatError` for a missing, empty, truncated or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataFormatError(path, "file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        what = "truncated JSON" if e.pos >= len(text.rstrip()) - 1 else "invalid JSON"
        raise DataFormatError(path, f"{what} at line {e.lineno} column {e.colno}: {e.msg}", field="<json>") from e


def load_json_object(path: str | Path) -> dict[str, Any]:
    """`load_json` of a file whose top level must be an object (a dataset's annotation file)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(path, "top level must be an object", field="<json>")
    return data


def require(obj: Any, key: str, kind: type | tuple[type, ...], path: str | Path, where: str) -> Any:
    """`obj[key]`, checked to exist and have type `kind` (`object`: any); the error names `where.key`."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected an object, got {type(obj).__name__}", field=where)
    if key not in obj:
        raise DataFormatError(path, "missing", field=f"{where}.{key}" if where else key)
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataFormatError(
            path, f"expected {names}, got {type(value).__name__}", field=f"{where}.{key}" if where else key
        )
    return value


def dump_json(path: Path, obj: Any) -> None:
    """Write compact JSON with a trailing newline; same object, same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a list file (`train.txt`); `DataFormatError` if missing."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def write_lines(path: Path, lines: list[str]) -> None:
    """One item per line, every line newline-terminated (VSPW's evaluator chops the last character)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
