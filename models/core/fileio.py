"""Atomic file writes shared by every stage (standard library only, so deploy can use it without torch).

A reader never sees a half-written file: data goes to a temporary file in the same folder,
is flushed to disk, and is renamed over the target in one step. If anything fails before the
rename, the old file (if any) is left untouched and the temporary file is removed.

Files get the permissions a plain ``open()`` would give (0666 less the umask), not mkstemp's 0600.
Temporary files are named ``.<name>.<pid>.<random><suffix>``; one left behind by a process that was
killed mid-write is removed by the next write of the same file (never one of a live process).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Remove ``.<name>.<pid>.*`` files next to ``path`` left by processes that no longer run."""
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f".{path.name}.*"):
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            candidate.unlink(missing_ok=True)


def _temporary(path: Path, suffix: str) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~current_umask())
    return fd, name


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    fd, tmp_name = _temporary(path, ".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # BaseException so that Ctrl-C mid-write also cleans up; the error still propagates.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda file: file.write(data))


def json_safe(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and a file with a bare NaN is not JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_bytes(path, (json_text(obj) + "\n").encode("utf-8"))


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for writers that want a file name rather than a file
    object (a video encoder, a library's ``save(path)``). When the block ends without error the file
    is flushed to disk and renamed to ``path``; on error it is removed and ``path`` is left as it was.

    The writer must have closed the file before the block ends. The temporary name keeps ``path``'s
    suffix, because some writers (OpenCV's VideoWriter) pick the format from it.
    """
    path = Path(path)
    fd, tmp_name = _temporary(path, path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as file:
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_output_folder(folder: Path, flag: str = "--out") -> None:
    """Refuse, before any work, an output folder that is a file (or lies under one)."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise _tool_error(f"{flag} {folder}: {parent} is a file, not a folder")
            return


def refuse_to_overwrite(path: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    """An existing result is replaced only when asked; say so before any work is done."""
    if path.exists() and not overwrite:
        raise _tool_error(f"{path}: already exists; pass {flag} to replace it (it is kept if the new one fails)")


def _tool_error(message: str) -> Exception:
    from roadseg.models.core.cli import ToolError

    return ToolError(message)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not supported on every platform/filesystem.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
