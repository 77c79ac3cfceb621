"""Ledger files in and out: `.xlsx` (and Excel's older `.xls`) read with python-calamine, which
reads a 230,000-row sheet in seconds where openpyxl takes a minute; `.csv` in UTF-8 or in the
GB18030 that Excel in Chinese saves; workbooks written with openpyxl's streaming writer."""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from python_calamine import CalamineWorkbook

from .columns import LedgerSpec

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ERROR_HEADER = "错误原因"
ROW_HEADER = "原行号"
_ZIP, _OLE = b"PK\x03\x04", b"\xd0\xcf\x11\xe0"


class UnreadableFile(ValueError):
    """Not a workbook or CSV this can read; the message is for the operator."""


def file_format(content: bytes, filename: str) -> str:
    if content.startswith(_ZIP) or content.startswith(_OLE):
        return "xlsx"
    if filename.lower().endswith((".xlsx", ".xls")):
        raise UnreadableFile("文件不是有效的 Excel 工作簿")
    return "csv"


def read_table(content: bytes, filename: str, header_only: bool = False) -> list[list[Any]]:
    """The first sheet's rows (header first), as cells; with `header_only`, the header row alone
    (what an upload is checked by before its job reads the rest)."""
    if file_format(content, filename) == "xlsx":
        try:
            sheet = CalamineWorkbook.from_filelike(io.BytesIO(content)).get_sheet_by_index(0)
            rows = [next(sheet.iter_rows(), [])] if header_only else sheet.to_python(skip_empty_area=False)
        except Exception as error:  # calamine raises its own types for every kind of damage
            raise UnreadableFile(f"无法读取工作簿：{type(error).__name__}") from None
    else:
        reader = csv.reader(io.StringIO(_decode(content)))
        rows = [next(reader, [])] if header_only else list(reader)
    while rows and not any(_filled(cell) for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise UnreadableFile("文件是空的：第一行应为列名")
    return rows


def _decode(content: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UnreadableFile("CSV 文件的编码无法识别（应为 UTF-8 或 GBK）")


def _filled(cell: Any) -> bool:
    return cell is not None and str(cell).strip() != ""


def is_blank(cells: Sequence[Any]) -> bool:
    return not any(_filled(cell) for cell in cells)


def workbook_bytes(sheets: Iterable[tuple[str, Sequence[Any], Iterable[Sequence[Any]]]]) -> bytes:
    """A workbook of `(title, headers, rows)` sheets, headers in bold on a frozen first row."""
    workbook = Workbook(write_only=True)
    for title, headers, rows in sheets:
        sheet = workbook.create_sheet(title)
        sheet.freeze_panes = "A2"
        header_cells = []
        for header in headers:
            cell = WriteOnlyCell(sheet, value=header)
            cell.font = Font(bold=True, color="C00000" if header == ERROR_HEADER else None)
            header_cells.append(cell)
        sheet.append(header_cells)
        for row in rows:
            sheet.append([_safe(sheet, value) for value in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _safe(sheet, value: Any) -> Any:
    """A value as a literal cell: text that a workbook cannot hold (control characters) dropped,
    and text that Excel would run as a formula ("=HYPERLINK(...)" typed as a unit's name) kept text."""
    if not isinstance(value, str):
        return value
    value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if not value.startswith("="):
        return value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    return cell


def template(spec: LedgerSpec) -> bytes:
    """An empty ledger with its headers (required ones marked *), and a sheet explaining each column."""
    headers = [c.header + ("*" if c.required else "") for c in spec.columns]
    guide = [(c.header, "是" if c.required else "否", c.example if c.example is not None else "") for c in spec.columns]
    return workbook_bytes([(spec.title, headers, []), ("填写说明", ["列名", "必填", "示例"], guide)])


def template_csv(spec: LedgerSpec) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow([c.header + ("*" if c.required else "") for c in spec.columns])
    return buffer.getvalue().encode("utf-8-sig")  # the BOM tells Excel it is UTF-8


def errors_workbook(title: str, headers: Sequence[Any], rejected: Iterable[tuple[int, Sequence[Any], str]]) -> bytes:
    """The operator's own rows that were not imported, each with its row number in their file
    and why, in front: to fix and upload again (the two added columns are ignored then)."""
    width = len(headers)
    rows = ([text, row, *(list(cells) + [None] * width)[:width]] for row, cells, text in rejected)
    return workbook_bytes([(title, [ERROR_HEADER, ROW_HEADER, *headers], rows)])
