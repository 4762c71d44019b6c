"""The import file's rules: every bad input answers its line, its column and why."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import pytest

from loyalty.imports.csvfile import CellError, FileError, ImportRow, read_rows, row_key
from loyalty.imports.service import validate

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rows(text: str | bytes, decimals: int = 0, chunk: int = 7) -> list[ImportRow | list[CellError]]:
    data = text.encode() if isinstance(text, str) else text
    chunks: Iterable[bytes] = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return list(read_rows(chunks, decimals=decimals, now=NOW))


def one_error(text: str | bytes, decimals: int = 0) -> CellError:
    result = rows(text, decimals)
    errors = [error for row in result if isinstance(row, list) for error in row]
    assert len(errors) == 1, errors
    return errors[0]


def file_error(text: str | bytes) -> FileError:
    with pytest.raises(FileError) as caught:
        rows(text)
    return caught.value


def test_a_valid_file_with_bom_crlf_and_quotes() -> None:
    text = (
        "\ufeff Customer_ID ,EMAIL,first_name,points,description,expires_at\r\n"
        '1001, Ada@Example.COM ,"Ada, Countess",150,"Welcome ""back""",2030-01-31\r\n'
        "1002,,,-20,,\r\n"
        "\r\n"
        "1003,,Alan,,,\r\n"
    )
    first, second, third = rows(text)
    assert isinstance(first, ImportRow)
    assert isinstance(second, ImportRow)
    assert isinstance(third, ImportRow)
    assert (first.line, second.line, third.line) == (2, 3, 5)
    assert first.email == "ada@example.com"
    assert first.first_name == "Ada, Countess"
    assert first.points_minor == 15000
    assert first.description == 'Welcome "back"'
    assert first.apply_to_lifetime is True
    assert first.expires_at == datetime(2030, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert second.points_minor == -2000
    assert second.apply_to_lifetime is False
    assert second.description == "Imported points"
    assert third.points_minor == 0
    assert third.first_name == "Alan"


def test_a_quoted_cell_may_span_lines_and_errors_name_the_first_line() -> None:
    text = 'customer_id,description,points\n1,"two\nlines",5\n2,Bo,1e3\n'
    result = rows(text)
    assert isinstance(result[0], ImportRow)
    assert result[0].description == "two\nlines"
    error = result[1]
    assert isinstance(error, list)
    assert (error[0].line, error[0].column) == (4, "points")


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("1,000", "thousands separators"),
        ("1 000", "thousands separators"),
        ("1e3", "exponent"),
        ("NaN", "a number"),
        ("inf", "a number"),
        ("-0", "not be zero"),
        ("0.00", "not be zero"),
        ("12.5", "whole number"),
        ("ten", "a number"),
        ("+-3", "a number"),
    ],
)
def test_points_must_be_a_plain_number(cell: str, message: str) -> None:
    error = one_error(f'customer_id,points\n1,"{cell}"\n')
    assert (error.line, error.column) == (2, "points")
    assert message in error.message


def test_points_follow_the_programme_decimals() -> None:
    (row,) = rows("customer_id,points\n1,12.5\n", decimals=2)
    assert isinstance(row, ImportRow)
    assert row.points_minor == 1250
    assert "at most 1 decimal" in one_error("customer_id,points\n1,12.55\n", decimals=1).message


@pytest.mark.parametrize(
    ("header", "cell", "column", "message"),
    [
        ("email", "not-an-email", "email", "valid email"),
        ("date_of_birth", "2999-01-01", "date_of_birth", "between"),
        ("date_of_birth", "01/02/1990", "date_of_birth", "YYYY-MM-DD"),
        ("date_of_birth", "1990-02-30", "date_of_birth", "not a valid date"),
        ("status", "erased", "status", "must be one of"),
        ("apply_to_lifetime", "yes", "apply_to_lifetime", "true or false"),
        ("expires_at", "2020-01-01", "expires_at", "future"),
        ("expires_at", "2030-01-01T10:00:00", "expires_at", "time zone"),
        ("expires_at", "tomorrow", "expires_at", "RFC 3339"),
        ("first_name", "x" * 101, "first_name", "at most 100"),
        ("description", "d" * 256, "description", "at most 255"),
        ("customer_id", "   ", "customer_id", "blank"),
        ("idempotency_key", "k" * 256, "idempotency_key", "printable"),
    ],
)
def test_each_cell_follows_the_api_rules(header: str, cell: str, column: str, message: str) -> None:
    first = "customer_id" if header != "customer_id" else "email"
    value = "1" if header != "customer_id" else ""
    error = one_error(f"{first},{header},points\n{value},{cell},5\n")
    assert (error.line, error.column) == (2, column)
    assert message in error.message


