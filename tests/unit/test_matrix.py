"""matrix.toml: parsing, validation with file:line:field errors, selection truth tables, invariants."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisperx_matrix import matrix as m
from whisperx_matrix.errors import ConfigError, UnknownCellError

ROOT = Path(__file__).resolve().parents[2]
MATRIX = m.load(ROOT / "matrix.toml")

MINIMAL = """\
schema = 1
[defaults]
python = "3.11"
requirements = ["req.txt"]

[indexes.nightly]
url = "https://example.invalid/nightly"
env = "WXM_TEST_NIGHTLY"

[[cells]]
id = "stable-cu128"
channel = "stable"
cuda = "cu128"
aliases = ["cu128"]
pins = { whisperx = "3.8.6", torch = "2.8.0" }

[[cells]]
id = "stable-cu128-unpatched"
extends = "stable-cu128"
aliases = []
patches = false
expect = { status = "fail", reason = "TypeError:use_auth_token" }

[[cells]]
id = "stable-cu130"
channel = "stable"
cuda = "cu130"
pins = { whisperx = "3.8.6" }
overrides = ["torch==2.11.0"]
expect = { status = "fail", reason = "missing-soname:libcublas.so.12" }
expect_sm = { 90 = { status = "pass" } }

[[cells]]
id = "nightly-cu130"
channel = "nightly"
cuda = "cu130"
index = "nightly"
pins = { whisperx = "3.8.6" }
"""


def load_text(tmp_path: Path, text: str) -> m.Matrix:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return m.load(path)


@pytest.fixture
def small(tmp_path: Path) -> m.Matrix:
    return load_text(tmp_path, MINIMAL)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("stable-*", ["stable-cu128", "stable-cu128-unpatched", "stable-cu130"]),
        ("*-cu130", ["stable-cu130", "nightly-cu130"]),
        ("stable-cu{128,130}", ["stable-cu128", "stable-cu130"]),
        ("cu128", ["stable-cu128"]),  # aliases select their cell
        ("nightly-* stable-cu130", ["stable-cu130", "nightly-cu130"]),  # matrix order, not argument order
        ("*", ["stable-cu128", "stable-cu128-unpatched", "stable-cu130", "nightly-cu130"]),
    ],
)
def test_selection_truth_table(small: m.Matrix, selector: str, expected: list[str]) -> None:
    assert [c.id for c in small.select(selector)] == expected


def test_empty_selection_means_every_cell(small: m.Matrix) -> None:
    assert [c.id for c in small.select([])] == small.ids()


def test_brace_expansion_nests() -> None:
    assert m.expand_braces("a{1,2{x,y}}") == ["a1", "a2x", "a2y"]
    assert m.expand_braces("plain") == ["plain"]


def test_unknown_cell_lists_known_ones_and_suggests(small: m.Matrix) -> None:
    with pytest.raises(UnknownCellError) as err:
        small.get("stable-cu129")
    assert "did you mean stable-cu128" in str(err.value)
    assert "stable-cu130" in (err.value.hint or "")


def test_selector_matching_nothing_is_an_error(small: m.Matrix) -> None:
    with pytest.raises(UnknownCellError, match="'rocm-\\*' matches no cell"):
        small.select("stable-* rocm-*")


def test_extends_inherits_and_shares_the_lock(small: m.Matrix) -> None:
    child = small.get("stable-cu128-unpatched")
    assert child.pins == small.get("stable-cu128").pins
    assert child.patches is False and child.lock_id == "stable-cu128"
    assert child.expected(None).reason == "TypeError:use_auth_token"


def test_extends_with_different_lock_inputs_gets_its_own_lock(tmp_path: Path) -> None:
    text = MINIMAL.replace("patches = false", 'patches = false\naddons = ["nvidia-cublas-cu12==12.8.4.1"]')
    assert load_text(tmp_path, text).get("stable-cu128-unpatched").lock_id == "stable-cu128-unpatched"


def test_expectation_per_target_sm(small: m.Matrix) -> None:
    cell = small.get("stable-cu130")
    assert cell.expected(120).status == "fail"
    assert cell.expected(90).status == "pass"


def test_index_url_can_be_overridden_by_environment(small: m.Matrix, monkeypatch: pytest.MonkeyPatch) -> None:
    cell = small.get("nightly-cu130")
    assert cell.index is not None and cell.index.url == "https://example.invalid/nightly"
    monkeypatch.setenv("WXM_TEST_NIGHTLY", "http://127.0.0.1:9/mirror")
    assert cell.index.url == "http://127.0.0.1:9/mirror"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('cuda = "cu130"', 'cuda = "cuda13"', "cuda must look like 'cu128'"),
        ('channel = "nightly"', 'channel = "beta"', "channel must be one of stable, nightly"),
        ('overrides = ["torch==2.11.0"]', 'overrides = ["torch=>2.11"]', "not a valid requirement"),
        (
            'expect = { status = "fail", reason = "missing-soname:libcublas.so.12" }',
            'expect = { status = "fail" }',
            "an expected failure needs a reason",
        ),
        ('extends = "stable-cu128"', 'extends = "stable-cu127"', "extends unknown cell 'stable-cu127'"),
        ('index = "nightly"', 'index = "nighty"', "did you mean nightly"),
        ('pins = { whisperx = "3.8.6", torch = "2.8.0" }', 'pins = { torch = "2.8.0" }', "pins at least whisperx"),
        ('aliases = ["cu128"]', 'aliases = ["cu128"]\nflavour = "x"', "unknown field 'flavour'"),
    ],
)
def test_malformed_matrix_names_file_line_and_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    text = MINIMAL.replace(old, new, 1)
    field = new.splitlines()[-1]
    line = text.splitlines().index(field) + 1 if "unknown cell" not in message else text.splitlines().index(new) + 1
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert message in str(err.value)
    assert str(err.value).startswith(f"matrix.toml:{line}:"), str(err.value)
    assert err.value.hint


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 3"):
        load_text(tmp_path, "schema = 1\n[defaults]\npython = \n")


def test_duplicate_ids_rejected(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '\n[[cells]]\nid = "stable-cu130"\nchannel = "stable"\ncuda = "cu130"\npins = { whisperx = "3.8.6" }\n'
    )
    with pytest.raises(ConfigError, match="duplicate cell id 'stable-cu130'"):
        load_text(tmp_path, text)


def test_extends_loop_rejected(tmp_path: Path) -> None:
    text = MINIMAL.replace('id = "stable-cu128"\n', 'id = "stable-cu128"\nextends = "stable-cu128-unpatched"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_text(tmp_path, text)


# --- invariants over the real catalogue -----------------------------------------------------------------


def test_real_matrix_has_the_cells_the_design_requires() -> None:
    required = {
        "option1-stable-cu124",
        "stable-cu126",
        "stable-cu128",
        "doc-recipe-cu128",
        "stable-cu130",
        "stable-cu130-cublas12",
        "nightly-cu128",
        "nightly-cu130",
    }
    assert required <= set(MATRIX.ids())
    assert MATRIX.get("cu128").id == "stable-cu128" and MATRIX.get("cu130").id == "stable-cu130"


def test_real_matrix_expectations_match_the_document() -> None:
    assert MATRIX.get("option1-stable-cu124").expected(120).reason == "arch-unsupported:sm_120"
    assert MATRIX.get("stable-cu130").expected(120).reason == "missing-soname:libcublas.so.12"
    assert MATRIX.get("doc-recipe-cu128-unpatched").expected(120).reason == "TypeError:use_auth_token"
    assert MATRIX.get("stable-cu128").expected(120).status == "pass"
    assert MATRIX.get("stable-cu130-cublas12").expected(120).status == "pass"


def test_real_matrix_pins_the_whole_torch_family_per_cell() -> None:
    """A partial pin lets torchcodec/pyannote drift to a release built for another torch line (FACTS.md)."""
    for cell in MATRIX.cells:
        named = set(cell.pins) | {r.split("=")[0].split(">")[0].split("<")[0] for r in cell.overrides}
        if cell.channel == "stable":
            assert {"torch", "torchaudio"} <= named, cell.id
            assert cell.whisperx_version is not None, cell.id
            if cell.whisperx_version.release >= (3, 7, 4):
                assert "torchcodec" in named and ("pyannote-audio" in named), cell.id


def test_every_stable_lock_exists() -> None:
    for cell in MATRIX.cells:
        if cell.channel == "stable":
            assert (ROOT / "constraints" / f"{cell.lock_id}.txt").is_file(), cell.id


def test_nightly_cells_carry_no_registry_host_in_code() -> None:
    """Nightly URLs live in matrix.toml only, each overridable by its env variable."""
    for cell in MATRIX.select("nightly-*"):
        assert cell.index is not None and cell.index.env.startswith("WXM_INDEX_")


PYTHON_AXIS = """\
schema = 1
[defaults]
python = "3.11"
requirements = ["req.txt"]

