"""The import file: UTF-8 CSV, read as a stream, every cell checked by the API's rules.

``read_rows`` turns byte chunks into ``ImportRow`` values (or ``CellError`` for
rows that break a rule) without ever holding more than one record: the bytes
are decoded incrementally, split into physical lines (each at most
``LINE_CHARS_MAX``) and parsed by the ``csv`` module (RFC 4180 quoting).
Errors name the line as in the file (the header is line 1) and the column.
A problem that stops the reading (not UTF-8, a binary file, unbalanced
quotes, a bad header) raises ``FileError``.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import get_args

from loyalty.customers.schemas import CustomerStatus
from loyalty.customers.service import (
    _check_date_of_birth,
    _clean_name,
    normalise_email,
    normalise_external_id,
)
from loyalty.errors import ValidationFailedError
from loyalty.idempotency.service import IDEMPOTENCY_KEY_CHARS_MAX
from loyalty.moments import parse_moment
from loyalty.points import BALANCE_MINOR_MAX, PointsFormatError, parse_points
from loyalty.text import DESCRIPTION_CHARS_MAX, check_characters, clean_text

COLUMNS = (
    "customer_id",
    "email",
    "first_name",
    "last_name",
    "date_of_birth",
    "status",
    "points",
    "description",
    "apply_to_lifetime",
    "expires_at",
    "idempotency_key",
)
REQUIRED = ("customer_id",)
STATUSES: tuple[str, ...] = get_args(CustomerStatus)
DEFAULT_DESCRIPTION = "Imported points"
# No legitimate cell comes near this: a longer physical line stops the reading.
LINE_CHARS_MAX = 1 << 20
CUSTOMER_ID_CHARS_MAX = 255
EMAIL_CHARS_MAX = 254
NAME_CHARS_MAX = 100

_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
_EXPONENT = re.compile(r"[+-]?[0-9]*\.?[0-9]+[eE][+-]?[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class FileError(Exception):
    """The file cannot be read on: one error for the whole file."""

    def __init__(self, line: int, column: str | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class CellError:
    line: int
    column: str | None
    message: str
    code: str = "validation_error"

    def to_dict(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclasses.dataclass(frozen=True, slots=True)
class ImportRow:
    """One valid row, normalised; a profile field left empty is ``None`` (left as is)."""

    line: int
    customer_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    date_of_birth: date | None = None
    status: str | None = None
    points_minor: int = 0
    description: str = DEFAULT_DESCRIPTION
    apply_to_lifetime: bool = False
    expires_at: datetime | None = None
    idempotency_key: str | None = None

    @property
    def has_profile(self) -> bool:
        return any(
            value is not None
            for value in (
                self.email,
                self.first_name,
                self.last_name,
                self.date_of_birth,
                self.status,
            )
        )

    def fingerprint(self) -> str:
        """What the row moves, for its idempotency key (the same key with another
        movement is refused)."""
        parts = (
            "import",
            self.customer_id,
            str(self.points_minor),
            self.description,
            str(self.apply_to_lifetime),
            "" if self.expires_at is None else self.expires_at.isoformat(),
        )
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def row_key(file_sha256: str, row: ImportRow) -> str:
    """The row's idempotency key: its own, or derived from the file and its line."""
    if row.idempotency_key is not None:
        return row.idempotency_key
    return f"import:{file_sha256}:{row.line}"


# Decoding and lines ------------------------------------------------------------------


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Physical lines (with their ending) of UTF-8 bytes; a BOM is dropped."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    pending = ""
    line_number = 1
    first = True
    for chunk in chunks:
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise FileError(
                line_number + pending.count("\n") + _text_lines(chunk[:nul]),
                None,
                "This is not a CSV file: it contains NUL bytes (a binary file?).",
            )
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as error:
            line = line_number + pending.count("\n") + _text_lines(chunk[: error.start])
            raise FileError(
                line,
                None,
                f"The file is not UTF-8 (byte 0x{chunk[error.start]:02x} on this line); "
                "save it as UTF-8 CSV.",
            ) from error
        if first and text:
            text = text.removeprefix("\ufeff")
            first = False
        pending += text
        start = 0
        while True:
            end = pending.find("\n", start)
            if end < 0:
                break
            if end - start > LINE_CHARS_MAX:
                raise FileError(line_number, None, _line_too_long())
            yield pending[start : end + 1]
            line_number += 1
            start = end + 1
        pending = pending[start:]
        if len(pending) > LINE_CHARS_MAX:
            raise FileError(line_number, None, _line_too_long())
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise FileError(
            line_number, None, "The file is not UTF-8 (it ends inside a character)."
        ) from error
    if pending:
        yield pending


