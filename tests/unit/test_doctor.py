"""doctor: probes, the driver and kernel rules, and the recommendation, on recorded GPU outputs.

Only NVML (a fake pynvml module built from ``*-nvml.json``) and nvidia-smi (a runner replaying
``*-smi-query.txt`` / ``*-smi.txt``) are mocked; the matrix, its locks and the judgement are the real ones.
The cases are in tests/data/doctor/README.md. Cell venvs are hidden (WXM_ENVS points at an empty folder),
so kernels come from the doctor's table and the results do not depend on what is built on this machine.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import pytest

from whisperx_matrix import cli, cudafacts, doctor, matrix, tools
from whisperx_matrix.errors import ConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "doctor"
ROOT = Path(__file__).resolve().parents[2]


class FakeNVMLError(Exception):
    pass


def fake_pynvml(path: Path) -> types.ModuleType:
    """A pynvml stand-in replaying a recorded ``*-nvml.json`` (mock of NVML only)."""
    data = json.loads(path.read_text())
    mod = types.ModuleType("pynvml")
    mod.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    if "error" in data:
        err = data["error"]
        if err["type"] in ("ModuleNotFoundError", "ImportError"):
            raise ImportError(err["message"])
        cls = type(err["type"], (FakeNVMLError,), {})

        def init() -> None:
            raise cls(err["message"])

        mod.nvmlInit = init  # type: ignore[attr-defined]
        mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
        return mod
    devices = data["devices"]
    mod.nvmlInit = lambda: None  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: data["driver_version"]  # type: ignore[attr-defined]
    mod.nvmlSystemGetCudaDriverVersion = lambda: data["cuda_driver_version"]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: devices[h]["name"].encode()  # older pynvml returns bytes  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCudaComputeCapability = lambda h: tuple(devices[h]["compute_capability"])  # type: ignore[attr-defined]
    return mod


def loader_for(case: str):  # type: ignore[no-untyped-def]
    def load() -> types.ModuleType:
        return fake_pynvml(DATA / f"{case}-nvml.json")

    return load


def runner_for(case: str):  # type: ignore[no-untyped-def]
    """Replays nvidia-smi (mock of nvidia-smi only): the query and the plain header."""

    def run(args: Sequence[str]) -> tools.Completed | None:
        path = DATA / (f"{case}-smi-query.txt" if len(args) > 1 else f"{case}-smi.txt")
        if not path.exists():
            return None
        text = path.read_text()
        first, _, rest = text.partition("\n")
        if first.startswith("# nvidia-smi not found"):
            return None
        if first.startswith("# nvidia-smi exit "):
            return tools.Completed(tuple(args), int(first.split()[-1]), rest, "")
        return tools.Completed(tuple(args), 0, text, "")

    return run


@pytest.fixture
def real_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> matrix.Matrix:
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "no-envs"))
    return matrix.load(ROOT / "matrix.toml")


# Stand-ins for the CUDA 13.2 cells (torch 2.15.0 is PyPI's cu132 build, FACTS.md), written like stable-cu130 and
# stable-cu130-cublas12. The fixture below uses matrix.toml's own cells where it has them, so these tests do not
# depend on when those cells land; only what the doctor reads (cuda, torch, workarounds, expectation) matters.
CU132_CELLS = {
    "stable-cu132": """
[[cells]]
id = "stable-cu132"
summary = "stand-in: PyPI's torch 2.15.0 (cu132) under WhisperX 3.8.6 through overrides"
channel = "stable"
cuda = "cu132"
pins = { whisperx = "3.8.6", pyannote-audio = "4.0.7" }
overrides = ["torch==2.15.0", "torchaudio==2.11.1", "torchvision==0.29.2", "torchcodec==0.17.0"]
expect = { status = "fail", reason = "missing-soname:libcublas.so.12" }
""",
    "stable-cu132-cublas12": """
