"""Bring a database an older selfheal made up to the current schema (``store.schema``).

Columns added since are added in place, existing rows taking the column's default (a subject
of ``""``, an empty JSON object, NULL where the column allows it), and each one is logged. That
is the only kind of change selfheal's schema makes between releases; anything else it cannot do
in place (a new NOT NULL column with no default) is refused with ``StoreSchemaError``, naming
the column and what to do, before any sweep runs on a store that would fail half-way. Tables
that do not exist yet are left to ``metadata.create_all``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import JSON, Column, Engine, inspect
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault

from orchestrator.errors import StoreSchemaError
from orchestrator.store.schema import metadata

log = logging.getLogger(__name__)


def upgrade(engine: Engine) -> list[str]:
    """Add the columns the database lacks; the ``table.column`` names added."""
    found = inspect(engine)
    missing = []
    for table in metadata.sorted_tables:
        if found.has_table(table.name):  # one read of its columns, not one per column
            have = {c["name"] for c in found.get_columns(table.name)}
            missing += [(table.name, column) for column in table.columns
                        if column.name not in have]
    statements = [add_column_sql(engine, table, column) for table, column in missing]
    with engine.begin() as conn:  # all or nothing: never a half-upgraded store
        for sql in statements:
            conn.exec_driver_sql(sql)
    added = [f"{table}.{column.name}" for table, column in missing]
    if added:
        log.warning("store upgraded: columns added", extra={"columns": added,
                                                             "database": engine.url.database})
    return added


def add_column_sql(engine: Engine, table: str, column: Column[Any]) -> str:
    """``ALTER TABLE .. ADD COLUMN`` for ``column``, with its default for the rows already there;
    StoreSchemaError when a NOT NULL column has no default to give them."""
    preparer = engine.dialect.identifier_preparer
    kind = column.type.compile(dialect=engine.dialect)
    sql = f"ALTER TABLE {preparer.quote(table)} ADD COLUMN {preparer.quote(column.name)} {kind}"
    default = _default_literal(column)
    if default is not None:
        sql += f" DEFAULT {default}"
    if not column.nullable:
        if default is None:
            raise StoreSchemaError(
                f"the store at {engine.url.render_as_string(hide_password=True)} lacks column "
                f"{table}.{column.name}, which this selfheal needs and cannot fill for existing "
                "rows: keep the old state dir aside (it holds the audit chain) and point "
                "state.dir at a new one, or add the column by hand")
        sql += " NOT NULL"
    return sql


def _default_literal(column: Column[Any]) -> str | None:
    """The column's Python-side default as an SQL literal; None when it has none."""
    default = column.default
    if isinstance(default, CallableColumnDefault):
        value = default.arg(None)  # type: ignore[arg-type]  # a wrapped dict(): no context used
    elif isinstance(default, ScalarElementColumnDefault):
        value = default.arg
    else:
        return None
    if isinstance(column.type, JSON):
        value = json.dumps(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return None
