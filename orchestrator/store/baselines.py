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
import pickle
import platform
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
    """Write ``model`` and its sidecar atomically (temp file then rename); returns the pickle."""
    directory.mkdir(parents=True, exist_ok=True)
    pkl, meta = _paths(directory, name)
    metadata = {"name": name, "format": FORMAT, "trained_at": trained_at,
                "window": {"start": window[0], "end": window[1],
                           "days": round((window[1] - window[0]) / 86400.0, 3)},
                "hosts": list(hosts), "versions": library_versions(), **(extra or {})}
    tmp = pkl.with_suffix(".pkl.tmp")
    tmp.write_bytes(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(pkl)
    tmp_meta = meta.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(metadata, indent=2))
    tmp_meta.replace(meta)
    return pkl


def load_baseline(directory: Path, name: str, *, now: float, max_age_s: float
                  ) -> tuple[Any | None, BaselineStatus]:
    """The model and its status; the model is None unless the status is OK."""
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
    try:
        model = pickle.loads(pkl.read_bytes())
    except Exception as exc:  # unpickling can raise nearly anything
        return None, BaselineStatus(BaselineHealth.UNREADABLE,
                                    f"{pkl}: cannot be loaded ({type(exc).__name__}: {exc})"
                                    f"{fallback}", metadata)
    return model, BaselineStatus(BaselineHealth.OK, f"baseline {name!r} trained "
                                 f"{age / 3600:.1f} h ago", metadata)
