"""selfheal: an Ansible-driven self-healing controller for fleets of VPSes.

The package is laid out as the closed loop in docs (DESIGN.md): ``sources`` observe, ``core``
decides (pure, no I/O), ``execute`` acts through ansible-runner, ``store`` records. ``engine``
wires one sweep; ``cli`` is the Typer front end.
"""

__version__ = "0.1.0"
