"""A small real model for the server tests (no pretrained files), and posters as upload bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import train_bundle


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_bundle(
        tmp_path_factory.mktemp("serve-model") / "model",
        n=40, xgb_rounds=60, mlp_hidden=8, mlp_epochs=10,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_analyzer(tiny_model: Path) -> Iterator[Any]:
    from postergenre.analysis import Analyzer

    analyzer = Analyzer.load(tiny_model, device="cpu", workers=1)
    yield analyzer
    analyzer.close()
