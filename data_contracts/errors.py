"""The one error type for bad input: it names the file, row, column, what was found and
what is expected, so the person reading it knows what to fix."""

from __future__ import annotations


class ContractError(ValueError):
    def __init__(
        self,
        file: str,
        row: int | None,
        column: str | None,
        found: str,
        expected: str,
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        self.found = found
        self.expected = expected
        where = file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {found}; expected {expected}")
