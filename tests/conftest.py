"""Shared fixtures: real files from fixtures/, real DuckDB workspaces in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconcile.cli import cli
from reconcile.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
DEMO = FIXTURES / "demo"
QUIRKS = FIXTURES / "quirks"
BAD = FIXTURES / "bad"


def invoke(*args: str | Path) -> Result:
    """Run the real CLI; exceptions are not swallowed, so a traceback fails the test."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    with Workspace(tmp_path / "ws.duckdb") as ws:
        yield ws


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return tmp_path / "ws.duckdb"
