"""CSV text that a spreadsheet shows as text and that reads back to the same values.

A cell starting with '=', '+', '-', '@', tab or CR would be run as a formula by a spreadsheet
(CSV injection): such a cell is written with a leading single quote, as OWASP recommends. A
cell that itself starts with a quote gets one more, so that from_cell undoes it exactly.
"""
import csv
import io

FORMULA_STARTS = ('=', '+', '-', '@', '\t', '\r')


def to_cell(value):
    """The text written into a CSV cell for `value` (numbers are left as they are)."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS + ("'",)):
        return "'" + value
    return value


def from_cell(text):
    """The value of a cell written by to_cell (or by the gallery, which does the same)."""
    if text.startswith("'") and text[1:].startswith(FORMULA_STARTS + ("'",)):
        return text[1:]
    return text


def csv_text(header, rows):
    """The whole CSV as text: a header and rows, every text cell through to_cell."""
    buffer = io.StringIO(newline='')
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([to_cell(value) for value in row] for row in rows)
    return buffer.getvalue()
