"""`python -m app.batch --input DIR_OR_GLOB --output FILE.csv|FILE.parquet`: see app/batch/cli.py."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from app.batch.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
