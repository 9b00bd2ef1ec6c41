"""`fit_resumable`: `model.fit` that a killed run continues exactly where its backup stopped.

`BackupAndRestore` saves the weights, optimizer state and (epoch, step) to
`workdir/backup` every `train.checkpoint_every_steps` steps and restores them
when the same command runs again. Keras then skips the steps already done but
restarts the epoch's data iterator at its first batch; reading the backup's
(epoch, step) first and starting `data.train_stream` there keeps the data in
step with the weights. What a resumed run cannot repeat is the state of
stateful random ops (modality dropout, the ranker's negative sampling): they
restart from the seed, so a resumed run ends close to, not bit-equal with, an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from tfrs_mm import config as config_lib
from tfrs_mm import fileio
from tfrs_mm.training import numeric_checks

logger = logging.getLogger(__name__)

BACKUP_DIR = "backup"
# Where tf-keras's BackupAndRestore keeps its state (see tf_keras WorkerTrainingState).
_CHIEF_DIR = "chief"
_SAVED_EPOCH = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
_SAVED_BATCH = "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"
_TRAIN_COUNTER = "train_counter/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where training continues: the first (epoch, step) to run, 0-based, and steps already done."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0


def resume_point(backup_dir: str, steps_per_epoch: int) -> ResumePoint:
    """The point a `BackupAndRestore` backup in `backup_dir` resumes from; zeros when there is none.

    Mirrors tf-keras's own choice (`_maybe_load_initial_counters_from_ckpt`):
    after a save at the last step of an epoch, the next epoch starts; after a
    save at step s, the same epoch continues at s + 1.
    """
    import tensorflow as tf

    path = tf.train.latest_checkpoint(fileio.join(backup_dir, _CHIEF_DIR))
    if not path:
        return ResumePoint()
    reader = tf.train.load_checkpoint(path)
    names = reader.get_variable_to_shape_map()
    if _SAVED_EPOCH not in names or _SAVED_BATCH not in names:
        logger.warning("backup %s has no saved epoch and step: the data restarts at its first batch", path)
        return ResumePoint()
    epoch, batch = int(reader.get_tensor(_SAVED_EPOCH)), int(reader.get_tensor(_SAVED_BATCH))
    done = int(reader.get_tensor(_TRAIN_COUNTER)) if _TRAIN_COUNTER in names else 0
    if batch < 0:
        return ResumePoint(global_step=done)
    if batch == steps_per_epoch - 1:
        return ResumePoint(epoch + 1, 0, done)
    return ResumePoint(epoch, batch + 1, done)


def _step_counter():
    import tensorflow as tf

    class StepCounter(tf.keras.callbacks.Callback):
        """Counts the training steps this process ran (the evidence that a restart resumed)."""

        steps = 0
        _supports_tf_logs = True  # never reads the logs

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1

    return StepCounter()


def training_callbacks(workdir: str, train: config_lib.TrainConfig, verbose: bool) -> list:
    """Non-finite loss check, BackupAndRestore, TensorBoard, the learning-rate decay, a progress bar."""
    import tensorflow as tf

    callbacks = [
        # Before the backup: a step whose loss is NaN must fail before it is saved.
        numeric_checks.nonfinite_loss_callback(),
        # Saves every `checkpoint_every_steps` steps and restores on restart: a killed run resumes mid-epoch.
        tf.keras.callbacks.BackupAndRestore(
            fileio.join(workdir, BACKUP_DIR), save_freq=train.checkpoint_every_steps, delete_checkpoint=False
        ),
        tf.keras.callbacks.TensorBoard(fileio.join(workdir, "logs"), update_freq="epoch"),
    ]
    if train.lr_decay_rate != 1.0:
        callbacks.append(
            tf.keras.callbacks.LearningRateScheduler(lambda epoch, _: learning_rate(train, epoch))
        )
    if verbose:
        callbacks.append(tf.keras.callbacks.ProgbarLogger(count_mode="steps"))
    return callbacks


def learning_rate(train: config_lib.TrainConfig, epoch: int) -> float:
    """The rate of 0-based `epoch`: the configured rate, times `lr_decay_rate` per epoch after the first N."""
    return train.learning_rate * train.lr_decay_rate ** max(0, epoch - train.lr_decay_after_epochs + 1)


def fit_resumable(
    model,
    make_train_dataset: Callable[[tuple[int, int]], object],
    steps_per_epoch: int,
    train: config_lib.TrainConfig,
    workdir: str,
    validation_data=None,
    verbose: bool = True,
    extra_callbacks: tuple = (),
) -> tuple[object, dict]:
    """Fits `model` for `train.epochs`, resuming from `workdir`'s backup; returns (history, info).

    Args:
        model: A compiled Keras model, built (BackupAndRestore restores into existing weights).
        make_train_dataset: (epoch, step) → the train batches from there on (`data.train_stream`).
        steps_per_epoch: Batches per epoch.
        train: Epochs and checkpointing.
        workdir: Holds `backup/`, `logs/`.
        validation_data: Evaluated after every epoch.
        verbose: Print a progress bar.
        extra_callbacks: More Keras callbacks, run after the validation loss is in the epoch logs.

    Returns:
        The Keras `History` and {train_seconds, resumed_from_step, steps_run}.

    Raises:
        numeric_checks.NonFiniteFeatureError: naming the feature, if a batch holds NaN or infinity.
        numeric_checks.NonFiniteLossError: if the loss becomes NaN or infinite.
    """
    backup = fileio.join(workdir, BACKUP_DIR)
    start = resume_point(backup, steps_per_epoch)
    if start.global_step:
        logger.info("resuming from the backup in %s: %s (0-based epoch and step)", backup, start)
    counter = _step_counter()
    callbacks = [*extra_callbacks, *training_callbacks(workdir, train, verbose), counter]
    began = time.perf_counter()
    with numeric_checks.nonfinite_inputs_by_name():
        history = model.fit(
            make_train_dataset((start.epoch, start.step)),
            steps_per_epoch=steps_per_epoch,
            epochs=train.epochs,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=0,
        )
    info = {
        "train_seconds": round(time.perf_counter() - began, 2),
        "resumed_from_step": start.global_step,
        "steps_run": counter.steps,
    }
    return history, info
