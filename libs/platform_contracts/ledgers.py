"""Ledgers (台账) in and out: the import job a client sees, and the batches of rows the gateway
sends to the service that owns a ledger, with what becomes of each row.

The gateway reads the operator's file and checks each row's shape; the owning service decides
the rest (known division and industry, the caller's scope, already registered) row by row, so
that one bad row never holds back the good ones of its batch."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

IMPORT_BATCH_MAX_ROWS = 1000


class Ledger(StrEnum):
    units = "units"
    members = "members"
    stations = "stations"


class ImportStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class RowProblem(StrEnum):
    invalid = "invalid"  # the value does not fit the field; `detail` says how
    missing = "missing"  # a required value is empty
    unknown_division = "unknown_division"
    unknown_industry = "unknown_industry"
    outside_scope = "outside_scope"  # the division lies outside the importer's scope
    duplicate_in_file = "duplicate_in_file"  # the same key as an earlier row of the file
    refused = "refused"  # the service refused the row; `detail` says why


class RowError(BaseModel):
    field: str
    problem: RowProblem
    detail: str | None = None


class RejectedRow(BaseModel):
    row: int
    errors: list[RowError]


class BatchOutcome(BaseModel):
    """Rows by their row number in the operator's file."""
    imported: list[int] = []
    present: list[int] = Field([], description="already registered (same credit code, ID number, ...): "
                                               "not imported again")
    rejected: list[RejectedRow] = []


class Import(BaseModel):
    id: str
    ledger: Ledger
    filename: str
    status: ImportStatus
    rows: int | None = Field(None, description="data rows in the file; null until it has been read")
    imported: int = 0
    already_present: int = Field(0, description="rows already registered (an earlier import of the same "
                                                "rows, say): not imported again")
    rejected: int = 0
    progress: float = Field(0.0, ge=0, le=1)
    error: str | None = Field(None, description="why the whole import failed (status failed)")
    created_by: str
    created_at: datetime
    finished_at: datetime | None = None
    errors_url: str | None = Field(None, description="the rejected rows as a workbook to fix and upload again")
