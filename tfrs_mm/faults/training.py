"""Training faults: a SIGKILLed `tfrs-mm train retrieval` resumes; NaN or inf input fails by name.

`run_training_faults` trains the retrieval model three times on a small
preprocessed sample catalog with the same command: once uninterrupted, once
SIGKILLed in the middle of its second epoch just after a `BackupAndRestore`
checkpoint, and once more in the killed run's workdir, which must resume
from that checkpoint (not start over) and end within `TOLERANCE` of the
uninterrupted run. It then writes NaN and +inf into each numeric feature the
trainers read, in copies of the dataset, and checks that the retrieval and
ranking trainers stop with a `NonFiniteFeatureError` naming the feature and
the offending ids, never with a NaN loss; one of these also runs through the
command line to check its exit status and message.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

# Small and fast, and a checkpoint every 5 of the epoch's ~30 steps, so a kill lands mid-epoch.
SETTINGS = (
    "train.epochs=3",
    "train.batch_size=64",
    "train.learning_rate=3e-3",
    "model.embedding_dim=16",
    "train.checkpoint_every_steps=5",
)
# A resumed run repeats the uninterrupted run's weights, optimizer state and data order exactly
# (with model.modality_dropout=0 it ends bit-identical: tests/test_training_retrieval.py), but
# stateful random ops restart from the seed, so after the kill modality dropout draws other masks:
# the same training under another dropout noise sequence. Resumed from 7 kill points on the sample
# catalog, the final loss moved by -1.3 %..+2.4 % (sd 1.3 %) and test Recall@10 by -0.022..+0.013
# (sd 0.011); the bounds are about 3 sd. (Other seeds move Recall@10 over 0.24..0.36.) That loss
# spread was measured on the train loss of the epoch's last batch (a 14-example remainder on the
# sample catalog); the comparison now uses the final validation loss (over the whole split, from
# the final weights), which varies less, so the loss bound is conservative.
TOLERANCE = {"loss_relative": 0.04, "recall@10_absolute": 0.05}
TOLERANCE_WHY = (
    "weights, optimizer state and data order resume exactly (bit-identical without dropout), but "
    "modality dropout's random masks restart from the seed; over 7 kill points the final loss (then "
    "the last train batch's; now the validation loss, which varies less) moved -1.3%..+2.4% (sd 1.3%) and "
    "Recall@10 -0.022..+0.013 (sd 0.011): bounds are ~3 sd"
)
TIMEOUT = 900  # seconds for one training command


def cli_command() -> list[str]:
    """How to run `tfrs-mm`: the console script beside this interpreter, else `python -c main()`."""
    script = os.path.join(os.path.dirname(sys.executable), "tfrs-mm")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "import sys; from tfrs_mm.cli import main; sys.exit(main(sys.argv[1:]))"]


def train_command(data_dir: str, workdir: str, settings=SETTINGS) -> list[str]:
    """`tfrs-mm train retrieval` on `data_dir` into `workdir`, demo preset plus `settings`."""
    sets = [part for s in settings for part in ("--set", s)]
    return [
        *cli_command(),
        "train",
        "retrieval",
        "--data",
        data_dir,
        "--workdir",
        workdir,
        "--preset",
        "demo",
        *sets,
    ]


def _run(command: list[str], log: str) -> int:
    """Runs `command` to the end with stdout and stderr in `log`; returns its exit status."""
    with open(log, "w") as out:
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUT).returncode


def _saved_checkpoints(workdir: str) -> int:
    """How many backups the run has saved (BackupAndRestore numbers them ckpt-1, ckpt-2, ...)."""
    try:
        with open(os.path.join(workdir, "backup", "chief", "checkpoint")) as f:
            match = re.search(r'model_checkpoint_path: "ckpt-(\d+)"', f.read())
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def run_and_kill(command: list[str], workdir: str, after_checkpoints: int, log: str) -> int:
    """Starts `command` and SIGKILLs it as soon as it has saved `after_checkpoints` backups.

    Returns:
        The exit status: -SIGKILL when killed, something else if it ended first.
    """
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _saved_checkpoints(workdir) >= after_checkpoints:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        else:
            if process.poll() is None:
                process.kill()
        return process.wait()


def _final_figures(workdir: str) -> tuple[dict, float, float]:
    """(training section, last epoch's train loss, test Recall@10) of a finished run's metrics.json."""
    with open(os.path.join(workdir, "metrics.json")) as f:
        metrics = json.load(f)
    training = metrics["training"]
    # The validation loss, not the train loss: a resumed epoch's logged train loss averages only the
    # steps run after the restart, while the validation loss comes from the final weights.
    return training, training["history"]["val_loss"][-1], metrics["test"]["recall@10"]


def within_tolerance(uninterrupted: tuple[float, float], resumed: tuple[float, float]) -> bool:
    """True when (loss, Recall@10) of the resumed run are within `TOLERANCE` of the uninterrupted run's."""
    loss_ok = abs(resumed[0] - uninterrupted[0]) <= TOLERANCE["loss_relative"] * abs(uninterrupted[0])
    return loss_ok and abs(resumed[1] - uninterrupted[1]) <= TOLERANCE["recall@10_absolute"]


def run_resume(data_dir: str, root: str, kill_fraction: float = 1.5) -> dict:
    """Uninterrupted run, then a run SIGKILLed at `kill_fraction` epochs and resumed; their figures.

    Returns:
        The `resume` figures plus `ok` (the fault was survived), `detail` and the workdirs.
    """
    from tfrs_mm import schema
    from tfrs_mm.training.data import steps_per_epoch
    from tfrs_mm.training.resumable import BACKUP_DIR, resume_point

    os.makedirs(root, exist_ok=True)
    clean, killed = os.path.join(root, "uninterrupted"), os.path.join(root, "killed")
    for workdir in (clean, killed):
        shutil.rmtree(workdir, ignore_errors=True)
    status = {"uninterrupted": _run(train_command(data_dir, clean), clean + ".log")}
    values = dict(s.split("=") for s in SETTINGS)
    steps = steps_per_epoch(schema.read_manifest(data_dir), "train", int(values["train.batch_size"]))
    every, epochs = int(values["train.checkpoint_every_steps"]), int(values["train.epochs"])
    target = math.ceil(kill_fraction * steps / every)
    status["killed"] = run_and_kill(train_command(data_dir, killed), killed, target, killed + ".kill.log")
    point = resume_point(os.path.join(killed, BACKUP_DIR), steps)
    status["resumed"] = _run(train_command(data_dir, killed), killed + ".log")
    return _resume_figures(clean, killed, status, point, steps * epochs)


def _resume_figures(clean: str, killed: str, status: dict, point, total_steps: int) -> dict:
    tolerance = {**TOLERANCE, "why": TOLERANCE_WHY}
    figures = {"killed_at_step": point.global_step, "resumed_from_step": None, "tolerance": tolerance}
    if status["uninterrupted"] != 0 or status["resumed"] != 0:
        return {**figures, "ok": False, "detail": f"a training command failed: exit statuses {status}"}
    _, loss, recall = _final_figures(clean)
    training, loss_resumed, recall_resumed = _final_figures(killed)
    figures.update(
        resumed_from_step=training.get("resumed_from_step"),
        steps_run_after_restart=training.get("steps_run"),
        total_steps=total_steps,
        killed_in_epoch=point.epoch + 1,
        loss_uninterrupted=loss,
        loss_resumed=loss_resumed,
        **{"recall@10_uninterrupted": recall, "recall@10_resumed": recall_resumed},
    )
    checks = {
        "killed by SIGKILL": status["killed"] == -signal.SIGKILL,
        "backup was mid-epoch": point.global_step > 0 and point.step > 0,
        "restart resumed from the backup": training.get("resumed_from_step") == point.global_step,
        "restart ran only the remaining steps": training.get("steps_run") == total_steps - point.global_step,
        "final loss and Recall@10 within tolerance": within_tolerance(
            (loss, recall), (loss_resumed, recall_resumed)
        ),
    }
    failed = [name for name, ok in checks.items() if not ok]
    detail = (
        f"killed in epoch {point.epoch + 1} after step {point.global_step} of {total_steps}; "
        f"the restart resumed at step {training.get('resumed_from_step')} "
        f"and ran {training.get('steps_run')} steps; "
        f"validation loss {loss_resumed:.4f} vs {loss:.4f}, Recall@10 {recall_resumed:.4f} vs {recall:.4f}"
    )
    if failed:
        detail += "; FAILED: " + ", ".join(failed)
    return {
        **figures,
        "ok": not failed,
        "detail": detail,
        "workdirs": {"uninterrupted": clean, "killed": killed},
    }


def make_sample_dataset(root: str, encoder_cache: str | None = None) -> str:
    """A preprocessed sample catalog in `root/data` (120 items, 80 users, demo preset); returns its path.

    The same catalog as the test suite's `sample_dataset` fixture.
    """
    from tfrs_mm import cli
    from tfrs_mm.data.synthetic import SampleSpec, generate_sample

    raw, data = os.path.join(root, "raw"), os.path.join(root, "data")
    if os.path.exists(os.path.join(data, "manifest.json")):
        return data
    shutil.rmtree(root, ignore_errors=True)
    generate_sample(raw, SampleSpec(num_items=120, num_users=80, seed=5))
    argv = ["preprocess", "--raw", raw, "--out", data, "--preset", "demo", "--runner=DirectRunner"]
    if encoder_cache:
        argv += ["--model-cache", encoder_cache]
    if cli.main(argv) != 0:
        raise RuntimeError(f"preprocessing the sample catalog into {data} failed")
    return data


NONFINITE = {"NaN": float("nan"), "+inf": float("inf")}
TRAINERS = ("retrieval", "ranking")
_ID_KEYS = {"items": ("item_id",), "users": ("user_id",), "train": ("user_id", "item_id")}


def injection_targets(manifest) -> list[tuple[str, str]]:
    """(records, feature) for every numeric feature the trainers read: embeddings, user numbers, weights."""
    from tfrs_mm.schema import features as F

    targets = [("items", F.embedding_feature(m)) for m in sorted(manifest.embedding_dims)]
    if "users" in manifest.files:
        targets += [("users", s.name) for s in manifest.user_features if s.dtype == "float32"]
    return targets + [("train", s.name) for s in manifest.interaction_features if s.dtype == "float32"]


def _presence(kind: str, feature: str) -> str | None:
    """The 0/1 feature saying whether `feature` holds a value (the corrupted record must have one)."""
    from tfrs_mm.schema import features as F

    if kind == "items":
        return F.presence_feature(feature.removesuffix("_embedding"))
    return F.presence_feature(feature) if kind == "users" else None


def corrupt_copy(data_dir: str, out: str, kind: str, feature: str, value: float) -> dict[str, str]:
    """Copies `data_dir` to `out` and sets one value of `feature` in one `kind` record to `value`.

    Returns:
        The ids of the corrupted record, e.g. {"item_id": "i00003"}.
    """
    import tensorflow as tf

    from tfrs_mm import schema

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(data_dir, out)
    path = sorted(glob.glob(os.path.join(out, schema.read_manifest(out).files[kind])))[0]
    records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
    presence = _presence(kind, feature)
    for index, record in enumerate(records):
        example = tf.train.Example.FromString(record)
        fields = example.features.feature
        if presence and not fields[presence].int64_list.value[0]:
            continue  # a missing value is 0 by contract; corrupt one the model really uses
        values = fields[feature].float_list.value
        values[len(values) // 2] = value
        records[index] = example.SerializeToString()
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for r in records:
                writer.write(r)
        return {key: fields[key].bytes_list.value[0].decode() for key in _ID_KEYS[kind]}
    raise ValueError(f"no {kind} record in {path} has a value of {feature!r}")


def _attempt(trainer: str, data_dir: str, workdir: str, settings, trained: str | None) -> Exception | None:
    """Trains `trainer` in-process on `data_dir`; returns the exception it raised, None if none."""
    from tfrs_mm import config as config_lib
    from tfrs_mm.training.ranking import train_ranking
    from tfrs_mm.training.retrieval import train_retrieval

    shutil.rmtree(workdir, ignore_errors=True)
    config = config_lib.load_config(preset="demo", overrides=list(settings))
    try:
        if trainer == "ranking":
            # The ranker needs a trained retrieval model in its workdir: a clean one.
            shutil.copytree(trained, workdir, ignore=shutil.ignore_patterns("backup", "logs", "ranking"))
            train_ranking(config, data_dir, workdir, verbose=False)
        else:
            train_retrieval(config, data_dir, workdir, verbose=False)
    except Exception as error:  # any failure is a figure here, judged by `_named`
        return error
    return None


def _named(error: Exception | None, feature: str, ids: dict[str, str]) -> bool:
    """The fault is handled as specified: a `NonFiniteFeatureError` naming the feature and ids."""
    from tfrs_mm.training.numeric_checks import NonFiniteFeatureError

    text = str(error)
    return (
        isinstance(error, NonFiniteFeatureError)
        and repr(feature) in text
        and all(i in text for i in ids.values())
    )


def run_nonfinite_faults(
    data_dir: str, root: str, settings=SETTINGS, trained: str | None = None
) -> list[dict]:
    """NaN and +inf in each numeric feature, for each trainer (ranking only with a `trained` workdir)."""
    from tfrs_mm import schema

    faults = []
    trainers = TRAINERS if trained else TRAINERS[:1]
    for kind, feature in injection_targets(schema.read_manifest(data_dir)):
        outcomes = []
        for label, value in NONFINITE.items():
            copy = os.path.join(root, f"{kind}-{feature}-{label}")
            ids = corrupt_copy(data_dir, copy, kind, feature, value)
            for trainer in trainers:
                error = _attempt(trainer, copy, os.path.join(root, "work"), settings, trained)
                outcomes.append((f"{label} / {trainer}", error, _named(error, feature, ids)))
        faults.append(_fault_entry(f"NaN and +inf in {kind} {feature!r}", outcomes))
    return faults


def _fault_entry(name: str, outcomes: list[tuple[str, Exception | None, bool]]) -> dict:
    failed = [f"{label}: {type(e).__name__ if e else 'no error'}" for label, e, ok in outcomes if not ok]
    example = next((e for _, e, ok in outcomes if ok), None) or next((e for _, e, _ in outcomes), None)
    detail = f"{len(outcomes)} attempts ({', '.join(label for label, _, _ in outcomes)})"
    detail += f"; e.g. {type(example).__name__}: {str(example)[:300]}" if example else ""
    if failed:
        detail += "; NOT HANDLED: " + "; ".join(failed)
    survived = sum(ok for _, _, ok in outcomes)
    return {"name": name, "tried": len(outcomes), "survived": survived, "records_lost": 0, "detail": detail}


def run_nonfinite_cli(data_dir: str, root: str) -> dict:
    """NaN `weight` through `tfrs-mm train retrieval`: non-zero exit, last line names feature and ids.

    Also checks that no `metrics.json` was written (a NaN loss would have finished the run).
    """
    copy, workdir = os.path.join(root, "data"), os.path.join(root, "work")
    ids = corrupt_copy(data_dir, copy, "train", "weight", float("nan"))
    shutil.rmtree(workdir, ignore_errors=True)
    status = _run(train_command(copy, workdir), workdir + ".log")
    with open(workdir + ".log") as f:
        lines = [line.strip() for line in f if line.strip()]
    last = lines[-1] if lines else ""
    # The CLI prints a ValueError (NonFiniteFeatureError is one) as "tfrs-mm train: error: ...", exit 1.
    ok = status not in (0, -signal.SIGKILL) and "'weight'" in last and "NaN or infinite" in last
    ok = ok and all(i in last for i in ids.values())
    ok = ok and not os.path.exists(os.path.join(workdir, "metrics.json"))
    detail = f"exit status {status}; last line: {last[:300]}"
    name = "NaN weight through `tfrs-mm train retrieval`"
    return {"name": name, "tried": 1, "survived": int(ok), "records_lost": 0, "detail": detail}


def run_training_faults(work_dir: str, data_dir: str | None = None, encoder_cache: str | None = None) -> dict:
    """Runs the kill-and-resume scenario and every NaN/inf injection; returns their figures.

    Args:
        work_dir: Scratch directory (workdirs, corrupted dataset copies, logs).
        data_dir: A preprocessed dataset; None makes the sample catalog in `work_dir/sample`.
        encoder_cache: Encoder cache for making the sample catalog (default cache when None).

    Returns:
        {"faults": [{name, tried, survived, records_lost, detail}, ...], "resume": {killed_at_step,
        resumed_from_step, loss_uninterrupted, loss_resumed, recall@10_uninterrupted,
        recall@10_resumed, tolerance, ...}}. `survived` counts attempts handled as specified: a
        resume within tolerance that ran only the remaining steps; a NaN or inf that stopped
        training with an error naming the feature and the offending ids.
    """
    os.makedirs(work_dir, exist_ok=True)
    data_dir = data_dir or make_sample_dataset(os.path.join(work_dir, "sample"), encoder_cache)
    resume = run_resume(data_dir, os.path.join(work_dir, "resume"))
    lost = 0
    if resume.get("steps_run_after_restart") is not None:
        # Steps neither saved before the kill nor run after it (or run twice, if negative).
        lost = abs(resume["total_steps"] - resume["resumed_from_step"] - resume["steps_run_after_restart"])
    faults = [
        {
            "name": "SIGKILL mid-epoch, same command again",
            "tried": 1,
            "survived": int(resume["ok"]),
            "records_lost": lost,
            "detail": resume["detail"],
        }
    ]
    trained = resume.get("workdirs", {}).get("uninterrupted")
    faults += run_nonfinite_faults(data_dir, os.path.join(work_dir, "nonfinite"), SETTINGS, trained)
    faults.append(run_nonfinite_cli(data_dir, os.path.join(work_dir, "nonfinite_cli")))
    figures = {k: v for k, v in resume.items() if k not in ("ok", "detail", "workdirs")}
    return {"faults": faults, "resume": figures}
