"""The Typer command line; one module per command group, joined in ``app``. No logic here."""
