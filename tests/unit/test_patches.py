"""The patches/ series and its applier, on real WhisperX wheels laid out as a fake site-packages.

Wheels come from the shared cache (``cache_dir()/wheels``), downloaded once by ``pip download --no-deps``;
tests that need them are marked ``network``. Everything else runs offline on synthetic trees.
"""

from __future__ import annotations

import argparse
import base64
import csv
import difflib
import hashlib
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from whisperx_matrix import patches as wxp
from whisperx_matrix.errors import ConfigError, NotBuiltError, PatchError, ToolMissingError

PROJECT = Path(__file__).resolve().parents[2]
SERIES_DIR = PROJECT / "patches"
P0001 = "0001-pyannote-use-auth-token-to-token"
P0002 = "0002-alignment-numpy-trellis"  # opt-in: off unless asked for
P0003 = "0003-guide-two-file-edit"  # opt-in: the guide's own edit, in place of 0001, for the cell that judges it
OUTSIDE_0002 = (P0002, "not applicable: whisperx 3.7.6 is outside <3.9.0,>=3.8.4")
REPLACED_0001 = (P0001, f"replaced by {P0003}, which this cell opts in to")
TESTED_37 = ("3.7.0", "3.7.6", "3.7.9")  # first, the document's, and last of the 3.7 line


# --- helpers -------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, by relative path: for byte-for-byte 'nothing changed' checks."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_site(tmp: Path, version: str, *, pyannote: str | None = "4.0.7") -> Path:
    """whisperx/*.py and its dist-info from the real wheel, plus a stub pyannote-audio dist-info."""
    site = tmp / f"site-{version}"
    with zipfile.ZipFile(wxp.wheel_for(version)) as zf:
        for info in zf.infolist():
            # The model checkpoint is 17 MB and no patch touches it.
            if info.is_dir() or info.filename.endswith(".bin"):
                continue
            target = site / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))
    if pyannote is not None:
        meta = site / f"pyannote_audio-{pyannote}.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: pyannote-audio\nVersion: {pyannote}\n")
    return site


@pytest.fixture(scope="session")
def wheels() -> dict[str, Path]:
    """Download (once, into the shared cache) the WhisperX releases these tests read."""
    return {v: wxp.wheel_for(v) for v in (*TESTED_37, "3.8.0", "3.8.6")}


@pytest.fixture
def site_factory(tmp_path: Path, wheels: dict[str, Path]) -> Callable[..., Path]:
    return lambda version, **kw: make_site(tmp_path, version, **kw)


@pytest.fixture(scope="session")
def series() -> wxp.Series:
    return wxp.load_series(SERIES_DIR)


