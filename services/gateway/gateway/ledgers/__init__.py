"""Ledgers (台账) in and out: the columns operators write (columns.py, pure), reading and
writing their files (workbook.py), and imports as background jobs (imports.py)."""
