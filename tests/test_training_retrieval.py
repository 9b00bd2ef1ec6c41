"""Training and evaluating the two-tower retrieval model on a preprocessed sample catalog."""

import json
import os
import socket
import subprocess
import sys

import pytest

from tfrs_mm import cli
from tfrs_mm import config as config_lib
from tfrs_mm.training.retrieval import train_and_evaluate, train_retrieval

FAST = ["train.epochs=3", "train.batch_size=64", "train.learning_rate=3e-3", "model.embedding_dim=16"]
FAST += ["train.checkpoint_every_steps=5"]


def _config(*overrides):
    return config_lib.load_config(preset="demo", overrides=[*FAST, *overrides])


@pytest.fixture(scope="module")
def trained(sample_dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("retrieval")
    metrics = train_and_evaluate(_config(), str(sample_dataset / "data"), str(workdir), verbose=False)
    return workdir, metrics


def test_training_writes_config_checkpoint_logs_and_metrics(trained):
    workdir, metrics = trained
    for name in ("config.yaml", "metrics.json", "checkpoints/final.index", "logs", "backup"):
        assert (workdir / name).exists(), name
    with open(workdir / "metrics.json") as f:
        assert json.load(f)["test"]["users"] == metrics["test"]["users"] > 0
    saved = config_lib.load_config(str(workdir / "config.yaml"))
    assert saved.train.epochs == 3 and saved.model.embedding_dim == 16


def test_loss_falls_and_the_model_beats_chance(trained):
    _, metrics = trained
    losses = metrics["training"]["history"]["loss"]
    assert losses[-1] < losses[0]
    test = metrics["test"]
    # A random ranking recalls about K / catalog of a user's items: 50 / 120 here.
    assert test["recall@50"] > 1.3 * 50 / 120, test["recall@50"]
    for key in ("ndcg@10", "precision@10", "f1@10", "map@10", "hit@10", "coverage@10", "novelty@10"):
        assert test[key] is not None and test[key] >= 0, key
    assert any(g.startswith("gender=") for g in test["groups"])  # users.csv attributes reached the report


def test_ablation_covers_ids_and_every_modality(trained):
    _, metrics = trained
    assert set(metrics["ablation"]) == {"ids only", "text only", "image only", "audio only", "all"}
    assert metrics["ablation"]["all"]["recall@10"] == pytest.approx(metrics["test"]["recall@10"])


def test_evaluate_cli_rewrites_metrics_and_writes_a_report(trained, sample_dataset, capsys):
    workdir, metrics = trained
    report = workdir / "report"
    argv = [
        "evaluate",
        "--data",
        str(sample_dataset / "data"),
        "--workdir",
        str(workdir),
        "--report",
        str(report),
    ]
    assert cli.main(argv) == 0
    assert "recall@10" in capsys.readouterr().out
    for name in ("report.md", "loss_curves.png", "recall_at_k.png", "ablation.png"):
        assert (report / name).exists(), name
    with open(workdir / "metrics.json") as f:
        assert json.load(f)["test"]["recall@10"] == pytest.approx(metrics["test"]["recall@10"])


def test_backup_and_restore_resumes_instead_of_restarting(sample_dataset, tmp_path):
    data = str(sample_dataset / "data")
    first = train_and_evaluate(_config("train.epochs=1"), data, str(tmp_path), verbose=False)
    assert len(first["training"]["history"]["loss"]) == 1
    # Same workdir, two epochs: the backup says epoch 1 is done, so only epoch 2 runs.
    second = train_and_evaluate(_config("train.epochs=2"), data, str(tmp_path), verbose=False)
    assert len(second["training"]["history"]["loss"]) == 1


def test_train_set_histories_best_epoch_and_popularity_prior_on_the_valid_split(sample_dataset, tmp_path):
    from tfrs_mm.evaluation import retrieval_eval
    from tfrs_mm.schema import read_manifest

    data = str(sample_dataset / "data")
    config = config_lib.load_config(
        preset="demo",
        overrides=[
            *FAST,
            "train.epochs=5",
            "train.history_source=train_set",
            "train.early_stopping_patience=1",
            "train.lr_decay_rate=0.5",
            "train.lr_decay_after_epochs=1",
            "model.popularity_prior=true",
        ],
    )
    model, loaded, info = train_retrieval(config, data, str(tmp_path), verbose=False)
    history = info["history"]
    # The rate halved before every epoch after the first: 3e-3, 1.5e-3, ...
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(
        3e-3 / 2 ** (len(history["loss"]) - 1)
    )
    recalls = history["val_recall_at_10"]
    assert len(recalls) == len(history["loss"]) == len(history["val_ndcg_at_10"])
    best = info["best_epoch"]
    assert recalls[best - 1] == max(recalls) and max(recalls[: best - 1], default=-1) < max(recalls)
    # Stopped one epoch after the best one, or ran every epoch.
    assert len(recalls) == min(best + 1, 5)
    catalog = list(loaded.table.item_ids)
    truth = retrieval_eval.load_eval_split(data, read_manifest(data), catalog, "valid", queries="known")
    prior = info["popularity_prior"]  # chosen after training, on the same valid queries
    tuned = retrieval_eval.evaluate_model(model, catalog, truth, loaded.frequencies, ks=(10,))
    assert tuned["ndcg@10"] == pytest.approx(prior["valid"][str(prior["alpha"])]["ndcg@10"])
    model.popularity_prior.prior_weight.assign(0.0)  # epochs were selected without the prior
    kept = retrieval_eval.evaluate_model(model, catalog, truth, loaded.frequencies, ks=(10,))
    assert kept["recall@10"] == pytest.approx(max(recalls))  # the weights are the best epoch's
    assert kept["recall@10"] == pytest.approx(prior["valid"]["0.0"]["recall@10"])


def test_the_query_tower_uses_the_users_csv_features(trained, sample_dataset):
    from tfrs_mm.training.retrieval import restore_retrieval

    workdir, _ = trained
    model, data, _, _ = restore_retrieval(str(sample_dataset / "data"), str(workdir))
    layer = model.query_tower.user_features
    assert layer is not None and list(layer.vocabularies) == ["user.gender"]
    assert layer.numeric_features == ["user.age"]
    assert len(layer.user_ids) == len(data.user_table.user_ids) == 80
    assert layer.numeric.numpy()[1:, 1].sum() > 0  # ages were restored, not left at zero


def test_warm_start_continues_from_an_earlier_run(trained, sample_dataset, tmp_path):
    earlier, metrics = trained
    assert (earlier / "towers.json").exists()
    config = _config("train.epochs=1", f"train.warm_start_from={earlier}")
    warm = train_and_evaluate(config, str(sample_dataset / "data"), str(tmp_path), verbose=False)
    # The first epoch starts where the earlier run (3 epochs) ended, not from scratch.
    assert warm["training"]["history"]["loss"][0] < metrics["training"]["history"]["loss"][0]
    assert warm["test"]["recall@50"] > 1.3 * 50 / 120


def _run_cli(args, env=None, timeout=900):
    code = "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_mirrored_strategy_on_two_logical_cpus(sample_dataset, tmp_path):
    sets = [*FAST, "train.strategy=mirrored", "train.num_logical_devices=2", "train.epochs=1"]
    args = ["train", "retrieval", "--data", str(sample_dataset / "data"), "--workdir", str(tmp_path)]
    args += ["--preset", "demo", *[x for s in sets for x in ("--set", s)]]
    result = _run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 replicas" in result.stderr
    assert (tmp_path / "metrics.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_with_two_local_workers(sample_dataset, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    sets = [*FAST, "train.strategy=multi_worker", "train.epochs=1"]
    procs = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        }
        workdir = tmp_path / f"worker{index}"
        args = ["train", "retrieval", "--data", str(sample_dataset / "data"), "--workdir", str(workdir)]
        args += ["--preset", "demo", *[x for s in sets for x in ("--set", s)]]
        code = "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"
        procs.append(
            subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE, text=True)
        )
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errors]
    assert (tmp_path / "worker0" / "metrics.json").exists()  # the chief writes
    assert not (tmp_path / "worker1" / "metrics.json").exists()


