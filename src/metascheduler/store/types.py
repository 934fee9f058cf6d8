"""Column types the store needs beyond SQLAlchemy's own."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class Uint256(TypeDecorator[int]):
    """An unsigned 256-bit integer (credit amounts, prices): exact on every backend.

    PostgreSQL stores NUMERIC(78, 0) (so SQL can compare and sum); SQLite has no exact type that
    wide, so it stores the decimal string. Python always sees an int.
    """

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(78))
        return dialect.type_descriptor(Numeric(78, 0, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        v = int(value)
        return str(v) if dialect.name == "sqlite" else Decimal(v)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)
