"""``python -m orchestrator`` runs the same CLI as the ``selfheal`` console script."""

from orchestrator.cli.app import main

main()