[[cells]]
id = "stable-cu132-cublas12"
extends = "stable-cu132"
summary = "stand-in: stable-cu132 plus the cu12 cuBLAS that CTranslate2 loads, preloaded"
addons = ["nvidia-cublas-cu12==12.8.4.1"]
preload = ["nvidia/cublas/lib/libcublas.so.12"]
expect = { status = "pass" }
""",
}


def with_cells(tmp_path: Path, extra: dict[str, str]) -> matrix.Matrix:
    """matrix.toml plus the cells of ``extra`` that it lacks, in tmp_path, reading the checkout's locks."""
    real = matrix.load(ROOT / "matrix.toml")
    missing = [text for cell_id, text in extra.items() if cell_id not in real.ids()]
    if not missing:
        return real
    path = tmp_path / "matrix.toml"
    path.write_text((ROOT / "matrix.toml").read_text(encoding="utf-8") + "".join(missing), encoding="utf-8")
    (tmp_path / "constraints").symlink_to(ROOT / "constraints")
    return matrix.load(path)


@pytest.fixture
def cu132_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> matrix.Matrix:
    monkeypatch.setenv("WXM_ENVS", str(tmp_path / "no-envs"))
    return with_cells(tmp_path, CU132_CELLS)


def diagnose(case: str, m: matrix.Matrix, **kw: object) -> doctor.Report:
    machine = doctor.collect(loader=loader_for(case), runner=runner_for(case))
    return doctor.diagnose(m, machine, **kw)  # type: ignore[arg-type]


def fits(report: doctor.Report) -> dict[str, doctor.CellFit]:
    return {f.cell: f for f in report.cells}


# --- the driver table: NVIDIA's numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "toolkit", "minor"),
    [
        ("cu124", "550.54.14", "525.60.13"),
        ("cu126", "560.28.03", "525.60.13"),
        ("cu128", "570.26", "525.60.13"),
        ("cu129", "575.51.03", "525.60.13"),
        ("cu130", "580.65.06", "580"),
        ("cu131", "590.44.01", "580"),  # CUDA 13.2 Release Notes, Table 3: CUDA 13.1 GA >=590.44.01
        ("cu132", "595.45.04", "580"),  # same table: CUDA 13.2 GA >=595.45.04
    ],
)
def test_driver_table_entries(cuda: str, toolkit: str, minor: str) -> None:
    entry = cudafacts.CUDA_DRIVERS[cuda]
    assert (entry.toolkit_driver, entry.minor_compat_driver) == (toolkit, minor)


@pytest.mark.parametrize(
    ("cuda", "driver", "fit"),
    [
        ("cu128", "570.26", "full"),
        ("cu128", "570.133.07", "full"),
        ("cu128", "565.57.01", "minor-compat"),
        ("cu128", "525.60.13", "minor-compat"),
        ("cu128", "520.61.05", "too-old"),
        ("cu130", "575.51.03", "too-old"),
        ("cu130", "580.65.06", "full"),
        ("cu124", "550.54.14", "full"),
        ("cu126", "560.28.02", "minor-compat"),
        ("cu128", None, "unknown"),
        ("cu131", "590.44.01", "full"),
        ("cu131", "580.65.06", "minor-compat"),
        ("cu132", "595.45.04", "full"),
        ("cu132", "590.48.01", "minor-compat"),
        ("cu132", "580.95.05", "minor-compat"),
        ("cu132", "575.51.03", "too-old"),
        ("cu132", "570.133.07", "too-old"),
    ],
)
def test_driver_fit_truth_table(cuda: str, driver: str | None, fit: str) -> None:
    assert doctor.driver_fit(cuda, driver)[0] == fit


def test_a_cuda_release_without_a_cited_floor_is_an_error_not_a_pass() -> None:
    with pytest.raises(doctor.UnknownCudaError, match=r"cell stable-cu999 has cuda = 'cu999'.*CUDA 99\.9"):
        doctor.driver_fit("cu999", "580.1", cell="stable-cu999")
    assert issubclass(doctor.UnknownCudaError, ConfigError)


