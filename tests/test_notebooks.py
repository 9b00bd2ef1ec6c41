"""Every notebook in notebooks/ runs top to bottom on small data."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
# Text a notebook must print besides running cleanly: what it exists to show.
SHOWS = {
    "03_train_ranking.ipynb": ("retrieval+ranking", "mattered most"),
    "04_index_export_serve.ipynb": (
        "recall@20 vs exact",
        "AVAILABLE",
        ":predict -> HTTP 200",
        "mattered most",
        "server stopped",
    ),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path: Path, tmp_path, monkeypatch, encoder_cache):
    monkeypatch.setenv("TFRS_MM_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("TFRS_MM_CACHE", encoder_cache)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert errors == []
    assert os.listdir(tmp_path)  # it wrote its data where it was told to
    text = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    for expected in SHOWS.get(path.name, ()):
        assert expected in text, expected
