"""Files a reader never sees half-written, and that leave nothing behind when writing them fails.

Every file of a run dir that is rewritten (summary.json, identity.json, checkpoints, a truncated metrics.jsonl)
is written to a temporary file beside it and renamed over it (atomic on POSIX). When the write fails (a full
disk, a quota), the temporary file is removed and the error names the file meant, with the free space left:
a bare `[Errno 28] No space left on device` from torch.save names no file.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


class WriteFailed(OSError):
    """Writing one of the run's files failed; the message names it."""


@contextlib.contextmanager
def writing(path: Path, previous: Path | None = None):
    """Yield a temporary path beside `path`; on success rename it over `path` (first moving the old `path`, if
    any, to `previous`), on any failure remove it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a failed write as a RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, WriteFailed):
            raise
        text = f"cannot write {path}: {' '.join(str(e).split())[:200]} ({_free(path)})"
        code = getattr(e, "errno", None)
        raise (WriteFailed(code, text) if code else WriteFailed(text)) from e
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _free(path: Path) -> str:
    try:
        return f"{shutil.disk_usage(path.parent).free:,} bytes free there"
    except OSError:
        return "free space unknown"


def write_json(path: Path, obj, **dumps) -> None:
    with writing(path) as tmp:
        tmp.write_text(json.dumps(obj, **dumps))
