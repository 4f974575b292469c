"""Trained baselines as artefacts: a pickle per model plus a JSON metadata sidecar.

Called by ``selfheal baseline train`` (``save_baseline``) and by the sweep (``load_baseline``).
The sidecar says when the model was trained, on which window, for which hosts and with which
library versions. ``load_baseline`` never raises for a missing, stale or unreadable model: it
returns a ``BaselineStatus`` that is not OK and says why, and the sweep falls back to fixed
thresholds and reports it (missing or stale data means "unknown", never "healthy").
Only load artefacts this controller wrote: pickle runs code from the file.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

FORMAT = 1


class BaselineHealth(StrEnum):
    OK = "ok"
    MISSING = "missing"
    STALE = "stale"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class BaselineStatus:
    health: BaselineHealth
    message: str
    metadata: dict[str, Any]

    @property
    def usable(self) -> bool:
        return self.health is BaselineHealth.OK


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model depends on (sklearn only when already imported)."""
    import sys

    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "format": "1"}
    for name in ("pandas", "sklearn"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    try:
        from importlib.metadata import version

        versions["selfheal"] = version("selfheal")
    except Exception:  # not installed as a distribution (running from a checkout)
        versions["selfheal"] = "checkout"
    return versions


def _paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / f"{name}.pkl", directory / f"{name}.json"


def save_baseline(directory: Path, name: str, model: Any, *, trained_at: float,
                  window: tuple[float, float], hosts: list[str] | tuple[str, ...],
                  extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and its sidecar atomically (private temp file, fsync, rename)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    pkl, meta = _paths(directory, name)
    metadata = {"name": name, "format": FORMAT, "trained_at": trained_at,
                "window": {"start": window[0], "end": window[1],
                           "days": round((window[1] - window[0]) / 86400.0, 3)},
                "hosts": list(hosts), "versions": library_versions(), **(extra or {})}
    _write_private(pkl, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    _write_private(meta, json.dumps(metadata, indent=2).encode())
    return pkl


def _write_private(target: Path, data: bytes) -> None:
    """Mode 0600 whatever the umask (the loader refuses files others may write)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def trusted(path: Path) -> str | None:
    """Why ``path`` must not be unpickled, or None when this user owns it and no one else
    may write it."""
    st = path.stat()
    if st.st_uid != os.getuid():
        return f"{path} is owned by uid {st.st_uid}, not this user"
    if st.st_mode & 0o022:
        return f"{path} is writable by group or others"
    return None


def load_baseline(directory: Path, name: str, *, now: float, max_age_s: float,
                  unpickle: bool = True) -> tuple[Any | None, BaselineStatus]:
    """The model and its status; the model is None unless the status is OK.

    ``unpickle=False`` checks everything but loads nothing (for `baseline status`)."""
    pkl, meta = _paths(directory, name)
    fallback = "; falling back to fixed thresholds (run `selfheal baseline train`)"
    if not pkl.is_file() or not meta.is_file():
        return None, BaselineStatus(BaselineHealth.MISSING,
                                    f"no baseline {name!r} in {directory}{fallback}", {})
    try:
        metadata = json.loads(meta.read_text())
        trained_at = float(metadata["trained_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, BaselineStatus(BaselineHealth.UNREADABLE,
                                    f"{meta}: unreadable metadata ({exc}){fallback}", {})
    age = now - trained_at
    if age > max_age_s:
        return None, BaselineStatus(
            BaselineHealth.STALE, f"baseline {name!r} is {age / 3600:.1f} h old (limit "
            f"{max_age_s / 3600:.1f} h){fallback}", metadata)
    distrust = trusted(pkl)
    if distrust is not None:
        return None, BaselineStatus(BaselineHealth.UNREADABLE,
                                    f"{distrust}: not loaded{fallback}", metadata)
    if not unpickle:
        return None, BaselineStatus(BaselineHealth.OK, f"baseline {name!r} trained "
                                    f"{age / 3600:.1f} h ago", metadata)
    try:
        model = pickle.loads(pkl.read_bytes())
    except Exception as exc:  # unpickling can raise nearly anything
        return None, BaselineStatus(BaselineHealth.UNREADABLE,
                                    f"{pkl}: cannot be loaded ({type(exc).__name__}: {exc})"
                                    f"{fallback}", metadata)
    return model, BaselineStatus(BaselineHealth.OK, f"baseline {name!r} trained "
                                 f"{age / 3600:.1f} h ago", metadata)
