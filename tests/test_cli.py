"""The `tfrs-mm` command line: every subcommand of DESIGN.md §4, clear exits, the demo."""

import os
import re
import subprocess
import sys

import pytest

from tfrs_mm import cli

DESIGN_SUBCOMMANDS = (
    "generate-sample",
    "load-dataset",
    "validate",
    "preprocess",
    "train",
    "evaluate",
    "index",
    "export",
    "serve",
    "query",
    "demo",
)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for name in DESIGN_SUBCOMMANDS:
        assert f"\n    {name}" in result.stdout, name


def test_unknown_flags_are_refused_outside_preprocess():
    with pytest.raises(SystemExit) as exc:
        cli.main(["validate", "x", "--runner=DirectRunner"])
    assert exc.value.code == 2


def test_generate_sample_then_validate(tmp_path, capsys):
    out = str(tmp_path / "raw")
    argv = ["generate-sample", "--out", out, "--items", "30", "--users", "10", "--audio-seconds", "0.5"]
    assert cli.main(argv) == 0
    assert "items 30" in capsys.readouterr().out
    assert cli.main(argv) == cli.EXIT_INVALID  # not empty any more: a clear error, not a traceback
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["validate", out]) == 0


def test_load_dataset_with_missing_source_is_a_clear_error(tmp_path, capsys):
    code = cli.main(
        ["load-dataset", "movielens-100k", "--source", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert code == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_demo_runs_every_built_stage(tmp_path, encoder_cache):
    result = subprocess.run(
        [sys.executable, "-m", "tfrs_mm.cli", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TFRS_MM_CACHE": encoder_cache},
    )
    assert result.returncode == 0, result.stderr
    assert "OK: 0 errors" in result.stdout
    assert "sample catalog summary" in result.stdout and "genres" in result.stdout
    assert "items                        400        400" in result.stdout
    assert (tmp_path / "demo" / "data" / "manifest.json").exists()
    assert (tmp_path / "demo" / "data" / "config.yaml").exists()
    # The ranker is trained after retrieval, evaluated in two stages, and explains three users' lists.
    assert "[6/10] train ranking" in result.stdout and "ranker, valid lists: auc" in result.stdout
    assert "retrieval+ranking" in result.stdout and "explanations: attention on the true" in result.stdout
    assert (tmp_path / "demo" / "work" / "retrieval" / "ranking" / "metrics.json").exists()
    assert result.stdout.count("items in history, latest") == 3
    assert "because you watched" in result.stdout or "no history item stands out" in result.stdout
    # Then index, export and the same users' lists served over REST by the local server.
    assert "[8/10] index" in result.stdout and "recall@50 vs exact" in result.stdout
    assert "[9/10] export" in result.stdout and "models.config" in result.stdout
    saved = tmp_path / "demo" / "saved_models"
    for name in ("retrieval", "ranking", "recommender"):
        assert (saved / name / "1" / "saved_model.pb").exists(), name
        assert f"{name:<12} version 1 AVAILABLE" in result.stdout, name
    assert "retrieval_scann" not in (saved / "models.config").read_text()
    served = result.stdout.split("[10/10] serve --model_config_file")[1]
    assert "history, user_id -> history_attention, item_ids, modality_weights, scores" in served
    assert served.count("served by recommender over POST /v1/models/recommender:predict") == 3
    assert served.count("mattered most") == 15  # top 5 each, with their explanations
    assert result.stdout.count("mattered most") == 30  # in process (step 7) and served
    assert served.rstrip().endswith("server stopped")
    assert "not built yet" not in result.stdout
    # The served recommender is the trained ranker: an item in both lists has the same score.
    in_process = _scores_by_user(result.stdout.split("[7/10]")[1].split("[8/10]")[0])
    over_rest = _scores_by_user(served)
    assert in_process.keys() == over_rest.keys() and len(over_rest) == 3
    shared = [(user, item) for user in over_rest for item in over_rest[user] if item in in_process[user]]
    assert shared
    for user, item in shared:
        assert over_rest[user][item] == pytest.approx(in_process[user][item], abs=0.011), (user, item)


def _scores_by_user(text: str) -> dict[str, dict[str, float]]:
    """{user: {item: score}} from the demo's recommendation lines."""
    scores: dict[str, dict[str, float]] = {}
    for block in text.split("\n      user ")[1:]:
        user = block.split()[0].rstrip(":")
        scores[user] = {m[0]: float(m[1]) for m in re.findall(r"\((\S+)\)  score (-?[0-9.]+):", block)}
    return scores


def test_serve_passes_its_limits_to_the_server(monkeypatch, tmp_path):
    from tfrs_mm.serving import server

    seen = {}
    monkeypatch.setattr(server, "serve", lambda config, **options: seen.update(options, config=config))
    argv = ["serve", "--model_config_file", str(tmp_path / "models.config"), "--read_timeout_seconds", "5"]
    assert cli.main([*argv, "--max_request_bytes", "1024"]) == 0
    assert seen["read_timeout_seconds"] == 5.0 and seen["max_request_bytes"] == 1024
    assert seen["config"] == str(tmp_path / "models.config")
