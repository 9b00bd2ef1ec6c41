"""Faults tier, hostile catalog: every bad input is dead-lettered with its reason, nothing is lost,
and nothing outside the catalog root is read."""

import os

import pytest

from beam_jobs import item_media
from beam_jobs.item_media import DecodeAudioFn, ReadImageFn
from beam_jobs.item_records import ItemRecord
from tfrs_mm.data.hostile import write_hostile_catalog
from tfrs_mm.faults.catalog import OpenAudit, run_catalog_faults

pytestmark = pytest.mark.faults

# The corruptions issue 7 lists; a suite that quietly drops one must fail.
REQUIRED_GROUPS = {
    "truncated image",
    "decompression bomb",
    "mislabelled image",
    "zero-byte WAV",
    "truncated WAV",
    "non-audio WAV",
    "invalid UTF-8",
    "wrong column count",
    "10 MB text field",
    "NaN rating",
    "negative rating",
    "duplicate id",
    "unknown id",
    "path escape",
    "symlink out",
}
STAGES = (
    "items",
    "items.text",
    "items.image",
    "items.audio",
    "interactions.parse",
    "interactions.validate",
    "interactions.dedupe",
    "interactions.filter",
    "interactions.split",
    "users.read",
    "users.validate",
    "users.dedupe",
)


@pytest.fixture(scope="module")
def figures(tmp_path_factory, encoder_cache):
    return run_catalog_faults(str(tmp_path_factory.mktemp("hostile")), encoder_cache=encoder_cache)


def test_the_jobs_finish_and_every_bad_input_is_dead_lettered_with_its_reason(figures):
    assert figures["finished"], figures["error"]
    failed = [
        f"{x['name']} at {x['where']}: {x['fate']} {x['got']}" for x in figures["inputs"] if not x["survived"]
    ]
    assert not failed, "\n".join(failed)
    assert {f["name"] for f in figures["faults"]} >= REQUIRED_GROUPS
    for fault in figures["faults"]:
        assert fault["survived"] == fault["tried"] > 0, fault


def test_counts_balance_per_stage_and_no_record_is_lost(figures):
    stages = figures["stages"]
    assert set(STAGES) <= set(stages)
    for stage, c in stages.items():
        assert c["input"] == c["written"] + c["dead_lettered"] + c["filtered"], (stage, c)
    assert figures["records_lost"] == 0
    assert all(f["records_lost"] == 0 for f in figures["faults"]), figures["faults"]
    # Every dead letter is one of ours: no good row or file was rejected along with them.
    assert sum(c["dead_lettered"] for c in stages.values()) == len(figures["inputs"])
    assert stages["items"]["written"] > 100 and stages["interactions.split"]["written"] > 1000


def test_no_file_outside_the_catalog_root_is_opened(figures):
    assert figures["files_read_outside_root"] == 0, figures["opened_outside_root"]
    # The hook was listening: it saw the jobs open the catalog's tables and media.
    assert figures["files_read_inside_root"] > 100


def test_the_escapes_reach_the_canaries_when_unguarded_and_the_audit_sees_it(tmp_path, monkeypatch):
    """Positive control: with the path check removed, the escaping paths open the canaries."""
    catalog = write_hostile_catalog(str(tmp_path))
    escapes = [f for f in catalog.faults if f.group in ("path escape", "symlink out")]
    assert len(escapes) >= 10
    for guarded in (True, False):
        if not guarded:
            monkeypatch.setattr(item_media, "media_uri", lambda root, value: os.path.join(root, value))
        fns = {"image": ReadImageFn(catalog.root), "audio": DecodeAudioFn(catalog.root, 3.0)}
        with OpenAudit(catalog.watched, catalog.root) as audit:
            outputs = [list(fns[f.stage.split(".")[1]].process(_media_item(f))) for f in escapes]
        reasons = {out[0].value.reason for out in outputs if hasattr(out[0], "value")}
        if guarded:
            assert reasons == {"refused path"} and len(outputs) == len(escapes)
            assert audit.opened == []
        else:
            local = [f for f in escapes if "://" not in f.file and not f.file.startswith("~")]
            assert len(set(audit.opened)) >= 3 and len(audit.opened) >= len(local)


def test_symlinks_in_the_catalog_point_outside_its_root(tmp_path):
    catalog = write_hostile_catalog(str(tmp_path))
    links = [f for f in catalog.faults if f.group == "symlink out"]
    for fault in links:
        path = os.path.join(catalog.root, fault.file)
        target = os.path.realpath(path)
        assert os.path.exists(target) and not target.startswith(catalog.root + os.sep), fault
        assert any(target == w or target.startswith(w + os.sep) for w in catalog.watched), fault


def _media_item(fault) -> ItemRecord:
    modality = fault.stage.split(".")[1]
    media = {"image": "", "audio": "", modality: fault.file}
    return ItemRecord(fault.item_id, "", "", (), media["image"], media["audio"], {}, "items.csv", 2)
