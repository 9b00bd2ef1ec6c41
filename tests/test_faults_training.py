"""Faults tier, training: a SIGKILLed run resumes from its backup and ends within tolerance of an
uninterrupted one; NaN or +inf in any numeric feature stops training with an error naming it."""

import pytest

from tfrs_mm.faults.training import TOLERANCE, run_training_faults, within_tolerance

pytestmark = pytest.mark.faults

# Every numeric feature the trainers read on the sample catalog; a suite that skips one must fail.
REQUIRED_FEATURES = {
    "items 'text_embedding'",
    "items 'image_embedding'",
    "items 'audio_embedding'",
    "users 'user.age'",
    "train 'weight'",
    "train 'rating'",
}


@pytest.fixture(scope="module")
def figures(sample_dataset, tmp_path_factory):
    work = tmp_path_factory.mktemp("training_faults")
    return run_training_faults(str(work), data_dir=str(sample_dataset / "data"))


def test_figures_have_the_agreed_shape(figures):
    for fault in figures["faults"]:
        assert set(fault) == {"name", "tried", "survived", "records_lost", "detail"}, fault
        assert fault["tried"] > 0 and fault["records_lost"] == 0, fault
    resume = figures["resume"]
    for key in ("killed_at_step", "resumed_from_step", "loss_uninterrupted", "loss_resumed", "tolerance"):
        assert key in resume, key
    assert "recall@10_uninterrupted" in resume and "recall@10_resumed" in resume


def test_the_killed_run_resumed_from_its_mid_epoch_backup(figures):
    resume = figures["resume"]
    assert 0 < resume["killed_at_step"] == resume["resumed_from_step"] < resume["total_steps"]
    assert resume["killed_in_epoch"] >= 2  # the order of a later epoch was rebuilt without its predecessors
    # Not from scratch, and no step run twice or skipped.
    assert resume["steps_run_after_restart"] == resume["total_steps"] - resume["resumed_from_step"]


def test_the_resumed_run_ends_within_tolerance(figures):
    resume = figures["resume"]
    uninterrupted = (resume["loss_uninterrupted"], resume["recall@10_uninterrupted"])
    assert within_tolerance(uninterrupted, (resume["loss_resumed"], resume["recall@10_resumed"])), resume
    kill = next(f for f in figures["faults"] if f["name"].startswith("SIGKILL"))
    assert kill["survived"] == kill["tried"] == 1, kill["detail"]


def test_every_nan_and_inf_stops_training_with_an_error_naming_the_feature(figures):
    injected = {f["name"]: f for f in figures["faults"] if f["name"].startswith("NaN and +inf in ")}
    covered = {name.removeprefix("NaN and +inf in ") for name in injected}
    assert covered >= REQUIRED_FEATURES, covered
    for fault in injected.values():
        assert fault["survived"] == fault["tried"], fault["detail"]
    for name in REQUIRED_FEATURES:
        assert injected[f"NaN and +inf in {name}"]["tried"] == 4  # NaN and +inf, retrieval and ranking


def test_the_command_line_exits_non_zero_with_the_reason_on_its_last_line(figures):
    cli = next(f for f in figures["faults"] if "tfrs-mm train retrieval" in f["name"])
    assert cli["survived"] == 1, cli["detail"]
    assert "exit status 1;" in cli["detail"] and "'weight'" in cli["detail"]


def test_the_tolerance_rejects_a_run_that_drifted():
    loss_step = TOLERANCE["loss_relative"] * 100
    assert within_tolerance((100.0, 0.30), (100.0 + 0.9 * loss_step, 0.30))
    assert not within_tolerance((100.0, 0.30), (100.0 + 1.1 * loss_step, 0.30))
    assert not within_tolerance((100.0, 0.30), (100.0, 0.30 + 1.1 * TOLERANCE["recall@10_absolute"]))