def _text_lines(prefix: bytes) -> int:
    return prefix.count(b"\n")


def _line_too_long() -> str:
    return f"A line is longer than {LINE_CHARS_MAX} characters: no cell may be this long."


# Cells -------------------------------------------------------------------------------


def _message(error: ValidationFailedError) -> str:
    details = error.details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("message", error.message))
    return error.message


def _text(value: str, column: str, maximum: int) -> str:
    if len(value) > maximum:
        raise ValidationFailedError.for_field(column, f"must be at most {maximum} characters")
    return value


def parse_points_cell(value: str, decimals: int) -> int:
    """A points amount as a plain decimal number: no thousands separators, no
    exponent, not zero, within the programme's decimals."""
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        if "," in text or " " in text or "_" in text:
            reason = "must be a plain number without thousands separators (e.g. 1500)"
        elif _EXPONENT.fullmatch(text):
            reason = "must be a plain number, without an exponent (write 1000, not 1e3)"
        else:
            reason = "must be a number such as 150 or -20"
        raise ValidationFailedError.for_field("points", reason)
    try:
        amount = Decimal(text)
    except InvalidOperation as error:  # pragma: no cover - the pattern admits only numbers
        raise ValidationFailedError.for_field("points", "must be a number") from error
    if amount == 0:
        raise ValidationFailedError.for_field("points", "must not be zero (leave it empty)")
    try:
        minor = parse_points(amount, decimals)
    except PointsFormatError as error:
        raise ValidationFailedError.for_field("points", str(error)) from error
    if abs(minor) > BALANCE_MINOR_MAX:
        raise ValidationFailedError.for_field("points", "is too large")
    return minor