def write_series(folder: Path, entries: list[dict[str, str]], texts: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["schema = 1", ""]
    for entry in entries:
        lines.append("[[patch]]")
        lines += [f"{k} = {v}" if k == "when_installed" else f'{k} = "{v}"' for k, v in entry.items()]
        lines.append("")
    (folder / "series.toml").write_text("\n".join(lines))
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder


def entry(pid: str, file: str, rng: str = ">=3.7.0,<3.8.0", **extra: str) -> dict[str, str]:
    return {"id": pid, "file": file, "applies_to": rng, "fixes": "test", "fixed_upstream": "3.8.0", **extra}


def record_consistent(site: Path) -> None:
    """Every hashed RECORD row matches its file, as pip computes them."""
    for record in site.glob("*.dist-info/RECORD"):
        for row in csv.reader(record.read_text().splitlines()):
            if not row or not row[1] or not (site / row[0]).exists():
                continue  # unhashed (.pyc) rows, and the .bin make_site leaves out
            data = (site / row[0]).read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert row[1] == f"sha256={digest}" and int(row[2]) == len(data), row[0]


# A hunk whose context is not in whisperx 3.7.6's asr.py (the line it names says use_auth_token=True).
WRONG_LINE = """\
--- a/whisperx/asr.py
+++ b/whisperx/asr.py
@@ -409,7 +409,7 @@
                 device_vad = f'cuda:{device_index}'
             else:
                 device_vad = device
-            vad_model = Pyannote(torch.device(device_vad), use_auth_token=True, **default_vad_options)
+            vad_model = Pyannote(torch.device(device_vad), token=True, **default_vad_options)
         else:
             raise ValueError(f"Invalid vad_method: {vad_method}")
 
"""


# --- the series on disk (offline) ----------------------------------------------------------------------


def test_series_loads_and_describes_each_patch(series: wxp.Series) -> None:
    patch = series.get(P0001)
    assert str(patch.fixed_upstream) == "3.8.0"
    assert [f.path for f in patch.files] == [
        "whisperx/asr.py",
        "whisperx/diarize.py",
        "whisperx/transcribe.py",
        "whisperx/vads/pyannote.py",
    ]
    assert patch.decide("3.7.6", {"pyannote-audio": "4.0.7"}) is None
    assert patch.decide("3.8.6", {}) == "not needed: fixed upstream in whisperx 3.8.0"
    assert patch.decide("3.8.7rc1", {}) == "not needed: fixed upstream in whisperx 3.8.0"
    assert patch.decide("3.4.2", {}).startswith("not applicable: whisperx 3.4.2 is outside")  # type: ignore[union-attr]
    # pyannote-audio 3.x only knows use_auth_token: the rename would break a 3.7 + pyannote 3 cell.
    assert "pyannote-audio 3.4.0" in (patch.decide("3.7.3", {"pyannote-audio": "3.4.0"}) or "")
    assert re.fullmatch(r"[0-9a-f]{64}", series.fingerprint())


def test_fingerprint_changes_with_any_patch_byte(tmp_path: Path, series: wxp.Series) -> None:
    copy = tmp_path / "patches"
    shutil.copytree(SERIES_DIR, copy)
    assert wxp.load_series(copy).fingerprint() == series.fingerprint()
    target = copy / f"{P0001}.patch"
    target.write_text(target.read_text().replace("pyannote-audio 4.x API", "pyannote-audio 4 API"))
    assert wxp.load_series(copy).fingerprint() != series.fingerprint()


def test_malformed_patch_names_file_and_line(tmp_path: Path) -> None:
    bad = WRONG_LINE.replace("@@ -409,7 +409,7 @@", "@@ -409,9 +409,7 @@")
    folder = write_series(tmp_path / "p", [entry("x", "x.patch")], {"x.patch": bad})
    with pytest.raises(PatchError, match=r"x\.patch:3: malformed patch: hunk #1 declares -9 \+7 lines"):
        wxp.load_series(folder)
    garbage = WRONG_LINE.replace("             else:", "?            else:")
    write_series(folder, [entry("x", "x.patch")], {"x.patch": garbage})
    with pytest.raises(PatchError, match=r"x\.patch:5: malformed patch: hunk line must start"):
        wxp.load_series(folder)
    write_series(folder, [entry("x", "x.patch")], {"x.patch": "just prose, no diff\n"})
    with pytest.raises(PatchError, match=r"x\.patch:1: malformed patch: no '--- a/"):
        wxp.load_series(folder)


def test_manifest_rejects_missing_file_and_bad_specifier(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "p", [entry("x", "gone.patch")], {})
    with pytest.raises(PatchError, match=r"series\.toml:5: patch 'x': file 'gone.patch' does not exist"):
        wxp.load_series(folder)
    write_series(folder, [entry("x", "x.patch", rng=">=3.7,<<3.8")], {"x.patch": WRONG_LINE})
    with pytest.raises(PatchError, match=r"series\.toml:6: patch 'x': applies_to: '>=3.7,<<3.8' is not a valid"):
        wxp.load_series(folder)
    write_series(folder, [entry("x", "x.patch", when_installed='{ pyannote-audio = "4" }')], {"x.patch": WRONG_LINE})
    with pytest.raises(PatchError, match=r"when_installed\.pyannote-audio: '4' is not a valid"):
        wxp.load_series(folder)
    write_series(folder, [entry("x", "x.patch", rng=">=3.7", fixed_upstream="3.8.0")], {"x.patch": WRONG_LINE})
    with pytest.raises(PatchError, match=r"fixed_upstream 3\.8\.0 lies inside applies_to"):
        wxp.load_series(folder)
    write_series(folder, [entry("x", "x.patch", fixes_upstream="3.8.0")], {"x.patch": WRONG_LINE})
    with pytest.raises(PatchError, match=r"series\.toml:9: unknown field 'fixes_upstream'"):
        wxp.load_series(folder)


def test_missing_patch_binary_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no patch on PATH
    with pytest.raises(ToolMissingError) as info:
        wxp.patch_bin()
    assert "GNU patch not found" in str(info.value)
    assert info.value.hint and "apt-get install patch" in info.value.hint


def test_cli_names_the_nox_session_for_an_unbuilt_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WXM_MATRIX", str(PROJECT / "matrix.toml"))
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "envs"))
    parser = argparse.ArgumentParser()
    wxp.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["patches", "apply", "doc-recipe-cu128"])
    with pytest.raises(NotBuiltError) as info:
        args.func(args)
    assert info.value.hint == "build it: nox -s env-doc-recipe-cu128"


