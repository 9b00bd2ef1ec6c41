"""A hostile catalog: the sample catalog corrupted in every way a real one arrives broken.

`write_hostile_catalog` generates the synthetic sample catalog and corrupts
it: truncated and mislabelled images, a decompression bomb, zero-byte,
truncated and non-audio WAVs, invalid UTF-8, wrong field counts, a 10 MB text field, NaN and negative
values, duplicate, malformed and unknown ids, and media paths that escape the
catalog (`../../etc/passwd`, absolute paths, URIs, symlinks out). Every bad
input is recorded as a `CatalogFault`: what was corrupted, where (file and
line, or item), the dead letter (stage, reason) the preprocess jobs must turn
it into, and its key in the jobs' outputs should it get through instead.

Layout under `work_dir`: `srv/catalog/` (the root; `../../etc/passwd` from
there lands on the canary `etc/passwd`), `outside/` (a canary image and clip,
valid media, so an item that read one would come out with that modality
present) and `hostile_faults.json` (the faults). `tfrs_mm.faults.catalog`
runs the jobs on it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import struct
import zlib

import numpy as np

from tfrs_mm.data import raw, sample_media
from tfrs_mm.data.synthetic import SampleSpec, generate_sample

CATALOG_DIR = os.path.join("srv", "catalog")
OUTSIDE_DIR = "outside"
FAULTS_FILE = "hostile_faults.json"
HUGE_FIELD_CHARS = 10 << 20  # the "10 MB text field"
DEFAULT_SPEC = SampleSpec(num_items=120, num_users=80, seed=5)  # as tests/conftest.py: about 2 minutes
SYSTEM_TARGETS = ("/etc/passwd",)  # real files the deep escapes point at; must never be opened either


@dataclasses.dataclass(frozen=True)
class CatalogFault:
    """One bad input and the dead letter it must become.

    Attributes:
        group: The issue's corruption it belongs to, e.g. `truncated image`.
        name: Unique name of this input.
        what: What was corrupted, for people.
        file: The raw file holding it, relative to the root (`items.csv`, `images/i00003.jpg`).
        stage: Expected dead-letter stage, e.g. `items.image`.
        reason: Expected dead-letter reason, e.g. `corrupt image`.
        line: CSV line where the bad row starts (row faults); 0 for media faults.
        item_id: The item whose media is bad (media faults).
        key: Its identity in the written outputs, to tell "written" from "lost".
    """

    group: str
    name: str
    what: str
    file: str
    stage: str
    reason: str
    line: int = 0
    item_id: str = ""
    key: str = ""


@dataclasses.dataclass(frozen=True)
class HostileCatalog:
    """A written hostile catalog: its root, its faults, and the paths no reader may open."""

    root: str
    faults: tuple[CatalogFault, ...]
    watched: tuple[str, ...]  # real paths (files or directories) outside the root


class _Csv:
    """A raw CSV being corrupted: rows as field lists, plus raw byte rows inserted anywhere."""

    def __init__(self, path: str):
        self.path = path
        with open(path, encoding="utf-8", newline="") as f:
            self.header, *rows = list(csv.reader(f))
        self.rows = [list(r) for r in rows]
        self.entries: list = list(self.rows)  # list[str] rows and bytes rows, in file order
        self.pending: list[tuple[object, dict]] = []

    def col(self, name: str) -> int:
        return self.header.index(name)

    def add(self, data: bytes, fault: dict, top: bool = False) -> None:
        holder = [data]  # a fresh object, so its line can be found by identity
        self.entries.insert(0, holder) if top else self.entries.append(holder)
        self.pending.append((holder, fault))

    def write(self) -> list[CatalogFault]:
        """Writes the file and returns its row faults with their line numbers."""
        lines, line, out = {}, 2, io.BytesIO()
        out.write(_csv_bytes(self.header))
        for entry in self.entries:
            data = entry[0] if isinstance(entry[0], bytes) else _csv_bytes(entry)
            lines[id(entry)] = line
            line += data.count(b"\n")
            out.write(data)
        with open(self.path, "wb") as f:
            f.write(out.getvalue())
        name = os.path.basename(self.path)
        return [CatalogFault(file=name, line=lines[id(h)], **fault) for h, fault in self.pending]


def _csv_bytes(fields) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow(fields)
    return text.getvalue().encode("utf-8")


def _fault(group, name, what, stage, reason, key="") -> dict:
    return {"group": group, "name": name, "what": what, "stage": stage, "reason": reason, "key": key}


def _item_row_faults(items: _Csv, known: str) -> None:
    """Bad rows of items.csv; the invalid-UTF-8 and huge rows go first, where launch code reads too."""
    rows = (
        (True, "invalid UTF-8", "utf8_item", b"i90001,Caf\xe9 \xff\xfe,desc,drama,,\n", "non-UTF-8 bytes"),
        (True, "10 MB text field", "huge_description",
         b"i90002,Huge," + b"x" * HUGE_FIELD_CHARS + b",drama,,\n", "oversized field"),
        (False, "wrong column count", "item_too_many_fields", b"i90003,A,b,drama,,,extra\n",
         "wrong field count"),
        (False, "wrong column count", "item_too_few_fields", b"i90004,Too few\n", "wrong field count"),
        (False, "malformed id", "item_empty_id", b",No id,,drama,,\n", "empty required field"),
    )  # fmt: skip
    for top, group, name, data, reason in rows:
        key = "item\t" + data.split(b",")[0].decode("utf-8", "replace")
        items.add(data, _fault(group, name, f"items.csv row {data[:60]!r}", "items.read", reason, key), top)
    items.add(
        b'"i90005\ni90006",Line break in id,,drama,,\n',
        _fault(
            "malformed id",
            "item_id_line_break",
            "item id with a line break",
            "items.parse",
            "invalid id",
            "item\ti90005\ni90006",
        ),
    )
    items.add(
        f"{known},Duplicate row,,drama,,\n".encode(),
        _fault(
            "duplicate id", "duplicate_item", f"second row for {known}", "items.dedupe", "duplicate item",
            f"item\t{known}\tDuplicate row",
        ),
    )  # fmt: skip


def _interaction_row_faults(table: _Csv, user: str, item: str, ts: int) -> None:
    """Bad rows of interactions.csv, all naming a real user and (but for the id faults) a real item."""
    val, parse = "interactions.validate", "interactions.parse"
    rows = (
        ("invalid UTF-8", "utf8_interaction", f"u\udcff\udcfe1,{item},{ts},4", parse, "non-UTF-8 bytes"),
        ("wrong column count", "interaction_too_many_fields", f"{user},{item},{ts},4,x,y", parse,
         "wrong field count"),
        ("wrong column count", "interaction_too_few_fields", f"{user},{item}", parse, "wrong field count"),
        ("NaN rating", "rating_nan", f"{user},{item},{ts + 1},nan", val, "invalid rating"),
        ("NaN rating", "rating_inf", f"{user},{item},{ts + 2},inf", val, "invalid rating"),
        ("negative rating", "rating_negative", f"{user},{item},{ts + 3},-3", val, "invalid rating"),
        ("unknown id", "unknown_item", f"{user},i99999,{ts},4", val, "unknown item"),
        ("unknown id", "dead_lettered_item", f"{user},i90002,{ts},4", val, "unknown item"),
        ("malformed id", "interaction_empty_user", f",{item},{ts},4", parse, "empty required field"),
        ("malformed id", "bad_timestamp", f"{user},{item},yesterday,4", val, "invalid timestamp"),
        # One second before the real row: dedupe keeps the latest, so this copy is the one rejected.
        ("duplicate id", "duplicate_interaction", f"{user},{item},{ts - 1},4", "interactions.dedupe",
         "duplicate interaction"),
    )  # fmt: skip
    for index, (group, name, text, stage, reason) in enumerate(rows):
        data = text.encode("utf-8", "surrogateescape") + b"\n"
        key = "interaction\t" + "\t".join(text.split(",")[:3])
        table.add(data, _fault(group, name, f"interactions.csv row {text!r}", stage, reason, key), index == 0)


def _user_row_faults(users: _Csv, known: str) -> None:
    rows = (
        ("invalid UTF-8", "utf8_user", b"u90001,30,\xff\n", "users.read", "non-UTF-8 bytes"),
        ("wrong column count", "user_too_many_fields", b"u90002,30,F,extra\n", "users.read",
         "wrong field count"),
        ("NaN user feature", "user_age_nan", b"u90003,nan,F\n", "users.validate", "invalid age"),
        ("duplicate id", "duplicate_user", f"{known},99,X\n".encode(), "users.dedupe", "duplicate user"),
        ("malformed id", "user_empty_id", b",30,F\n", "users.read", "empty required field"),
    )  # fmt: skip
    for index, (group, name, data, stage, reason) in enumerate(rows):
        key = "user\t" + "\t".join(data.decode("utf-8", "replace").strip().split(",")[:2])
        users.add(data, _fault(group, name, f"users.csv row {data!r}", stage, reason, key), index == 0)


def _write_canaries(work_dir: str) -> dict[str, str]:
    """Valid media and a fake passwd outside the root: what the escaping paths point at."""
    rng = np.random.default_rng(0)
    pixels = sample_media.render_image(rng, np.ones(2), 0)
    waveform = sample_media.render_audio(rng, np.ones(2), 0, 3.0)
    files = {
        "png": (OUTSIDE_DIR, "canary.png", sample_media.image_bytes(pixels, "png")),
        "wav": (OUTSIDE_DIR, "canary.wav", sample_media.wav_bytes(waveform)),
        "passwd": ("etc", "passwd", b"root:x:0:0:canary:/root:/bin/sh\n"),
    }
    paths = {}
    for kind, (folder, name, data) in files.items():
        os.makedirs(os.path.join(work_dir, folder), exist_ok=True)
        paths[kind] = os.path.realpath(os.path.join(work_dir, folder, name))
        with open(paths[kind], "wb") as f:
            f.write(data)
    return paths


class _MediaCorrupter:
    """Corrupts one item's image or audio per fault: the file's bytes, a symlink, or the CSV path."""

    def __init__(self, root: str, items: _Csv, spare: set[str]):
        self.root, self.items, self.spare = root, items, spare
        self.used: set[tuple[str, str]] = set()
        self.faults: list[CatalogFault] = []

    def __call__(self, modality, group, name, reason, what, suffix="", data=None, link=None, value=None):
        col = self.items.col(modality)
        row = next(
            r
            for r in self.items.rows
            if r[col].endswith(suffix)
            and r[col]
            and (r[0], modality) not in self.used
            and r[0] not in self.spare
        )
        self.used.add((row[0], modality))
        path = os.path.join(self.root, row[col])
        if data is not None:
            data = data(path) if callable(data) else data  # read before "wb" empties the file
            with open(path, "wb") as f:
                f.write(data)
        if link is not None:
            os.remove(path)
            os.symlink(link, path)
        row[col] = row[col] if value is None else value
        key = f"media\t{row[0]}\t{modality}"
        fault = CatalogFault(group, name, what, row[col], f"items.{modality}", reason, 0, row[0], key)
        self.faults.append(fault)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _half(path: str) -> bytes:
    data = _read(path)
    return data[: len(data) // 2]


def _half_patched_riff(path: str) -> bytes:
    """Half a WAV whose RIFF size was fixed up: only its data chunk size still tells it is cut."""
    data = _half(path)
    return data[:4] + (len(data) - 8).to_bytes(4, "little") + data[8:]


def _png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares width x height RGB pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * width) * 4)  # the first 4 rows; the rest never comes
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _media_faults(root: str, items: _Csv, canary: dict[str, str], spare: set[str]) -> list[CatalogFault]:
    bad = _MediaCorrupter(root, items, spare)
    wav, png = _read(canary["wav"]), _read(canary["png"])
    outside = os.path.dirname(canary["png"])
    corruptions = (  # modality, group, name, expected reason, what, path suffix, new bytes
        ("image", "truncated image", "truncated_jpeg", "corrupt image", "JPEG cut in half", ".jpg", _half),
        ("image", "truncated image", "truncated_png", "corrupt image", "PNG cut in half", ".png", _half),
        ("image", "mislabelled image", "wav_named_jpg", "corrupt image", "a WAV named .jpg", ".jpg", wav),
        ("image", "mislabelled image", "html_named_png", "corrupt image", "HTML named .png", ".png",
         b"<html><body>not an image</body></html>\n"),
        ("image", "decompression bomb", "png_bomb", "image too large",
         "PNG of a few hundred bytes declaring 30,000 x 30,000 pixels", ".png", _png_bomb()),
        ("image", "zero-byte image", "zero_byte_image", "missing file", "empty image file", "", b""),
        ("audio", "zero-byte WAV", "zero_byte_wav", "missing file", "empty WAV file", "", b""),
        ("audio", "truncated WAV", "truncated_wav", "truncated audio", "WAV cut in half", "", _half),
        ("audio", "truncated WAV", "truncated_wav_header", "truncated audio", "WAV cut to 30 bytes", "",
         lambda path: _half(path)[:30]),
        ("audio", "truncated WAV", "truncated_wav_riff_patched", "truncated audio",
         "WAV cut in half, RIFF size rewritten to match", "", _half_patched_riff),
        ("audio", "non-audio WAV", "text_named_wav", "undecodable audio", "text named .wav", "",
         b"hello\n" * 50),
        ("audio", "non-audio WAV", "png_named_wav", "undecodable audio", "a PNG named .wav", "", png),
    )  # fmt: skip
    for modality, group, name, reason, what, suffix, data in corruptions:
        bad(modality, group, name, reason, what, suffix, data=data)
    escapes = (
        ("image", "dotdot_etc_passwd", "../../etc/passwd"),
        ("audio", "deep_dotdot_etc_passwd", "../" * 16 + "etc/passwd"),
        ("image", "inner_dotdot", "images/../../../outside/canary.png"),
        ("image", "absolute_canary", canary["png"]),
        ("audio", "absolute_etc_passwd", "/etc/passwd"),
        ("image", "file_uri", "file://" + canary["png"]),
        ("audio", "home_relative", "~/canary.wav"),
    )
    for modality, name, value in escapes:
        bad(modality, "path escape", name, "refused path", f"{modality} path {value!r}", value=value)
    os.symlink(outside, os.path.join(root, "images", "outside_dir"))
    links = (
        ("image", "symlink_absolute", canary["png"], None),
        ("audio", "symlink_relative", "../../../outside/canary.wav", None),
        ("image", "symlink_etc_passwd", "/etc/passwd", None),
        ("image", "symlink_dir", None, "images/outside_dir/canary.png"),
    )
    for modality, name, link, value in links:
        what = f"{modality} symlinked out: {link or value}"
        bad(modality, "symlink out", name, "refused path", what, link=link, value=value)
    os.symlink(canary["wav"], os.path.join(root, "audio", "chain_b.wav"))
    bad("audio", "symlink out", "symlink_chain", "refused path", "audio -> chain_b.wav -> outside",
        link="chain_b.wav")  # fmt: skip
    return bad.faults


def write_hostile_catalog(work_dir: str, spec: SampleSpec = DEFAULT_SPEC) -> HostileCatalog:
    """Writes the sample catalog under `work_dir/srv/catalog`, corrupted, and records every fault.

    Args:
        work_dir: Scratch directory; the catalog, canaries outside it and `hostile_faults.json` go here.
        spec: The sample catalog to corrupt (needs a few dozen items with images and audio).

    Returns:
        The catalog root, every bad input with its expected dead letter, and the watched paths.
    """
    work_dir = os.path.realpath(work_dir)
    root = os.path.join(work_dir, CATALOG_DIR)
    generate_sample(root, spec, overwrite=True)
    canary = _write_canaries(work_dir)
    items, interactions, users = (
        _Csv(os.path.join(root, name)) for name in (raw.ITEMS_FILE, raw.INTERACTIONS_FILE, raw.USERS_FILE)
    )
    user, item, ts = interactions.rows[0][:3]
    spare = {items.rows[0][0], item}  # the duplicate's original and the bad interactions' item stay clean
    faults = _media_faults(root, items, canary, spare)
    _item_row_faults(items, items.rows[0][0])
    _interaction_row_faults(interactions, user, item, int(ts))
    _user_row_faults(users, users.rows[0][0])
    for table in (items, interactions, users):
        faults += table.write()
    watched = (os.path.join(work_dir, OUTSIDE_DIR), os.path.join(work_dir, "etc"), *SYSTEM_TARGETS)
    catalog = HostileCatalog(root, tuple(faults), tuple(os.path.realpath(w) for w in watched))
    with open(os.path.join(work_dir, FAULTS_FILE), "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(x) for x in faults], f, indent=1, ensure_ascii=True)
    return catalog
