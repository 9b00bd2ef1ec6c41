"""Training the ranker on a trained retrieval model's candidates, and the two-stage evaluation."""

import json

import numpy as np
import pytest

from tfrs_mm import cli, schema
from tfrs_mm import config as config_lib
from tfrs_mm.training.ranking import load_ranker, ranking_workdir
from tfrs_mm.training.retrieval import train_and_evaluate

FAST = ["train.batch_size=64", "train.learning_rate=3e-3", "model.embedding_dim=16", "model.ranker_dim=16"]
FAST += ["train.checkpoint_every_steps=5"]


@pytest.fixture(scope="module")
def ranked(sample_dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("two_stage")
    data = str(sample_dataset / "data")
    config = config_lib.load_config(preset="demo", overrides=[*FAST, "train.epochs=4"])
    train_and_evaluate(config, data, str(workdir), verbose=False)
    argv = ["train", "ranking", "--data", data, "--workdir", str(workdir), "--preset", "demo"]
    argv += [x for s in [*FAST, "train.epochs=8"] for x in ("--set", s)]
    assert cli.main(argv) == 0
    with open(workdir / "ranking" / "metrics.json") as f:
        return workdir, json.load(f)


def test_ranking_workdir_has_config_checkpoint_logs_and_metrics(ranked):
    workdir, metrics = ranked
    for name in ("config.yaml", "checkpoints/final.index", "ranker.json", "logs", "backup", "metrics.json"):
        assert (workdir / "ranking" / name).exists(), name
    assert {"auc", "ndcg@10", "mrr"} <= set(metrics["valid"])
    assert metrics["training"]["history"]["loss"][-1] < metrics["training"]["history"]["loss"][0]


def test_the_ranker_beats_chance_on_validation_lists(ranked):
    _, metrics = ranked
    # 1 positive among 10 candidates: a random order gets AUC 0.5 and MRR about 0.29.
    assert metrics["valid"]["auc"] > 0.55, metrics["valid"]
    assert metrics["valid"]["mrr"] > 0.3, metrics["valid"]


def test_two_stage_reorders_the_same_candidates(ranked):
    _, metrics = ranked
    two = metrics["two_stage"]
    assert two["users"] > 0 and two["candidates"] == 50  # demo preset: export.retrieval_k
    for name in ("retrieval", "retrieval+ranking"):
        assert 0 <= two[name]["ndcg@10"] <= 1
    assert two["ndcg@10_change"] == pytest.approx(
        two["retrieval+ranking"]["ndcg@10"] - two["retrieval"]["ndcg@10"]
    )
    # The sample catalog has ground truth, so explanation quality is measured.
    explained = metrics["explanations"]
    assert explained["examples_with_driver_in_history"] > 0
    assert 0 < explained["driver_attention_chance"] < 1


def test_reloaded_ranker_scores_like_the_trained_one(ranked, sample_dataset):
    import tensorflow as tf

    workdir, _ = ranked
    ranker = load_ranker(str(workdir))
    data = str(sample_dataset / "data")
    manifest = schema.read_manifest(data)
    from tfrs_mm.training.ranking import score_lists
    from tfrs_mm.training.ranking_data import CANDIDATE_IDS, LABELS

    users = tf.constant(["u00000", "u00001"])
    history = tf.constant([["", "i00001"], ["i00002", "i00003"]])
    out = ranker(users, history, tf.constant([["i00004", "i00005"], ["i00006", "i00007"]]))
    assert np.isfinite(out["scores"].numpy()).all()
    assert manifest.split.counts["valid"] > 0
    lists = {
        "user_id": users.numpy(),
        "history": history.numpy(),
        CANDIDATE_IDS: np.array([[b"i00004", b"i00005"], [b"i00006", b"i00007"]]),
        LABELS: np.array([[1.0, 0.0], [0.0, 1.0]]),
    }
    assert set(score_lists(ranker, lists)) >= {"auc", "mrr", "ndcg@10"}


def test_evaluate_folds_in_the_ranker(ranked, sample_dataset, capsys):
    workdir, metrics = ranked
    assert cli.main(["evaluate", "--data", str(sample_dataset / "data"), "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    assert "retrieval+ranking" in out
    with open(workdir / "metrics.json") as f:
        folded = json.load(f)["ranking"]["two_stage"]
    assert folded["retrieval+ranking"]["ndcg@10"] == pytest.approx(
        metrics["two_stage"]["retrieval+ranking"]["ndcg@10"], abs=1e-6
    )


def test_train_ranking_without_a_retrieval_model_is_a_clear_error(sample_dataset, tmp_path, capsys):
    argv = ["train", "ranking", "--data", str(sample_dataset / "data"), "--workdir", str(tmp_path)]
    assert cli.main(argv) == cli.EXIT_INVALID
    assert "train retrieval" in capsys.readouterr().err
    assert not (tmp_path / "ranking" / "checkpoints").exists()
    assert ranking_workdir(str(tmp_path)).endswith("ranking")


def test_ranking_trains_under_mirrored_strategy_on_two_logical_cpus(ranked, sample_dataset, tmp_path):
    import shutil
    import subprocess
    import sys

    workdir, _ = ranked
    for name in ("towers.json", "config.yaml", "checkpoints"):
        source = workdir / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    sets = [*FAST, "train.epochs=1", "train.strategy=mirrored", "train.num_logical_devices=2"]
    args = ["train", "ranking", "--data", str(sample_dataset / "data"), "--workdir", str(tmp_path)]
    args += ["--preset", "demo", *[x for s in sets for x in ("--set", s)]]
    code = "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 replicas" in result.stderr
    with open(tmp_path / "ranking" / "metrics.json") as f:
        metrics = json.load(f)
    assert len(metrics["training"]["history"]["loss"]) == 1 and metrics["two_stage"]["users"] > 0