@pytest.mark.parametrize(
    ("driver", "full", "minor", "summary"),
    [
        (
            "570.133.07",
            ("12.4", "12.6", "12.8"),
            ("12.9",),
            "driver 570.133.07 runs CUDA 12.4-12.8 fully; 12.9 only through minor-version compatibility, with limits "
            "(fully: 12.9 >= 575.51.03); 13.x not at all (13.x needs >= 580)",
        ),
        (
            "575.51.03",
            ("12.4", "12.6", "12.8", "12.9"),
            (),
            "driver 575.51.03 runs CUDA 12.4-12.9 fully; 13.x not at all (13.x needs >= 580)",
        ),
        (
            "580.159.04",
            ("12.4", "12.6", "12.8", "12.9", "13.0"),
            ("13.1", "13.2"),
            "driver 580.159.04 runs CUDA 12.4-13.0 fully; 13.1-13.2 only through minor-version compatibility, with "
            "limits (fully: 13.1 >= 590.44.01, 13.2 >= 595.45.04)",
        ),
        (
            "595.45.04",
            ("12.4", "12.6", "12.8", "12.9", "13.0", "13.1", "13.2"),
            (),
            "driver 595.45.04 runs CUDA 12.4-13.2 fully",
        ),
    ],
)
def test_which_cuda_releases_a_driver_runs(
    driver: str, full: tuple[str, ...], minor: tuple[str, ...], summary: str
) -> None:
    runs = doctor.driver_runs(driver)
    assert runs is not None
    assert (runs.full, runs.minor_compat, runs.summary) == (full, minor, summary)
    assert set(runs.full) | set(runs.minor_compat) | set(runs.none) == {d.cuda for d in cudafacts.CUDA_DRIVERS.values()}
    assert doctor.driver_runs(None) is None
    assert doctor.driver_runs("not-a-version") is None


def test_old_drivers_run_cuda_12_only_through_minor_version_compatibility() -> None:
    runs = doctor.driver_runs("520.61.05")
    assert runs is not None and runs.full == () and runs.minor_compat == ()
    assert runs.summary == (
        "driver 520.61.05 runs no CUDA release fully; 12.x not at all (12.x needs >= 525.60.13); "
        "13.x not at all (13.x needs >= 580)"
    )


def test_blackwell_consumer_needs_the_570_series_not_565() -> None:
    assert "570" in (doctor.gpu_driver_problem(120, "565.57.01") or "")
    assert doctor.gpu_driver_problem(120, "570.86.10") is None
    assert doctor.gpu_driver_problem(90, "535.183.01") is None  # Hopper: no such rule


def test_kernel_fit_uses_the_audit_rule() -> None:
    k = doctor.Kernels(("sm_75", "sm_80", "sm_120"), (), "table")
    assert doctor.kernel_fit(k, 121)[0] == "sass"  # sm_120 SASS runs on 12.1 (same major, higher minor)
    assert doctor.kernel_fit(k, 61)[0] == "none"
    assert doctor.kernel_fit(doctor.Kernels(("sm_80",), ("compute_90",), "t"), 120)[0] == "ptx"
    assert doctor.kernel_fit(None, 120)[0] == "unknown"


def test_smi_parsers() -> None:
    rows = doctor.parse_smi_query("NVIDIA GeForce RTX 5070, 12.0, 570.133.07\nNVIDIA H100 80GB HBM3, 9.0, 580.95.05\n")
    assert rows == [("NVIDIA GeForce RTX 5070", 120, "570.133.07"), ("NVIDIA H100 80GB HBM3", 90, "580.95.05")]
    assert doctor.parse_smi_query("Failed to initialize NVML: Driver/library version mismatch") == []
    assert doctor.parse_smi_cuda((DATA / "rtx5070-570-smi.txt").read_text()) == "12.8"
    # an old driver that cannot report compute_cap: the name table answers
    assert doctor.parse_smi_query("Tesla T4, [N/A], 470.82.01") == [("Tesla T4", None, "470.82.01")]
    assert doctor.known_sm("Tesla T4") == 75


# --- recorded cases ------------------------------------------------------------------------------------