def test_expiry_only_on_credits_and_lifetime_only_for_credits() -> None:
    assert one_error("customer_id,points,expires_at\n1,-5,2030-01-01\n").column == "expires_at"
    error = one_error("customer_id,points,apply_to_lifetime\n1,-5,true\n")
    assert error.column == "apply_to_lifetime"


def test_formulas_are_kept_literally() -> None:
    (row,) = rows('customer_id,first_name,description,points\n1,=HYPERLINK("x"),+SUM(A1),5\n')
    assert isinstance(row, ImportRow)
    assert row.first_name == '=HYPERLINK("x")'
    assert row.description == "+SUM(A1)"


def test_a_row_with_too_many_or_too_few_cells() -> None:
    result = rows("customer_id,points\n1,5,9\n2\n3,4\n")
    assert isinstance(result[0], list)
    assert "3 cells; the header has 2" in result[0][0].message
    assert isinstance(result[1], list)
    assert result[1][0].line == 3
    assert isinstance(result[2], ImportRow)


@pytest.mark.parametrize(
    ("data", "line", "column", "message"),
    [
        (b"", 1, None, "empty"),
        (b"\n\n", 1, None, "empty"),
        (b"customer_id,points\n", 2, None, "no rows"),
        (b"customer_id,points,points\n1,2,3\n", 1, "points", "twice"),
        (b"customer_id,balance\n1,2\n", 1, "balance", "Unknown column"),
        (b"email,points\na@b.co,2\n", 1, "customer_id", "required"),
        (b"customer_id,first_name\n1,Ren\xe9e\n", 2, None, "not UTF-8"),
        (b"customer_id\n1\n2\n\xff\xfe\x00\x01binary", 4, None, "NUL"),
        (b'customer_id,first_name\n1,"open\n2,x\n', 2, None, "never closed"),
    ],
)
def test_files_that_cannot_be_read(
    data: bytes, line: int, column: str | None, message: str
) -> None:
    error = file_error(data)
    assert (error.line, error.column) == (line, column)
    assert message in error.message


def test_a_huge_cell_stops_the_reading_with_bounded_memory() -> None:
    data = b"customer_id,first_name\n1," + b"x" * (10 * 1024 * 1024) + b"\n"
    error = file_error(data)
    assert error.line == 2
    assert "longer than" in error.message


def test_a_huge_quoted_cell_with_newlines_is_refused() -> None:
    data = b'customer_id,first_name\n1,"' + b"x\n" * 200_000 + b'"\n'
    error = file_error(data)
    assert error.line == 2
    assert "longer than" in error.message


def test_validate_counts_rows_keeps_the_first_errors_and_hashes_the_whole_file() -> None:
    lines = ["customer_id,points"] + [f"{n},{'x' if n % 2 else 5}" for n in range(1, 301)]
    data = ("\n".join(lines) + "\n").encode()
    validation = validate([data[:100], data[100:]], decimals=0, now=NOW)
    assert validation.rows == 300
    assert validation.errors_total == 150
    assert len(validation.errors) == 100
    assert validation.errors[0] == {
        "line": 2,
        "column": "points",
        "message": "must be a number such as 150 or -20",
    }
    assert validation.file_bytes == len(data)
    import hashlib

    assert validation.file_sha256 == hashlib.sha256(data).hexdigest()


def test_validate_hashes_a_broken_file_to_the_end() -> None:
    data = b"customer_id\n1\n\xff\n" + b"2\n" * 1000
    validation = validate([data[:10], data[10:]], decimals=0, now=NOW)
    assert not validation.valid
    assert validation.file_bytes == len(data)


def test_row_keys_derive_from_the_file_and_line_unless_given() -> None:
    (row,) = rows("customer_id,points\n1,5\n")
    assert isinstance(row, ImportRow)
    assert row_key("abc", row) == "import:abc:2"
    (given,) = rows("customer_id,points,idempotency_key\n1,5,my-key\n")
    assert isinstance(given, ImportRow)
    assert row_key("abc", given) == "my-key"
    assert row.fingerprint() != rows("customer_id,points\n1,6\n")[0].fingerprint()  # type: ignore[union-attr]


def test_date_of_birth_today_is_accepted() -> None:
    (row,) = rows("customer_id,date_of_birth\n1,1990-05-17\n")
    assert isinstance(row, ImportRow)
    assert row.date_of_birth == date(1990, 5, 17)