[[amend]]
select = "*-py312"
requires = ["av<19"]
reason = "faster-whisper's decode_audio breaks with av 19"

[[cells]]
id = "base"
channel = "stable"
cuda = "cu128"
python = ["3.11", "3.12"]
aliases = ["cu128"]
pins = { whisperx = "3.8.6" }

[[cells]]
id = "base-unpatched"
extends = "base"
aliases = []
patches = false

[[cells]]
id = "only-311"
extends = "base"
aliases = []
python = "3.11"
requires = ["six"]
"""


def test_python_list_is_an_axis_with_its_own_ids_locks_and_selectors(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(PYTHON_AXIS)
    mx = m.load(path)
    assert mx.ids() == ["base", "base-py312", "base-unpatched", "base-unpatched-py312", "only-311"]
    by = {c.id: c for c in mx.cells}
    assert by["base"].python == "3.11" and by["base-py312"].python == "3.12"
    assert by["base-py312"].lock_id == "base-py312" and by["base-unpatched-py312"].lock_id == "base-py312"
    assert by["base-py312"].aliases == ("cu128-py312",)
    assert [c.id for c in mx.select("*-py312")] == ["base-py312", "base-unpatched-py312"]
    # [[amend]] adds its lines to the cells its selector matches, and only to those
    assert "av<19" in by["base-py312"].requires and "av<19" not in by["base"].requires
    assert by["base"].lock_inputs()["python"] == "3.11" and by["base-py312"].lock_inputs()["python"] == "3.12"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('python = ["3.11", "3.12"]', 'python = ["3.11", "3.11"]', "python lists a version twice"),
        ('python = ["3.11", "3.12"]', 'python = ["three"]', "python must be a version like"),
        ('reason = "faster-whisper', 'why = "faster-whisper', "needs a `select` pattern and the `reason`"),
    ],
)
def test_python_axis_and_amend_errors_name_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(PYTHON_AXIS.replace(old, new))
    with pytest.raises(ConfigError, match=message):
        m.load(path)


def test_real_matrix_runs_the_working_cells_on_python_312_with_the_av_pin() -> None:
    py312 = {c.id: c for c in MATRIX.select("*-py312")}
    assert {"stable-cu128-py312", "doc-recipe-cu128-py312", "stable-cu130-py312", "stable-cu130-cublas12-py312"} <= set(
        py312
    )
    assert all("av<19" in c.requires and c.python == "3.12" for c in py312.values())


PLATFORM_AXIS = PYTHON_AXIS.replace(
    'python = ["3.11", "3.12"]\naliases = ["cu128"]',
    'python = ["3.11", "3.12"]\nplatform = ["x86_64-manylinux_2_28", "aarch64-manylinux_2_28"]\naliases = ["cu128"]\n'
    'expect_platform = { aarch64 = { status = "fail", reason = "no-cuda-build:ctranslate2" } }',
)


def test_platform_list_is_an_axis_crossed_with_python_with_its_own_ids_locks_and_expectations(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(PLATFORM_AXIS)
    mx = m.load(path)
    by = {c.id: c for c in mx.cells}
    assert [c.id for c in mx.select("*-aarch64")] == [
        "base-aarch64",
        "base-py312-aarch64",
        "base-unpatched-aarch64",
        "base-unpatched-py312-aarch64",
        "only-311-aarch64",
    ]
    arm = by["base-py312-aarch64"]
    assert (arm.python, arm.platform, arm.arch) == ("3.12", "aarch64-manylinux_2_28", "aarch64")
    assert arm.lock_id == "base-py312-aarch64" and by["base-unpatched-py312-aarch64"].lock_id == "base-py312-aarch64"
    assert arm.aliases == ("cu128-py312-aarch64",) and arm.lock_inputs()["platform"] == "aarch64-manylinux_2_28"
    # the platform's own expectation, inherited through extends; the first platform keeps the cell's
    assert arm.expect == m.Expectation("fail", "no-cuda-build:ctranslate2") and by["base"].expect.status == "pass"
    assert by["base"].arch == "x86_64" and by["base"].id == "base"
    # the '*-py312' amend does not reach '*-py312-aarch64' (the platform suffix comes last)
    assert "av<19" in by["base-py312"].requires and "av<19" not in arm.requires


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ('platform = ["x86_64-manylinux_2_28", "x86_64-manylinux_2_34"]', "platform lists a machine twice"),
        ('platform = ["linux-arm"]', "platform must be a uv platform like"),
    ],
)
def test_platform_axis_errors_name_the_field(tmp_path: Path, new: str, message: str) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text(PLATFORM_AXIS.replace('platform = ["x86_64-manylinux_2_28", "aarch64-manylinux_2_28"]', new))
    with pytest.raises(ConfigError, match=message):
        m.load(path)


def test_real_matrix_has_aarch64_cells_for_the_working_cell_and_todays_newest_stable() -> None:
    arm = {c.id: c for c in MATRIX.select("*-aarch64")}
    assert {"stable-cu128-aarch64", "stable-cu132-aarch64", "stable-cu132-py312-aarch64"} <= set(arm)
    assert all(c.platform == "aarch64-manylinux_2_28" and c.expect.reason for c in arm.values())  # measured


def test_cells_listing_shows_every_target_not_only_sm_120() -> None:
    """`nox -s cells` on a CPU or sm_90 machine must not show only the sm_120 expectation as if it were the rule."""
    from whisperx_matrix.cells_cli import expectations

    cell = MATRIX.get("stable-cu126")
    assert expectations(cell, None) == "fail (UnpicklingError:weights_only); on sm_120: fail (arch-unsupported:sm_120)"
    assert expectations(cell, 90) == "on sm_90: fail (UnpicklingError:weights_only)"
    assert expectations(MATRIX.get("option1-stable-cu124"), None) == "pass; on sm_120: fail (arch-unsupported:sm_120)"


def test_a_cell_turns_on_opt_in_patches_by_id_and_shares_its_parents_lock(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'aliases = []\npatches = false\nexpect = { status = "fail", reason = "TypeError:use_auth_token" }',
        'aliases = []\nopt_in_patches = ["0002-alignment-numpy-trellis"]',
    )
    cell = load_text(tmp_path, text).get("stable-cu128-unpatched")
    assert cell.opt_in_patches == ("0002-alignment-numpy-trellis",) and cell.lock_id == "stable-cu128"


def test_opt_in_patches_on_a_cell_without_patches_is_one_clear_error(tmp_path: Path) -> None:
    text = MINIMAL.replace("patches = false", 'patches = false\nopt_in_patches = ["0002-alignment-numpy-trellis"]')
    with pytest.raises(ConfigError, match=r"matrix.toml:\d+: .*opt_in_patches needs patches = true"):
        load_text(tmp_path, text)


# --- channels: stable (locked), nightly (its index), latest (the default index) --------------------------

CHANNEL_CELL = """
[[cells]]
id = "probe"
channel = "{channel}"
cuda = "cu128"
{index}{pins}{patches}"""


@pytest.mark.parametrize(
    ("channel", "index", "whisperx", "patches", "outcome"),
    [
        # channel, names an index, pins whisperx, patches = false -> floating, or the error's words
        ("stable", False, True, False, False),
        ("stable", True, True, False, False),  # a stable cell on another index is still locked and committed
        ("stable", False, False, True, "pins at least whisperx"),
        ("nightly", True, True, False, True),
        ("nightly", False, True, False, "a nightly cell needs an index"),
        ("nightly", True, False, True, "pins at least whisperx"),
        ("latest", False, True, False, True),
        ("latest", False, False, True, True),  # what a user installs: whisperx floats too
        ("latest", False, True, True, True),
        ("latest", True, True, False, "a latest cell floats on the default index and takes no index"),
        ("latest", False, False, False, "a cell that lets whisperx float takes no patches"),
        ("beta", False, True, False, "channel must be one of stable, nightly, latest"),
    ],
)
def test_channel_truth_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    channel: str,
    index: bool,
    whisperx: bool,
    patches: bool,
    outcome: bool | str,
) -> None:
    for var in ("WXM_TEST_NIGHTLY", *m.DEFAULT_INDEX_ENVS):
        monkeypatch.delenv(var, raising=False)
    text = MINIMAL + CHANNEL_CELL.format(
        channel=channel,
        index='index = "nightly"\n' if index else "",
        pins='pins = { whisperx = "3.8.6" }\n' if whisperx else "",
        patches="patches = false\n" if patches else "",
    )
    if isinstance(outcome, str):
        with pytest.raises(ConfigError) as err:
            load_text(tmp_path, text)
        assert outcome in str(err.value) and "\n" not in str(err.value)
        assert str(err.value).startswith("matrix.toml:") and err.value.hint
        return
    cell = load_text(tmp_path, text).get("probe")
    assert cell.floating is outcome and cell.channel == channel
    assert (cell.index is not None) is index
    expected = (
        "PyTorch index 'nightly' (set WXM_TEST_NIGHTLY to use a mirror)" if index else "the default package index"
    )
    assert cell.describe_index() == expected


def test_a_latest_cell_with_an_index_names_its_line(tmp_path: Path) -> None:
    text = MINIMAL + CHANNEL_CELL.format(channel="latest", index='index = "nightly"\n', pins="", patches="")
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    line = text.splitlines().index('index = "nightly"', text.splitlines().index('id = "probe"')) + 1
    assert str(err.value).startswith(f"matrix.toml:{line}: a latest cell floats on the default index"), str(err.value)


def test_a_cuda_without_a_cited_driver_floor_is_one_clear_error(tmp_path: Path) -> None:
    """The doctor and the verdicts judge a driver by cudafacts.CUDA_DRIVERS: a cell's cuda must have its floor."""
    from whisperx_matrix.cudafacts import CUDA_DRIVERS

    assert "cu127" not in CUDA_DRIVERS
    text = MINIMAL.replace('cuda = "cu130"', 'cuda = "cu127"', 1)
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    line = text.splitlines().index('cuda = "cu127"') + 1
    msg = str(err.value)
    assert msg.startswith(f"matrix.toml:{line}: cell 'stable-cu130': cuda 'cu127' has no cited driver floor"), msg
    assert "\n" not in msg
    assert err.value.hint is not None and "CUDA 12.7" in err.value.hint and "cudafacts.CUDA_DRIVERS" in err.value.hint