def test_rtx5070_driver_570_recommends_stable_cu128(real_matrix: matrix.Matrix) -> None:
    report = diagnose("rtx5070-570", real_matrix)
    assert report.machine.source == "nvml" and report.machine.cuda == "12.8"
    assert report.sm == 120 and report.gpu_problem is None
    assert report.recommended == "stable-cu128"
    f = fits(report)
    assert f["stable-cu128"].verdict == "ok" and f["stable-cu128"].kernels == "sass"
    assert (
        f["option1-stable-cu124"].verdict == "out" and "no kernels for sm_120" in f["option1-stable-cu124"].reasons[0]
    )
    assert any("arch-unsupported:sm_120" in r for r in f["option1-stable-cu124"].reasons)
    assert f["stable-cu126"].verdict == "out" and f["stable-cu126"].kernels == "none"
    assert "too old for CUDA 13.0" in f["stable-cu130-cublas12"].reasons[0]
    assert "TypeError:use_auth_token" in f["doc-recipe-cu128-unpatched"].reasons[0]
    assert "nightly unreachable" in f["nightly-cu128"].reasons[0]


def test_rtx5070_driver_565_is_rejected(real_matrix: matrix.Matrix) -> None:
    report = diagnose("rtx5070-565", real_matrix)
    assert report.recommended is None
    assert report.gpu_problem and "570" in report.gpu_problem
    assert all(f.verdict == "out" for f in report.cells)
    assert "570 series or later" in report.why


def test_gtx1080_gets_a_cell_that_still_carries_pascal_kernels(real_matrix: matrix.Matrix) -> None:
    report = diagnose("gtx1080-535", real_matrix)
    f = fits(report)
    assert report.sm == 61
    assert f["stable-cu128"].verdict == "out" and f["stable-cu128"].kernels == "none"  # torch 2.8 starts at sm_70
    # stable-cu126 carries sm_60 SASS too, but matrix.toml records that it fails everywhere (torch >= 2.6
    # loads pyannote 3's checkpoint with weights_only), so the doctor passes over it.
    assert f["stable-cu126"].kernels == "sass" and f["stable-cu126"].verdict == "out"
    assert f["option1-stable-cu124"].driver == "minor-compat" and f["option1-stable-cu124"].verdict == "limited"
    assert report.recommended == "option1-stable-cu124"
    assert "minor-version compatibility" in report.why


def test_rtx3090_on_550_prefers_the_cell_its_driver_fully_supports(real_matrix: matrix.Matrix) -> None:
    report = diagnose("rtx3090-550", real_matrix)
    f = fits(report)
    assert len(report.machine.gpus) == 2 and report.sm == 86
    assert f["option1-stable-cu124"].driver == "full" and f["option1-stable-cu124"].verdict == "ok"
    assert f["stable-cu128"].verdict == "limited"
    assert f["stable-cu130-cublas12"].verdict == "out"
    assert report.recommended == "option1-stable-cu124"
    assert "stable-cu128" in report.why  # named as also usable


def test_nvml_mismatch_is_named_and_nvidia_smi_used(real_matrix: matrix.Matrix) -> None:
    report = diagnose("mismatch-smi-ok", real_matrix)
    m = report.machine
    assert m.source == "nvidia-smi" and m.driver == "575.51.03" and m.cuda == "12.9"
    assert any("Driver/library version mismatch" in n and "NVMLError_LibRmVersionMismatch" in n for n in m.notes)
    assert any("reboot" in n for n in m.notes)
    assert report.recommended == "stable-cu128"


def test_everything_failing_reports_no_gpu_and_judges_the_command_line(real_matrix: matrix.Matrix) -> None:
    machine = doctor.collect(loader=loader_for("mismatch-all"), runner=runner_for("mismatch-all"))
    assert machine.gpus == () and machine.source == "none"
    assert any("version mismatch" in n for n in machine.notes)
    assert any("nvidia-smi failed: Failed to initialize NVML" in n for n in machine.notes)
    assert doctor.diagnose(real_matrix, machine).recommended is None
    report = doctor.diagnose(real_matrix, machine, sm=120, driver="575.51.03")
    assert report.recommended == "stable-cu128"
    text = doctor.format_report(report)
    assert "no NVIDIA GPU found" in text and "recommended: stable-cu128" in text


def test_unknown_gpu_is_judged_by_its_compute_capability(real_matrix: matrix.Matrix) -> None:
    report = diagnose("unknown-gpu", real_matrix)
    assert report.machine.source == "nvidia-smi" and report.sm == 121
    assert any("pynvml is not importable" in n for n in report.machine.notes)
    assert report.recommended == "stable-cu128"  # sm_120 SASS runs on 12.1; fewer workarounds than cu130+cublas12
    assert fits(report)["stable-cu130-cublas12"].verdict == "ok"
    assert "not in doctor's GPU table" in doctor.format_report(report)