def test_cli_check_stops_on_a_broken_matrix_instead_of_skipping_its_pins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --versions, check adds the releases the matrix pins: a broken matrix.toml is an error, not a skip."""
    (tmp_path / "matrix.toml").write_text("schema = [")
    monkeypatch.setenv("WXM_MATRIX", str(tmp_path / "matrix.toml"))
    monkeypatch.setattr(wxp.cli, "release_versions", lambda: [])  # the index is not asked
    parser = argparse.ArgumentParser()
    wxp.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["patches", "check", "--patches-dir", str(SERIES_DIR)])
    with pytest.raises(ConfigError, match="not valid TOML"):
        args.func(args)


def test_synthetic_site_all_or_nothing_offline(tmp_path: Path) -> None:
    """The second of two patches fails: the first, fine on its own, is not applied either."""
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    (site / "whisperx-3.7.6.dist-info").mkdir()
    (site / "whisperx-3.7.6.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: whisperx\nVersion: 3.7.6\n"
    )
    (site / "pkg" / "a.py").write_text("one\ntwo\nthree\n")
    (site / "pkg" / "b.py").write_text("alpha\nbeta\ngamma\n")
    good = "--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    bad = "--- a/pkg/b.py\n+++ b/pkg/b.py\n@@ -1,3 +1,3 @@\n alpha\n-BETA\n+beta2\n gamma\n"
    folder = write_series(
        tmp_path / "p", [entry("good", "good.patch"), entry("bad", "bad.patch")], {"good.patch": good, "bad.patch": bad}
    )
    before = snapshot(site)
    with pytest.raises(
        PatchError, match=r"patch bad does not apply: pkg/b\.py hunk #1 does not match .*expected: 'BETA'"
    ):
        wxp.apply_series(wxp.load_series(folder), site, "3.7.6")
    assert snapshot(site) == before
    # Alone, the good one applies and reverts.
    write_series(folder, [entry("good", "good.patch")], {})
    result = wxp.apply_series(wxp.load_series(folder), site, "3.7.6")
    assert result.applied == ("good",) and (site / "pkg" / "a.py").read_text() == "one\nTWO\nthree\n"
    wxp.revert_series(site)
    assert snapshot(site) == before


def test_a_failed_write_undoes_the_files_and_record_lines_already_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patch record is written last; when that write fails, the patched file and its RECORD line go back."""
    site = tmp_path / "site"
    (site / "pkg").mkdir(parents=True)
    info = site / "whisperx-3.7.6.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: whisperx\nVersion: 3.7.6\n")
    (site / "pkg" / "a.py").write_text("one\ntwo\nthree\n")
    (info / "RECORD").write_text("pkg/a.py,sha256=x,14\nwhisperx-3.7.6.dist-info/RECORD,,\n")
    good = "--- a/pkg/a.py\n+++ b/pkg/a.py\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    folder = write_series(tmp_path / "p", [entry("good", "good.patch")], {"good.patch": good})
    before = snapshot(site)
    real_write = wxp.record.atomic_write_bytes

    def failing(path: Path, data: bytes) -> None:
        if path.name == wxp.RECORD_FILE:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(wxp.record, "atomic_write_bytes", failing)
    with pytest.raises(OSError, match="No space left"):
        wxp.apply_series(wxp.load_series(folder), site, "3.7.6")
    assert snapshot(site) == before