class _Crash(Exception):
    pass


def test_a_run_that_crashed_mid_epoch_resumes_exactly(sample_dataset, tmp_path, monkeypatch):
    import tensorflow as tf

    from tfrs_mm import schema
    from tfrs_mm.training import resumable
    from tfrs_mm.training.data import steps_per_epoch

    # Without modality dropout nothing random is drawn after the seed: resuming must change nothing.
    config = _config("model.modality_dropout=0", "train.epochs=2")
    data = str(sample_dataset / "data")
    uninterrupted = train_retrieval(config, data, str(tmp_path / "clean"), verbose=False)[2]

    steps = steps_per_epoch(schema.read_manifest(data), "train", 64)
    backup = 5 * ((steps + steps // 2) // 5)  # a backup (every 5 steps) in the middle of epoch 2

    class CrashAfter(tf.keras.callbacks.Callback):
        done = 0

        def on_train_batch_end(self, batch, logs=None):
            self.done += 1
            if self.done == backup + 2:
                raise _Crash()

    callbacks = resumable.training_callbacks
    monkeypatch.setattr(resumable, "training_callbacks", lambda *a: [*callbacks(*a), CrashAfter()])
    with pytest.raises(_Crash):
        train_retrieval(config, data, str(tmp_path / "crashed"), verbose=False)
    monkeypatch.undo()
    resumed = train_retrieval(config, data, str(tmp_path / "crashed"), verbose=False)[2]
    assert resumed["resumed_from_step"] == backup
    assert resumed["steps_run"] == uninterrupted["steps_run"] - backup == 2 * steps - backup
    # The logged train loss of the resumed epoch averages only the steps run after the restart;
    # the validation loss is computed from the final weights over the whole split.
    assert resumed["history"]["val_loss"][-1] == pytest.approx(
        uninterrupted["history"]["val_loss"][-1], rel=1e-5
    )
