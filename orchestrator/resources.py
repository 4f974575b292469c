"""Where the Ansible project and the default rules are: the checkout's, or the installed copy.

Called by ``config`` for the defaults of ``ansible.project_dir`` and ``rules.dir``, and by
``selfheal init`` for the rules it copies. In a checkout (pyproject.toml beside the package)
they are the checkout's own ``ansible/`` and ``rules/``; in an install (a wheel, where the
package's parent is site-packages, whose ``ansible/`` is ansible-core itself) they are the
copies setup.py ships under ``orchestrator/bundled/``.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent


def in_checkout() -> bool:
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "ansible" / "ansible.cfg"
                                                        ).is_file()


def shipped(name: str) -> Path:
    """``ansible`` or ``rules``: the checkout's folder, else the copy inside the package."""
    return CHECKOUT / name if in_checkout() else PACKAGE_DIR / "bundled" / name