def test_every_real_cell_has_a_cited_driver_floor() -> None:
    from whisperx_matrix.cudafacts import CUDA_DRIVERS

    assert {c.cuda for c in MATRIX.cells} <= set(CUDA_DRIVERS)


def test_real_matrix_has_what_users_install_today() -> None:
    """#23: the cells for what `pip install whisperx` gives today float on the default index, unpinned and
    unpatched; the cu132 cells pin the torch 2.15 family; one 3.12 cell goes without the av<19 amend."""
    fresh = MATRIX.get("fresh-install")
    assert fresh.channel == "latest" and fresh.floating and fresh.index is None
    assert dict(fresh.pins) == {} and fresh.requires == () and fresh.overrides == () and not fresh.patches
    assert fresh.requirements == ("requirements-base.txt",)
    newest = MATRIX.get("pins-newest-torch")
    assert newest.channel == "latest" and newest.index is None and not newest.patches
    assert newest.requirement_lines() == ["torch==2.15.0"] and newest.overrides == ()
    for cid in ("stable-cu132", "stable-cu132-py312", "stable-cu132-cublas12", "stable-cu132-cublas12-py312"):
        cell = MATRIX.get(cid)
        assert cell.channel == "stable" and cell.cuda == "cu132" and cell.lock_id == cid
        assert "torch==2.15.0" in cell.overrides and "torchcodec==0.17.0" in cell.overrides
    assert MATRIX.get("stable-cu132-cublas12").addons == MATRIX.get("stable-cu130-cublas12").addons
    assert MATRIX.get("stable-cu132-cublas12").preload == MATRIX.get("stable-cu130-cublas12").preload
    av19 = MATRIX.get("stable-cu128-py312-av19")
    assert av19.python == "3.12" and not any(r.startswith("av") for r in av19.requires)
    assert av19.pins == MATRIX.get("stable-cu128-py312").pins


def test_floating_cells_commit_no_lock() -> None:
    for cell in MATRIX.cells:
        if cell.floating:
            assert not (ROOT / "constraints" / f"{cell.lock_id}.txt").exists(), cell.id


def test_an_expectation_may_list_further_known_failures_that_do_not_decide() -> None:
    cell = MATRIX.get("pins-newest-torch")
    assert cell.expect.reason == "AttributeError:torchaudio.AudioMetaData"
    assert cell.expect.also == ("missing-soname:libcublas.so.12",)
    from whisperx_matrix.matrix import _expectation

    def fail(msg: str, *_: object) -> ValueError:
        return ValueError(msg)

    with pytest.raises(ValueError, match="only with status fail"):
        _expectation({"status": "pass", "also": ["missing-soname:x.so"]}, fail, "c", "expect")
    with pytest.raises(ValueError, match="a list of further expected failure reasons"):
        _expectation({"status": "fail", "reason": "a:b", "also": "missing-soname:x.so"}, fail, "c", "expect")