def test_probes_never_raise() -> None:
    def broken_loader() -> types.ModuleType:
        mod = types.ModuleType("pynvml")

        def boom() -> None:
            raise RuntimeError("segfault-ish")

        mod.nvmlInit = boom  # type: ignore[attr-defined]
        return mod

    machine = doctor.collect(loader=broken_loader, runner=lambda args: None)
    assert machine.gpus == () and "NVML failed: segfault-ish (RuntimeError)" in machine.notes[0]


def test_json_report_and_cli_without_a_gpu(
    real_matrix: matrix.Matrix, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(doctor, "collect", lambda: doctor.Machine((), None, None, "none", ("nvidia-smi not found",)))
    monkeypatch.chdir(ROOT)
    assert cli.main(["doctor", "--sm", "120", "--driver", "575.51.03", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recommended"] == "stable-cu128" and data["sm"] == 120
    assert data["driver_runs"]["full"] == ["12.4", "12.6", "12.8", "12.9"] and data["driver_runs"]["minor_compat"] == []
    assert data["driver_runs"]["summary"].endswith("13.x not at all (13.x needs >= 580)")
    assert "Table 3" in data["driver_runs"]["source"]
    assert cli.main(["doctor"]) == 0
    assert "give --sm" in capsys.readouterr().out


def test_record_writes_the_files_the_replay_reads(tmp_path: Path) -> None:
    written = doctor.record(tmp_path / "rec", loader=loader_for("rtx5070-570"), runner=runner_for("rtx5070-570"))
    assert [p.name for p in written] == ["rec-nvml.json", "rec-smi-query.txt", "rec-smi.txt"]
    assert json.loads(written[0].read_text())["devices"][0]["compute_capability"] == [12, 0]
    assert written[1].read_text() == (DATA / "rtx5070-570-smi-query.txt").read_text()


H100 = sorted(DATA.glob("h100-*"))


@pytest.mark.skipif(not H100, reason="no H100 recording in tests/data/doctor (doctor --record on the GPU machine)")
def test_h100_recording(real_matrix: matrix.Matrix) -> None:
    """The real H100 (sm_90, driver 580): both probes read it, and every stable cell with sm_90 SASS fits."""
    prefix = H100[0].name.split("-nvml.json")[0].split("-smi")[0]
    report = diagnose(prefix, real_matrix)
    assert report.sm == 90 and report.machine.gpus
    assert "H100" in report.machine.gpus[0].name
    smi, _ = doctor.probe_smi(runner_for(prefix))
    assert smi is not None and smi.gpus[0].sm == 90 and smi.driver == report.machine.driver
    assert report.recommended == "stable-cu128"
    assert fits(report)["option1-stable-cu124"].kernels == "sass"


# --- nox -s env: the cell for this machine ----------------------------------------------------------------


def test_env_picks_the_doctors_cell_for_recorded_gpus(real_matrix: matrix.Matrix) -> None:
    """Recorded RTX 5070 (driver 570) and H100 outputs: the cell the doctor recommends, and why."""
    for case, gpu in (("rtx5070-570", "RTX 5070"), ("h100", "H100")):
        machine = doctor.collect(loader=loader_for(case), runner=runner_for(case))
        cell, why = doctor.choose_cell(real_matrix, machine)
        assert cell.id == "stable-cu128" and gpu in why and "doctor recommends" in why


def test_env_without_a_gpu_builds_the_working_cell_and_says_so(real_matrix: matrix.Matrix) -> None:
    machine = doctor.Machine(gpus=(), driver=None, cuda=None, source="none")
    cell, why = doctor.choose_cell(real_matrix, machine)
    assert cell.id == "stable-cu128" and why.startswith("no NVIDIA GPU found here")
    # A machine with Python 3.12 only gets the 3.12 variant of the same cell.
    cell, why = doctor.choose_cell(real_matrix, machine, python_ok=lambda v: v == "3.12")
    assert cell.id == "stable-cu128-py312" and "Python 3.11 is not here" in why


def test_env_on_a_driver_too_old_for_the_gpu_stops_with_the_reason(real_matrix: matrix.Matrix) -> None:
    from whisperx_matrix.errors import FatalError

    machine = doctor.collect(loader=loader_for("rtx5070-565"), runner=runner_for("rtx5070-565"))
    with pytest.raises(FatalError, match="no cell can run on this machine: .*570 series"):
        doctor.choose_cell(real_matrix, machine)


def test_a_built_cell_without_the_audits_reader_falls_back_to_the_table_and_says_so(
    real_matrix: matrix.Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nox's own Python (`nox -s env`) has no pyelftools: the doctor takes the table of measured torch builds and
    names why. (The audit modules are hidden from the import system here, as that Python lacks them.)"""
    site = tmp_path / "no-envs" / "stable-cu128" / "lib" / "python3.11" / "site-packages"
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch" / "lib" / "libtorch_cuda.so").write_bytes(b"\x7fELF")
    monkeypatch.setitem(sys.modules, "whisperx_matrix.audit.arch", None)
    kernels = doctor.cell_kernels(real_matrix, real_matrix.get("stable-cu128"), 120)
    assert kernels is not None and "sm_120" in kernels.sass
    assert kernels.source.startswith("table (torch 2.8.0+cu128); not audited here: whisperx_matrix.audit.arch")


def test_device_nodes_without_a_working_driver_stack_are_named_cuda_init_failed() -> None:
    """NVML and nvidia-smi both fail, yet the machine shows an NVIDIA device node (faked here: this machine has
    none): the doctor says torch will not initialise CUDA, instead of 'no GPU'."""
    machine = doctor.collect(
        loader=loader_for("mismatch-all"),
        runner=runner_for("mismatch-all"),
        signs=lambda: ["device nodes /dev/nvidia0"],
    )
    assert machine.gpus == ()
    [note] = [n for n in machine.notes if n.startswith("cuda-init-failed:")]
    assert "/dev/nvidia0" in note and "570 or later" in note
    quiet = doctor.collect(loader=loader_for("mismatch-all"), runner=runner_for("mismatch-all"), signs=lambda: [])
    assert not any(n.startswith("cuda-init-failed") for n in quiet.notes)


def test_a_listed_gpu_that_the_cells_torch_cannot_use_is_named_with_torchs_error(tmp_path: Path) -> None:
    """The recommended cell's torch asked through a stand-in runner (no GPU here): its own error becomes the
    cuda-init-failed reason; a torch that initialises is no problem."""
    python = tmp_path / "envs" / "stable-cu128" / "bin" / "python"

    def answering(text: str):  # type: ignore[no-untyped-def]
        return lambda args: tools.Completed(tuple(args), 0, text, "")

    error = "RuntimeError: The NVIDIA driver on your system is too old (found version 12040)."
    problem = doctor.torch_cuda_problem(python, runner=answering("ERR " + error))
    assert problem is not None and problem.startswith("cuda-init-failed:RuntimeError-The-NVIDIA-driver")
    assert "torch in stable-cu128 cannot initialise CUDA: " + error in problem
    assert doctor.torch_cuda_problem(python, runner=answering("OK\n")) is None
    assert "the check did not run" in str(doctor.torch_cuda_problem(python, runner=lambda args: None))


# --- CUDA 13.x cells: the driver floors of cudafacts, on sm_90 and sm_120 ------------------------------------

# (sm, driver, recorded case or None for the --sm/--driver stand-in). The recorded cases: rtx5070-570 (RTX 5070 on
# 570.133.07), mismatch-smi-ok (RTX 5070 on 575.51.03, read through nvidia-smi), h100 (the real H100, 580.159.04).
MACHINES = [
    (120, "570.133.07", "rtx5070-570"),
    (120, "575.51.03", "mismatch-smi-ok"),
    (120, "580.95.05", None),
    (90, "570.133.07", None),
    (90, "575.51.03", None),
    (90, "580.159.04", "h100"),
]


def judge(m: matrix.Matrix, sm: int, driver: str, case: str | None) -> doctor.Report:
    if case is None:
        return doctor.diagnose(m, doctor.Machine((), None, None, "none"), sm=sm, driver=driver)
    report = diagnose(case, m)
    assert (report.sm, report.driver) == (sm, driver)
    return report


@pytest.mark.parametrize(("sm", "driver", "case"), MACHINES)
def test_the_newest_working_cell_for_sm90_and_sm120_on_drivers_570_575_580(
    cu132_matrix: matrix.Matrix, sm: int, driver: str, case: str | None
) -> None:
    """The recommendation is stable-cu128 on all six machines, by the doctor's rules in order (driver fit, kernel
    fit, fewest workarounds, newest CUDA):
    - 570 and 575: every CUDA 13 cell is out (13.x needs >= 580); of the cells that fit fully with SASS for the GPU
      and need no workaround, stable-cu128 (CUDA 12.8) is the newest. On sm_90, option1-stable-cu124 fits too and
      loses on CUDA (12.4 < 12.8); on sm_120 it has no kernels.
    - 580: stable-cu130-cublas12 fits fully too, but carries three workarounds (torch-family overrides, the cu12
      cuBLAS add-on, its preload), so it ranks below stable-cu128. The cu132 cells run only through minor-version
      compatibility (580 < 595.45.04, CUDA 13.2 GA's driver): the doctor rates stable-cu132-cublas12 "limited",
      because under minor-version compatibility the driver cannot JIT PTX from the newer toolkit (kernels that
      CUDA 13.2's NVRTC compiles at run time included), whatever SASS torch carries; it ranks last of the usable.
    The arch list of torch 2.15.0+cu132 is known (cudafacts.TORCH_ARCHS): sm_90 and sm_120 SASS."""
    report = judge(cu132_matrix, sm, driver, case)
    f = fits(report)
    assert report.recommended == "stable-cu128", report.why
    assert f["stable-cu128"].verdict == "ok" and f["stable-cu128"].driver == "full"
    assert report.driver_runs is not None and report.driver_runs.summary.startswith(f"driver {driver} runs CUDA 12.4-")
    for cell in ("stable-cu132", "stable-cu132-cublas12"):
        assert f[cell].kernels == "sass" and "table (torch 2.15.0+cu132)" in f[cell].details[1]
        assert not any("arch list is unknown" in d for d in f[cell].details)
    if driver.startswith(("570.", "575.")):
        assert report.driver_runs.minor_compat in ((), ("12.9",))
        assert "13.x not at all (13.x needs >= 580)" in report.driver_runs.summary
        for cell in ("stable-cu130-cublas12", "stable-cu132", "stable-cu132-cublas12"):
            assert f[cell].verdict == "out" and f[cell].driver == "too-old"
        assert f["stable-cu132-cublas12"].reasons[0] == (
            f"driver {driver} is too old for CUDA 13.2: needs >= 595.45.04 (or >= 580 with minor-version compatibility)"
        )
    else:
        assert report.driver_runs.minor_compat == ("13.1", "13.2")
        assert f["stable-cu130-cublas12"].verdict == "ok" and f["stable-cu130-cublas12"].driver == "full"
        for cell in ("stable-cu132", "stable-cu132-cublas12"):
            assert f[cell].driver == "minor-compat"
        cublas12 = cu132_matrix.get("stable-cu132-cublas12")
        if cublas12.expected(sm).status == "pass":
            assert f["stable-cu132-cublas12"].verdict == "limited"
            assert (
                f["stable-cu132-cublas12"]
                .reasons[0]
                .startswith(
                    f"driver {driver} < 595.45.04 (CUDA 13.2 GA): runs through CUDA minor-version compatibility"
                )
            )
            assert report.why.index("stable-cu130-cublas12") < report.why.index("stable-cu132-cublas12")
    text = doctor.format_report(report)
    assert f"judging for sm_{sm}, driver {driver}" in text and report.driver_runs.summary in text
    assert "recommended: stable-cu128" in text


def test_the_doctor_stops_on_a_cell_whose_cuda_has_no_cited_floor(
    cu132_matrix: matrix.Matrix, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cell of a CUDA release that cudafacts does not cite is an error naming the cell, never an "ok". (Loading
    matrix.toml may refuse such a cell already; the doctor does not rely on it: here the table loses its 13.2 row
    after the matrix is loaded.)"""
    monkeypatch.delitem(cudafacts.CUDA_DRIVERS, "cu132")
    first = next(c.id for c in cu132_matrix.cells if c.cuda == "cu132")
    with pytest.raises(doctor.UnknownCudaError) as err:
        doctor.diagnose(cu132_matrix, doctor.Machine((), None, None, "none"), sm=120, driver="595.45.04")
    assert str(err.value).startswith(f"cell {first} has cuda = 'cu132'") and "\n" not in str(err.value)
    assert err.value.hint and "cudafacts.CUDA_DRIVERS" in err.value.hint and "source" in err.value.hint
    # without a GPU and without --sm/--driver too, and through the command line as a one-line error
    with pytest.raises(doctor.UnknownCudaError):
        doctor.diagnose(cu132_matrix, doctor.Machine((), None, None, "none"))
    monkeypatch.setattr(doctor, "collect", lambda: doctor.Machine((), None, None, "none", ()))
    monkeypatch.setattr(matrix, "load", lambda path=None: cu132_matrix)
    assert cli.main(["doctor", "--sm", "90", "--driver", "580.159.04"]) == ConfigError.exit_code
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith(f"error: cell {first} has cuda = 'cu132'")
    assert "hint: add CUDA 13.2's row to cudafacts.CUDA_DRIVERS" in out.err


def test_the_committed_gpu_run_is_named_beside_each_cell_it_measured(tmp_path: Path) -> None:
    """reports/gpu (the GPU workflow's run): a cell's Python variant measured there counts for the cell."""
    path = tmp_path / "matrix.json"
    gpu = {"present": True, "name": "NVIDIA H200", "sm": 90, "driver": "580.159.04", "torch_cuda": "13.2"}
    cells = [
        {"id": "stable-cu132-cublas12-py312", "verdict": "as-expected", "observed": {"reasons": []}, "gpu": gpu},
        {
            "id": "stable-cu132-py312",
            "verdict": "failed-as-expected",
            "gpu": gpu,
            "observed": {"reasons": ["missing-soname:libcublas.so.12"]},
        },
        {"id": "stable-cu128", "verdict": "as-expected", "observed": {"reasons": []}, "gpu": {"present": False}},
    ]
    path.write_text(json.dumps({"cells": cells}))
    measured = doctor.gpu_measurements(path)
    assert measured["stable-cu132-cublas12"] == [
        "measured on NVIDIA H200 (sm_90, driver 580.159.04, torch CUDA 13.2): stable-cu132-cublas12-py312 as-expected"
    ]
    assert measured["stable-cu132"][0].endswith("failed-as-expected (missing-soname:libcublas.so.12)")
    assert "stable-cu128" not in measured  # no GPU in that run: nothing measured
    assert doctor.gpu_measurements(tmp_path / "missing.json") == {}


def test_an_arm_gpu_is_judged_against_the_aarch64_cells_and_told_what_stands_in_the_way() -> None:
    """`nox -s doctor -- --sm 121 --platform aarch64` (a DGX Spark) from this x86_64 machine: only the aarch64
    cells are judged, none can run, and the answer names each one's measured reason; by default the doctor judges
    this machine's own platform and never offers an aarch64 cell here."""
    m = matrix.load(ROOT / "matrix.toml")
    none = doctor.Machine((), None, None, "none")
    arm = doctor.diagnose(m, none, sm=121, driver="580.95.05", platform="aarch64")
    assert arm.cells and all(f.cell.endswith("-aarch64") for f in arm.cells)
    assert arm.recommended is None and arm.why.startswith("no aarch64 cell of matrix.toml can run here")
    assert "stable-cu132-py312-aarch64: expected to fail per matrix.toml: no-cuda-build:ctranslate2" in arm.why
    here = doctor.diagnose(m, none, sm=120, driver="580.95.05")
    assert here.recommended is not None and not any(f.cell.endswith("-aarch64") for f in here.cells)
    assert cudafacts.KNOWN_GPUS["DGX Spark (GB10)"] == 121 and cudafacts.KNOWN_GPUS["Jetson AGX Thor"] == 110
