"""The delivery path's statements, run on the driver's cursor instead of SQLAlchemy's
execution path.

For each of the few statements every event runs (``worker.ledger.statements``), SQLAlchemy's
path per execution (a cache key, an execution context, a result object and its row
processors) cost more CPU than the database spent running it. Here a statement is compiled
once per parameter set and kept; an execution applies the same type processors SQLAlchemy
applies (bind and result), runs the SQL on the DBAPI cursor and returns plain rows.

What stays SQLAlchemy's:
- errors: a driver error goes to SQLAlchemy's own handler, so it is raised as SQLAlchemy
  raises it (``IntegrityError``, ``OperationalError``...) and a lost connection is
  invalidated as usual;
- instrumentation: while anything listens to the engine's cursor events (a tracer, a test
  that pauses after a statement), every statement takes SQLAlchemy's path, events and all;
- what it is not made for: several rows at once, lists expanded into ``IN``, SQL defaults
  that are not plain values. Those take SQLAlchemy's path too.

The fence: this relies on three private SQLAlchemy APIs (``_cached_bind_processor``,
``_cached_result_processor``, ``_handle_dbapi_exception``), so it runs only on the
SQLAlchemy minor version it was written and tested for (:data:`FENCED_TO`, the one
constraints.txt pins; ``tests/integration/test_prepared.py`` holds every statement's
parity with SQLAlchemy's own path). On any other version every statement takes
SQLAlchemy's public path: slower, never wrong.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, cast

import sqlalchemy
from sqlalchemy import Connection, CursorResult, Dialect
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any] | None
_namedtuple: Any = namedtuple  # rows read by column name, as SQLAlchemy's are


class Rows:
    """A statement's rows (a RETURNING's or a SELECT's) and its row count: the part of
    SQLAlchemy's ``CursorResult`` the ledger uses."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows, self.rowcount = rows, rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise ValueError(f"expected at most one row, got {len(self._rows)}")
        return self.first()

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def scalar(self) -> Any | None:
        return self._rows[0][0] if self._rows else None


class Prepared:
    """One statement compiled for one dialect and one set of parameter names."""

    def __init__(self, statement: Executable, dialect: Dialect, keys: Sequence[str]) -> None:
        clause = cast(ClauseElement, statement)
        compiled = clause.compile(dialect=dialect, column_keys=list(keys))
        assert isinstance(compiled, SQLCompiler)  # noqa: S101 - a Core statement
        if compiled.literal_execute_params or compiled.post_compile_params:
            raise NotImplementedError("expanding parameters")
        self.sql = compiled.string
        self.defaults: dict[str, Any] = {}
        self.processors: dict[str, Processor] = {}
        for bind, name in compiled.bind_names.items():
            self.processors[name] = bind.type._cached_bind_processor(dialect)
            if not bind.required:
                self.defaults[name] = bind.effective_value
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if compiled.isinsert else column.onupdate
            if default is None or not getattr(default, "is_scalar", False):
                raise NotImplementedError(f"a Python-side default for {column.key}")
            self.defaults[column.key] = default.arg  # type: ignore[attr-defined]
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        columns = list(getattr(statement, "exported_columns", ()))
        dml = compiled.isinsert or compiled.isupdate
        self.returns = (bool(columns) and dml) or bool(getattr(statement, "is_select", False))
        self.row_type = _namedtuple(
            "Row", [_row_key(column, n) for n, column in enumerate(columns)]
        )
        self._column_types = [column.type for column in columns]
        self._results: list[Processor] | None = None  # known once a description is seen

    def arguments(self, params: Mapping[str, Any]) -> Any:
        values = {**self.defaults, **params}
        if self.names is not None:
            return tuple(_apply(self.processors[name], values[name]) for name in self.names)
        return {name: _apply(proc, values[name]) for name, proc in self.processors.items()}

    def rows(self, raw: list[Any], description: Any, dialect: Dialect) -> list[Any]:
        if self._results is None:
            self._results = [
                kind._cached_result_processor(dialect, column[1])
                for kind, column in zip(self._column_types, description, strict=True)
            ]
        make, processors = self.row_type._make, self._results
        return [
            make(
                value if proc is None else proc(value)
                for proc, value in zip(processors, row, strict=True)
            )
            for row in raw
        ]


def _apply(processor: Processor, value: Any) -> Any:
    return value if processor is None else processor(value)


def _row_key(column: Any, n: int) -> str:
    key = getattr(column, "key", None)
    return key if isinstance(key, str) and key.isidentifier() else f"column_{n}"


FENCED_TO: Final = "2.1"  # the SQLAlchemy minor version whose private APIs this uses
IN_FENCE: Final = sqlalchemy.__version__.startswith(f"{FENCED_TO}.")


class Runner:
    """Runs statements on the driver's cursor, compiled once each (per engine)."""

    def __init__(self) -> None:
        # keyed by the statement's id: the statement is kept in the value, so that the id
        # is never another statement's
        self._prepared: dict[tuple[int, tuple[str, ...]], tuple[Executable, Prepared | None]] = {}

    def execute(
        self, connection: Connection, statement: Executable, params: Mapping[str, Any]
    ) -> Rows | CursorResult[Any]:
        """Run ``statement`` with one set of ``params``: :class:`Rows`, or SQLAlchemy's
        own result where its path is needed (see the module's docstring)."""
        prepared = self._prepare(connection, statement, params)
        if prepared is None or not IN_FENCE or _listened(connection):
            return connection.execute(statement, dict(params))
        arguments = prepared.arguments(params)
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(prepared.sql, arguments)
            raw = cursor.fetchall() if prepared.returns else []
            rowcount = cursor.rowcount
            description = cursor.description
        except connection.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's own handling: its exception classes, a lost connection invalidated
            connection._handle_dbapi_exception(error, prepared.sql, arguments, cursor, None)
        finally:
            cursor.close()
        rows = prepared.rows(list(raw), description, connection.dialect) if raw else []
        return Rows(rows, rowcount)

    def _prepare(
        self, connection: Connection, statement: Executable, params: Mapping[str, Any]
    ) -> Prepared | None:
        key = (id(statement), tuple(params))
        known = self._prepared.get(key)
        if known is None:
            try:
                prepared: Prepared | None = Prepared(statement, connection.dialect, list(params))
            except NotImplementedError:
                prepared = None
            known = self._prepared[key] = (statement, prepared)
        return known[1]


def _listened(connection: Connection) -> bool:
    dispatch = connection.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)
