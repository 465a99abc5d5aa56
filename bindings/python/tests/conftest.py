from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import edgestore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def db(db_path: Path) -> Iterator[edgestore.Database]:
    database = edgestore.open(db_path)
    try:
        yield database
    finally:
        database.close()