# --- real wheels ---------------------------------------------------------------------------------------


@pytest.mark.network
def test_apply_reapply_revert_is_byte_identical(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.7.6")
    pycache = site / "whisperx" / "__pycache__"
    pycache.mkdir()
    (pycache / "asr.cpython-311.pyc").write_bytes(b"stale")
    (pycache / "audio.cpython-311.pyc").write_bytes(b"untouched module")
    before = snapshot(site)

    first = wxp.apply_series(series, site, "3.7.6")
    assert first.changed and first.applied == (P0001,) and first.skipped == (OUTSIDE_0002, (P0003, wxp.OPT_IN_OFF))
    assert f"applied {P0001}" in first.summary
    record_consistent(site)  # RECORD lines follow the patched files, so pip/uv see no corruption
    assert not (pycache / "asr.cpython-311.pyc").exists()
    assert (pycache / "audio.cpython-311.pyc").exists()
    rec = wxp.PatchRecord.read(site)
    assert rec is not None and [p.id for p in rec.patches] == [P0001]
    assert {c.path for c in rec.files} == {f.path for f in series.get(P0001).files}
    assert all(c.before == hashlib.sha256(before[c.path]).hexdigest() for c in rec.files)
    patched = snapshot(site)

    again = wxp.apply_series(series, site, "3.7.6")
    assert not again.changed and "already applied" in again.summary
    assert snapshot(site) == patched
    st = wxp.status(series, site)
    assert st.intact and {f.state for f in st.files} == {"patched"}

    reverted = wxp.revert_series(site)
    assert reverted.reverted == (P0001,)
    after = snapshot(site)
    assert after == {k: v for k, v in before.items() if k != "whisperx/__pycache__/asr.cpython-311.pyc"}
    assert not wxp.revert_series(site).changed


@pytest.mark.network
def test_fixed_upstream_on_3_8_6(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.8.6")
    before = snapshot(site)
    result = wxp.apply_series(series, site, "3.8.6")
    assert not result.changed and result.applied == ()
    assert result.skipped == (
        (P0001, "not needed: fixed upstream in whisperx 3.8.0"),
        (P0002, wxp.OPT_IN_OFF),
        (P0003, "not needed: fixed upstream in whisperx 3.8.0"),
    )
    assert "not needed: fixed upstream in whisperx 3.8.0" in result.summary
    assert snapshot(site) == before  # no record either
    # faster-whisper's own use_auth_token stays (it is right there).
    assert "use_auth_token=use_auth_token)" in (site / "whisperx" / "asr.py").read_text()


@pytest.mark.network
def test_an_opt_in_patch_applies_only_when_asked_for_and_reverts_byte_identical(
    site_factory: Callable[..., Path], series: wxp.Series
) -> None:
    site = site_factory("3.8.6")
    before = snapshot(site)
    assert series.get(P0002).opt_in and not wxp.apply_series(series, site, "3.8.6").changed
    result = wxp.apply_series(series, site, "3.8.6", opted=(P0002,))
    assert result.changed and result.applied == (P0002,)
    assert "np.maximum(" in (site / "whisperx" / "alignment.py").read_text()
    record_consistent(site)
    assert wxp.status(series, site, opted=(P0002,)).intact
    # status says what apply would do: with the cell's opt-in it is applied, without it it would be off
    assert (P0002, "already-applied") in [(o.id, o.action) for o in wxp.status(series, site, opted=(P0002,)).pending]
    assert (P0002, "skipped") in [(o.id, o.action) for o in wxp.status(series, site).pending]
    assert wxp.revert_series(site).reverted == (P0002,)
    assert snapshot(site) == before


def test_a_cell_may_opt_in_only_to_patches_marked_opt_in(series: wxp.Series) -> None:
    series.check_opted([P0002], "cell x: opt_in_patches")
    with pytest.raises(PatchError, match=f"cell x: opt_in_patches: '{P0001}' is not an opt-in patch"):
        series.check_opted([P0001], "cell x: opt_in_patches")
    with pytest.raises(PatchError, match="no patch 'nope'"):
        series.check_opted(["nope"], "cell x: opt_in_patches")
    # an opt-in that would do nothing for the cell's whisperx is an error, not a silent no-op
    series.check_opted([P0002], "cell x: opt_in_patches", whisperx_version="3.8.6")
    with pytest.raises(PatchError, match=f"cell x: opt_in_patches: {P0002} does not fit this cell .*3.7.6"):
        series.check_opted([P0002], "cell x: opt_in_patches", whisperx_version="3.7.6")


def test_opt_in_must_be_a_boolean(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "p", [entry("a", "a.patch", opt_in="yes")], {"a.patch": WRONG_LINE})
    with pytest.raises(PatchError, match=r"series.toml:\d+: patch 'a': opt_in must be true or false"):
        wxp.load_series(folder)


@pytest.mark.network
def test_not_applicable_with_pyannote_3(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.7.6", pyannote="3.4.0")
    before = snapshot(site)
    result = wxp.apply_series(series, site, "3.7.6")
    assert result.skipped == (
        (P0001, "not applicable: needs pyannote-audio>=4.0, the env has pyannote-audio 3.4.0"),
        OUTSIDE_0002,
        (P0003, "not applicable: needs pyannote-audio>=4.0, the env has pyannote-audio 3.4.0"),
    )
    assert snapshot(site) == before


@pytest.mark.network
def test_version_mismatch_with_installed_is_refused(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.7.6")
    with pytest.raises(PatchError, match="holds whisperx 3.7.6, not 3.7.5"):
        wxp.apply_series(series, site, "3.7.5")


@pytest.mark.network
def test_modified_file_is_refused_and_nothing_changes(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.7.6")
    pyannote_py = site / "whisperx" / "vads" / "pyannote.py"
    # A user's edit in the middle of the series: the third hunk's line no longer matches.
    pyannote_py.write_text(
        pyannote_py.read_text().replace("use_auth_token: Union[Text, None] = None,", "use_auth_token=None,")
    )
    before = snapshot(site)
    with pytest.raises(PatchError) as info:
        wxp.apply_series(series, site, "3.7.6")
    assert "whisperx/vads/pyannote.py hunk #3 does not match" in str(info.value)
    assert "nothing was changed" in str(info.value)
    assert snapshot(site) == before


@pytest.mark.network
def test_hand_applied_rename_is_named(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    """The document's global rename done by hand: every hunk is 'already there'; refused, nothing changes."""
    site = site_factory("3.7.6")
    for rel in ("asr.py", "diarize.py", "transcribe.py", "vads/pyannote.py"):
        path = site / "whisperx" / rel
        path.write_text(path.read_text().replace("use_auth_token", "token"))
    before = snapshot(site)
    with pytest.raises(PatchError, match=r"whisperx/asr\.py already contains this change") as info:
        wxp.apply_series(series, site, "3.7.6")
    assert info.value.hint and "edited by hand" in info.value.hint
    assert snapshot(site) == before


@pytest.mark.network
def test_second_patch_failing_leaves_everything_untouched(tmp_path: Path, site_factory: Callable[..., Path]) -> None:
    folder = tmp_path / "series"
    shutil.copytree(SERIES_DIR, folder)
    manifest = folder / "series.toml"
    manifest.write_text(
        manifest.read_text()
        + '\n[[patch]]\nid = "0002-wrong-line"\nfile = "0002.patch"\napplies_to = ">=3.7.0,<3.8.0"\nfixes = "test"\n'
    )
    # Written against 0001's result (token=None), but one context line is not in 3.7.6: it cannot apply.
    second = (
        WRONG_LINE.replace("use_auth_token=True", "token=None")
        .replace("token=True", "token=False")
        .replace("device_vad = device\n", "device_vad = 'cpu'\n")
    )
    assert second != WRONG_LINE and "device_vad = 'cpu'" in second
    (folder / "0002.patch").write_text(second)
    site = site_factory("3.7.6")
    before = snapshot(site)
    with pytest.raises(PatchError, match=r"patch 0002-wrong-line does not apply: whisperx/asr\.py hunk #1"):
        wxp.apply_series(wxp.load_series(folder), site, "3.7.6")
    assert snapshot(site) == before
    assert not (site / wxp.RECORD_FILE).exists()


@pytest.mark.network
def test_a_patch_for_the_wrong_line_fails_its_check(tmp_path: Path, wheels: dict[str, Path]) -> None:
    folder = write_series(tmp_path / "p", [entry("wrong", "wrong.patch")], {"wrong.patch": WRONG_LINE})
    wrong = wxp.load_series(folder)
    (row,) = wxp.check_series(wrong, ["3.7.6"])
    assert row.failed and "whisperx/asr.py hunk #1 does not match" in row.cells[0]
    assert "use_auth_token=True" in row.cells[0]  # says what it expected to find


@pytest.mark.network
def test_revert_refuses_a_file_edited_after_patching(site_factory: Callable[..., Path], series: wxp.Series) -> None:
    site = site_factory("3.7.6")
    wxp.apply_series(series, site, "3.7.6")
    diarize = site / "whisperx" / "diarize.py"
    diarize.write_text(diarize.read_text() + "# local edit\n")
    st = wxp.status(series, site)
    assert not st.intact and wxp.FileState("whisperx/diarize.py", "modified") in st.files
    before = snapshot(site)
    with pytest.raises(PatchError, match=r"cannot revert: whisperx/diarize\.py \(modified\) changed since"):
        wxp.revert_series(site)
    with pytest.raises(PatchError, match=r"cannot apply: whisperx/diarize\.py \(modified\)"):
        wxp.apply_series(series, site, "3.7.6")
    assert snapshot(site) == before


# --- the invariant: what patches/ holds fits its range and does what upstream did ----------------------


def _token_lines(text: str) -> set[str]:
    return {ln.strip() for ln in text.splitlines() if re.search(r"\btoken\b", ln)}


@pytest.mark.network
@pytest.mark.parametrize("version", TESTED_37)
def test_series_applies_in_range_and_matches_upstream(
    version: str, site_factory: Callable[..., Path], series: wxp.Series
) -> None:
    site = site_factory(version)
    original = {
        p: (site / "whisperx" / p).read_text() for p in ("asr.py", "diarize.py", "transcribe.py", "vads/pyannote.py")
    }
    result = wxp.apply_series(series, site, version)
    assert result.applied == tuple(p.id for p in series.patches if p.applies_to.contains(version) and not p.opt_in)
    record_consistent(site)
    read = lambda rel: (site / "whisperx" / rel).read_text()  # noqa: E731

    assert "use_auth_token" not in read("vads/pyannote.py")
    assert "use_auth_token" not in read("diarize.py")
    assert "use_auth_token" not in read("transcribe.py")
    asr = read("asr.py")
    assert "vad_model = Pyannote(torch.device(device_vad), token=None, **default_vad_options)" in asr
    # Only the VAD line changed in asr.py: the faster-whisper WhisperModel(...) call is as it was (3.7.x
    # passes no auth argument to faster-whisper; 3.8.x added one, which the patch never sees).
    changed = [
        ln
        for ln in difflib.unified_diff(original["asr.py"].splitlines(), asr.splitlines(), n=0)
        if ln[:1] in "+-" and ln[:3] not in ("+++", "---")
    ]
    assert changed == [
        "-            vad_model = Pyannote(torch.device(device_vad), use_auth_token=None, **default_vad_options)",
        "+            vad_model = Pyannote(torch.device(device_vad), token=None, **default_vad_options)",
    ]
    assert "DiarizationPipeline(model_name=diarize_model_name, token=hf_token, device=device)" in read("transcribe.py")

    # Upstream's fix (3.8.0): every line mentioning `token` that 3.8.0 has in these files, the patched 3.7
    # files have too, for the lines the patch touches.
    upstream = make_site(site.parent / "upstream", "3.8.0")
    for rel in ("vads/pyannote.py", "diarize.py", "transcribe.py"):
        ours = _token_lines(read(rel)) - _token_lines(original[rel])
        theirs = _token_lines((upstream / "whisperx" / rel).read_text())
        assert ours and ours <= theirs, rel


@pytest.mark.network
def test_cli_check_prints_the_table(
    wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WXM_MATRIX", str(PROJECT / "matrix.toml"))
    parser = argparse.ArgumentParser()
    wxp.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["patches", "check", "--versions", "3.8.6", "3.7.6", "3.4.2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    # the opt-in patches are checked like any other: they are in the series, only off by default
    assert re.search(r"^3\.8\.6 +not needed \(fixed in 3\.8\.0\) +applies +not needed \(fixed in 3\.8\.0\)$", out, re.M)
    assert re.search(r"^3\.7\.6 +applies +n/a +applies$", out, re.M)
    assert re.search(r"^3\.4\.2 +n/a +n/a +n/a$", out, re.M)
    assert f"{P0001}: applies to 1 release(s)" in out
    assert f"{P0003}: applies to 1 release(s)" in out


# --- instead_of: the guide's own two-file edit (0003), in place of 0001, where a cell opts in to it ---------


def _hunks_by_file(text: str) -> dict[str, str]:
    """A diff's text per file, from its '--- a/' header to the next one (the description dropped)."""
    parts = re.split(r"(?m)^(?=--- a/)", text)[1:]
    return {part.splitlines()[0].removeprefix("--- a/"): part.rstrip("\n") for part in parts}


def test_0003_is_exactly_the_guides_two_files_of_0001(series: wxp.Series) -> None:
    """The guide: "replace use_auth_token with token in vads/pyannote.py and asr.py line 412": 0001's hunks for
    those two files, byte for byte, and nothing else; it is opt-in and replaces 0001."""
    guide, ours = series.get(P0003), series.get(P0001)
    assert [f.path for f in guide.files] == ["whisperx/asr.py", "whisperx/vads/pyannote.py"]
    theirs = _hunks_by_file(guide.text)
    assert theirs == {k: v for k, v in _hunks_by_file(ours.text).items() if k in theirs}
    assert guide.files[0].hunks[0].old_start + 3 == 412  # the line the guide names: asr.py's Pyannote(...) call
    assert guide.opt_in and guide.instead_of == P0001 and ours.instead_of is None
    assert (guide.applies_to, guide.when_installed) == (ours.applies_to, ours.when_installed)
    assert "not a fix we recommend" in guide.text.split("\n--- ", 1)[0]
    series.check_opted([P0003], "cell x: opt_in_patches", whisperx_version="3.7.6")


def _instead_of_series(folder: Path, target: str, *, opt_in: bool = True) -> Path:
    write_series(folder, [entry("a", "a.patch"), entry("b", "b.patch")], {"a.patch": WRONG_LINE, "b.patch": WRONG_LINE})
    manifest = folder / "series.toml"
    manifest.write_text(manifest.read_text() + ("opt_in = true\n" if opt_in else "") + f'instead_of = "{target}"\n')
    return folder


def test_plan_skips_the_patch_an_opted_in_patch_replaces(tmp_path: Path) -> None:
    series = wxp.load_series(_instead_of_series(tmp_path / "p", "a"))
    installed = {"pyannote-audio": "4.0.7"}
    todo, skipped = wxp.plan(series, "3.7.6", installed)
    assert [p.id for p in todo] == ["a"] and skipped == [wxp.Outcome("b", "skipped", wxp.OPT_IN_OFF)]
    todo, skipped = wxp.plan(series, "3.7.6", installed, opted=("b",))
    assert [p.id for p in todo] == ["b"]
    assert skipped == [wxp.Outcome("a", "skipped", "replaced by b, which this cell opts in to")]
    # where the replacement does not fit, nothing replaces the other patch: it is decided on its own
    todo, skipped = wxp.plan(series, "3.8.6", installed, opted=("b",))
    assert todo == [] and {o.reason for o in skipped} == {"not needed: fixed upstream in whisperx 3.8.0"}


def test_instead_of_naming_an_unknown_patch_is_a_one_line_error(tmp_path: Path) -> None:
    folder = _instead_of_series(tmp_path / "p", "0001-nope")
    with pytest.raises(PatchError) as info:
        wxp.load_series(folder)
    line = next(i for i, ln in enumerate((folder / "series.toml").read_text().splitlines(), 1) if "instead_of" in ln)
    assert str(info.value) == (
        f"{folder / 'series.toml'}:{line}: patch 'b': instead_of '0001-nope' is not a patch of this series"
    )
    folder = _instead_of_series(tmp_path / "q", "aa")
    with pytest.raises(
        PatchError,
        match=r"series\.toml:\d+: patch 'b': instead_of 'aa' is not a patch of this series \(did you mean a\?\)",
    ):
        wxp.load_series(folder)
    with pytest.raises(PatchError, match=r"series\.toml:\d+: patch 'b': instead_of names the patch itself"):
        wxp.load_series(_instead_of_series(tmp_path / "r", "b"))
    with pytest.raises(PatchError, match=r"series\.toml:\d+: patch 'b': instead_of needs opt_in = true"):
        wxp.load_series(_instead_of_series(tmp_path / "s", "a", opt_in=False))


@pytest.mark.network
def test_a_cell_opting_in_to_the_guides_edit_gets_it_instead_of_0001(
    site_factory: Callable[..., Path], series: wxp.Series
) -> None:
    """On the real whisperx 3.7.6 files: 0003 applied, 0001 skipped with the reason; diarize.py and transcribe.py
    keep use_auth_token, as the guide leaves them; status agrees; revert is byte for byte."""
    site = site_factory("3.7.6")
    before = snapshot(site)
    result = wxp.apply_series(series, site, "3.7.6", opted=(P0003,))
    assert result.changed and result.applied == (P0003,)
    assert result.skipped == (REPLACED_0001, OUTSIDE_0002)
    assert f"{P0001}: replaced by {P0003}, which this cell opts in to" in result.summary
    record_consistent(site)
    read = lambda rel: (site / "whisperx" / rel).read_text()  # noqa: E731
    assert "vad_model = Pyannote(torch.device(device_vad), token=None, **default_vad_options)" in read("asr.py")
    assert "use_auth_token" not in read("vads/pyannote.py")
    assert "Pipeline.from_pretrained(model_config, use_auth_token=use_auth_token)" in read("diarize.py")
    assert "use_auth_token=hf_token" in read("transcribe.py")
    changed = {k for k, v in snapshot(site).items() if before.get(k) != v}
    assert changed == {
        "whisperx/asr.py",
        "whisperx/vads/pyannote.py",
        wxp.RECORD_FILE,
        "whisperx-3.7.6.dist-info/RECORD",
    }
    rec = wxp.PatchRecord.read(site)
    assert rec is not None and [p.id for p in rec.patches] == [P0003]
    st = wxp.status(series, site, opted=(P0003,))
    assert st.intact and [(o.id, o.action, o.reason) for o in st.pending] == [
        (P0001, "skipped", REPLACED_0001[1]),
        (P0002, "skipped", OUTSIDE_0002[1]),
        (P0003, "already-applied", ""),
    ]
    assert not wxp.apply_series(series, site, "3.7.6", opted=(P0003,)).changed  # again: a no-op
    # without the opt-in the series wants 0001: the env holds another patch set, refused untouched
    with pytest.raises(PatchError, match=f"already holds another patch set \\({P0003}\\)"):
        wxp.apply_series(series, site, "3.7.6")
    assert wxp.revert_series(site).reverted == (P0003,)
    assert snapshot(site) == before
