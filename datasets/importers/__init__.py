"""Importers turn a source (JSONL, CSV, COCO, YOLO, an image folder) into staged rows for a set-based merge.

They know nothing of HTTP or Celery: a format yields `(line_no, record)` pairs, `records.RecordWriter`
validates each record and appends it to COPY buffers, and `staging` merges batches in SQL.
"""