def _parse_date(value: str, column: str) -> date:
    if not _DATE.fullmatch(value):
        raise ValidationFailedError.for_field(column, "must be a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise ValidationFailedError.for_field(column, "is not a valid date") from error


def _parse_expires_at(value: str, now: datetime) -> datetime:
    try:
        parsed = parse_moment(value)
    except (ValueError, OverflowError) as error:
        raise ValidationFailedError.for_field(
            "expires_at",
            "must be RFC 3339 with its time zone (2027-01-31T23:59:59Z) or YYYY-MM-DD",
        ) from error
    if isinstance(parsed, datetime):
        moment = parsed
    else:  # the end of that day, UTC
        moment = datetime.combine(parsed, time(), tzinfo=UTC) + timedelta(days=1, microseconds=-1)
    if moment <= now:
        raise ValidationFailedError.for_field("expires_at", "must be in the future")
    return moment


def _parse_bool(value: str, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValidationFailedError.for_field(column, "must be true or false")


class _RowBuilder:
    """Checks one record's cells in the file's column order."""

    def __init__(self, header: list[str], decimals: int, now: datetime) -> None:
        self.header = header
        self.decimals = decimals
        self.now = now

    def build(self, line: int, cells: list[str]) -> ImportRow | list[CellError]:
        errors: list[CellError] = []
        values: dict[str, object] = {}
        raw = dict(zip(self.header, cells, strict=True))
        for column, cell in raw.items():
            try:
                self._cell(column, cell, values)
            except ValidationFailedError as error:
                errors.append(CellError(line, column, _message(error)))
        if errors:
            return errors
        points_minor = values.get("points_minor", 0)
        assert isinstance(points_minor, int)
        expires_at = values.get("expires_at")
        if expires_at is not None and points_minor <= 0:
            return [CellError(line, "expires_at", "only credits (positive points) can expire")]
        lifetime = values.pop("apply_to_lifetime", None)
        if lifetime is None:
            lifetime = points_minor > 0
        if lifetime and points_minor < 0:
            return [CellError(line, "apply_to_lifetime", "only credits can count to lifetime")]
        return ImportRow(line=line, apply_to_lifetime=bool(lifetime), **values)  # type: ignore[arg-type]

    def _cell(self, column: str, cell: str, values: dict[str, object]) -> None:
        if column == "customer_id":
            _text(cell.strip(), column, CUSTOMER_ID_CHARS_MAX)
            values["customer_id"] = normalise_external_id(cell)
            return
        if cell.strip() == "":
            return  # empty: leave as is / none
        if column == "email":
            values["email"] = normalise_email(_text(cell, column, EMAIL_CHARS_MAX))
        elif column in ("first_name", "last_name"):
            values[column] = _clean_name(_text(cell, column, NAME_CHARS_MAX), column)
        elif column == "date_of_birth":
            values["date_of_birth"] = _check_date_of_birth(_parse_date(cell.strip(), column))
        elif column == "status":
            status = cell.strip()
            if status not in STATUSES:
                raise ValidationFailedError.for_field(
                    column, "must be one of " + ", ".join(STATUSES)
                )
            values["status"] = status
        elif column == "points":
            values["points_minor"] = parse_points_cell(cell, self.decimals)
        elif column == "description":
            check_characters(cell, column)
            _text(cell, column, DESCRIPTION_CHARS_MAX)
            values["description"] = clean_text(cell, DEFAULT_DESCRIPTION)
        elif column == "apply_to_lifetime":
            values["apply_to_lifetime"] = _parse_bool(cell, column)
        elif column == "expires_at":
            values["expires_at"] = _parse_expires_at(cell.strip(), self.now)
        elif column == "idempotency_key":
            key = cell.strip()
            if len(key) > IDEMPOTENCY_KEY_CHARS_MAX or not key.isprintable():
                raise ValidationFailedError.for_field(
                    column, f"must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} printable characters"
                )
            values["idempotency_key"] = key


def _header(cells: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in cells]
    seen: set[str] = set()
    for name in names:
        if not name:
            raise FileError(1, None, "The header has an empty column name.")
        if name not in COLUMNS:
            raise FileError(
                1, name, f"Unknown column {name!r}; the columns are: {', '.join(COLUMNS)}."
            )
        if name in seen:
            raise FileError(1, name, f"The column {name!r} appears twice in the header.")
        seen.add(name)
    for name in REQUIRED:
        if name not in seen:
            raise FileError(1, name, f"The required column {name!r} is missing from the header.")
    return names


def read_rows(
    chunks: Iterable[bytes], *, decimals: int, now: datetime
) -> Iterator[ImportRow | list[CellError]]:
    """Every record of the file after the header, checked; blank lines are skipped.

    Raises ``FileError`` when the file cannot be read on (and for an empty file
    or a header without rows)."""
    lines = _lines(chunks)
    reader = csv.reader(lines, strict=True)
    builder: _RowBuilder | None = None
    last_line = 0
    rows = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            line = last_line + 1
            message = str(error)
            if "field larger than field limit" in message:
                text = f"A cell is longer than {csv.field_size_limit()} characters."
            elif "unexpected end of data" in message or "EOF" in message:
                text = "A quoted cell is never closed (unbalanced quotes)."
            else:
                text = f"This line is not valid CSV ({message})."
            raise FileError(line, None, text) from error
        start_line = last_line + 1
        last_line = reader.line_num
        if builder is None:
            if not cells or all(not cell.strip() for cell in cells):
                raise FileError(1, None, "The file is empty: the first line must be the header.")
            builder = _RowBuilder(_header(cells), decimals, now)
            continue
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue  # a blank line
        expected = len(builder.header)
        if len(cells) != expected:
            yield [
                CellError(
                    start_line,
                    None,
                    f"This row has {len(cells)} cells; the header has {expected}.",
                )
            ]
            rows += 1
            continue
        rows += 1
        yield builder.build(start_line, cells)
    if builder is None:
        raise FileError(1, None, "The file is empty: the first line must be the header.")
    if rows == 0:
        raise FileError(2, None, "The file has a header and no rows.")
