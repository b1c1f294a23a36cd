"""The pure parts of the transcription benchmark (issue #7): RTF math, the stage table, OOM recording, token
counting, the one-line bad-input errors, and the orchestration's summaries.

bench_transcribe.py runs in a cell's python; it imports only the standard library at import time, so it is
loaded here from its file, with its helpers beside it (benchkit.py, transcribe_modes.py). Nothing is mocked except what cannot exist on a machine without a GPU: a CUDA
out-of-memory error (a stand-in class named like torch's) and nvidia-smi's output; the tests say so in their names.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELLSIDE = ROOT / "src" / "whisperx_matrix" / "cellside"
SCRIPT = CELLSIDE / "bench_transcribe.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_transcribe_under_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


bt = _load()  # puts cellside/ on sys.path, as the script does in a cell: its helpers import by name
kit = importlib.import_module("benchkit")  # the helpers shared with bench_pipeline.py
tm = importlib.import_module("transcribe_modes")  # the stage timer and the stages


def test_rtf_is_audio_seconds_per_wall_second():
    assert kit.rtf(60.0, 30.0) == 2.0
    assert kit.rtf(30.0, 60.0) == 0.5
    assert kit.rtf(596.0, 596.0 / 235) == 235.0
    assert kit.rtf(10.0, 0.0) is None
    assert kit.rtf(10.0, -1.0) is None


def test_stage_table_has_a_row_per_stage_and_dashes_for_missing_values():
    table = bt.stage_table(
        [
            {
                "stage": "whisperx_batched[int8,bs8]",
                "status": "ok",
                "wall_s": 2.5,
                "rtf": 24.0,
                "rss_peak_mib": 900,
                "tokens": 104,
                "weights": "real",
            },
            {"stage": "batch_sweep[float16,bs64]", "status": "oom", "weights": "synthetic"},
        ]
    )
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["stage", "status", "wall_s", "rtf"]
    assert len(lines) == 3
    assert "24.0" in lines[1] and "104" in lines[1]
    assert lines[2].split()[1] == "oom" and lines[2].split()[2] == "-"


def test_is_oom_for_ctranslate2_message_and_for_a_stand_in_of_torchs_OutOfMemoryError_no_gpu_here():
    class OutOfMemoryError(RuntimeError):  # stands in for torch.cuda.OutOfMemoryError: no GPU on this machine
        pass

    assert kit.is_oom(RuntimeError("CUDA failed with error out of memory"))
    assert kit.is_oom(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not kit.is_oom(RuntimeError("Library libcublas.so.12 is not found or cannot be loaded"))
    assert not kit.is_oom(ValueError("out of memory"))


def test_an_oom_is_recorded_as_such_without_numbers_and_the_sweep_goes_on():
    bench = tm.Bench("cpu")
    results = {}
    for bs in (8, 64, 16):

        def fn(bs=bs):
            if bs == 64:  # what CTranslate2 raises when a batch does not fit
                raise RuntimeError("CUDA failed with error out of memory")
            return bs

        rec, res = bench.measure(
            f"batch_sweep[bs{bs}]", 60.0, fn, engine="ctranslate2", weights="real", extra={"batch_size": bs}
        )
        results[bs] = (rec, res)
    assert [s["status"] for s in bench.stages] == ["ok", "oom", "ok"]
    oom = results[64][0]
    assert oom["error"].startswith("RuntimeError: CUDA failed with error out of memory")
    assert "wall_s" not in oom and "rtf" not in oom and results[64][1] is None
    assert results[16][1] == 16 and results[16][0]["rtf"] > 0 and results[16][0]["rss_peak_mib"] > 0


def test_a_failing_stage_is_an_error_not_an_oom():
    bench = tm.Bench("cpu")
    rec, _ = bench.measure("align", 30.0, lambda: 1 / 0, engine="torch", weights="synthetic")
    assert rec["status"] == "error" and rec["error"].startswith("ZeroDivisionError")
    assert rec["weights"] == "synthetic"


def test_token_counting_sums_encoded_lengths_and_skips_blank_texts():
    encode = lambda t: t.split()  # noqa: E731 - a whitespace "tokenizer": the sum is what matters
    assert kit.count_text_tokens(encode, [" hello there", "", "   ", "general kenobi you are"]) == 6
    assert "re-tokenised" in bt.TOKEN_COUNT_METHOD["text_tokens"]
    assert "segment.tokens" in bt.TOKEN_COUNT_METHOD["sequential_tokens"]


def test_counting_generator_counts_decoded_tokens_and_passes_the_rest_through():
    class Result:  # the shape of ctranslate2's WhisperGenerationResult: sequences_ids per hypothesis
        def __init__(self, n):
            self.sequences_ids = [list(range(n))]

    class Engine:  # stands in for ctranslate2.models.Whisper (CTranslate2 objects need a model file)
        is_multilingual = False

        def generate(self, features, prompts, **kw):
            return [Result(n) for n in features]

    c = kit.CountingGenerator(Engine())
    assert [len(r.sequences_ids[0]) for r in c.generate([56, 40], None, max_length=56)] == [56, 40]
    c.generate([10], None)
    assert (c.tokens, c.windows) == (106, 3)
    assert c.is_multilingual is False
    c.reset()
    assert (c.tokens, c.windows) == (0, 0)


def test_normalise_words_for_wer():
    assert tm.normalise_words("Good idea. I will write a SUMMARY,  today!") == "good idea i will write a summary today"


def test_batch_size_parsing():
    assert bt.parse_batch_sizes("16") == [16]
    assert bt.parse_batch_sizes("16, 8,32,64") == [16, 8, 32, 64]
    for bad in ("", "x", "0", "8,-1"):
        with pytest.raises(kit.BenchError):
            bt.parse_batch_sizes(bad)


def test_unknown_model_and_non_ct2_folder_are_one_line_errors(tmp_path):
    with pytest.raises(kit.BenchError, match="unknown model 'large-v9'"):
        kit.resolve_model("large-v9")
    with pytest.raises(kit.BenchError, match="no model.bin"):
        kit.resolve_model(str(tmp_path))
    (tmp_path / "model.bin").write_bytes(b"")
    assert kit.resolve_model(str(tmp_path)) == (str(tmp_path.resolve()), "real")
    (tmp_path / kit.SYNTHETIC_MARK).write_text("{}")
    assert kit.resolve_model(str(tmp_path))[1] == "synthetic"


def test_cuda_asked_without_a_gpu_is_refused():
    with pytest.raises(kit.BenchError, match="no CUDA GPU"):
        kit.check_device("cuda", False)
    kit.check_device("cpu", False)
    kit.check_device("cuda", True)


def _run_script(python: str, args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)


def _common(tmp_path: Path) -> list[str]:
    ref = tmp_path / "ref.txt"
    ref.write_text("hello")
    return ["--audio", str(tmp_path / "a.wav"), "--reference-text", str(ref), "--out", str(tmp_path / "out.json")]


def test_missing_ffmpeg_is_one_line_and_records_no_numbers(tmp_path):
    env = {"PATH": str(tmp_path / "empty-bin"), "HOME": str(tmp_path)}
    proc = _run_script(sys.executable, _common(tmp_path), env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: ffmpeg not found on PATH: WhisperX decodes audio with the ffmpeg binary (apt-get install ffmpeg)"
    ]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["ok"] is False and "stages" not in out


def test_unknown_model_from_the_command_line(tmp_path):
    pytest.importorskip("shutil").which("ffmpeg") or pytest.skip("needs ffmpeg on PATH (the check before it)")
    proc = _run_script(sys.executable, [*_common(tmp_path), "--model", "nope"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown model 'nope': give tiny.en (offline weights) or the path of a CTranslate2 model folder"
    ]
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "schema": 1,
        "ok": False,
        "device": "cpu",
        "model": "nope",
        "error": "unknown model 'nope': give tiny.en (offline weights) or the path of a CTranslate2 model folder",
    }


def test_smi_process_memory_parses_a_fake_nvidia_smi_no_gpu_here():
    class Out:  # nvidia-smi's csv output, made up: there is no GPU on this machine
        stdout = "4242, 1536\n999, 80\n4242, 512\n"

    assert kit.smi_process_memory(4242, run=lambda *a, **k: Out()) == 2048 * 2**20
    assert kit.smi_process_memory(7, run=lambda *a, **k: Out()) is None


@pytest.mark.slow
@pytest.mark.network
def test_undecodable_audio_in_the_cell_is_one_line(tmp_path, working_cell_python):
    (tmp_path / "a.wav").write_bytes(b"RIFF this is not audio")
    proc = _run_script(str(working_cell_python), _common(tmp_path))
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-500:]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot decode audio {tmp_path / 'a.wav'}")
    assert "stages" not in json.loads((tmp_path / "out.json").read_text())


@pytest.mark.slow
@pytest.mark.network
def test_cuda_without_a_gpu_in_the_cell_is_one_line(tmp_path, working_cell_python):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU driver: the refusal is for machines without one")
    (tmp_path / "a.wav").write_bytes(b"")
    proc = _run_script(str(working_cell_python), [*_common(tmp_path), "--device", "cuda"])
    assert proc.returncode == 2
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [
        "error: --device cuda asked, but torch sees no CUDA GPU here (torch.cuda.is_available() is False)"
    ]


# ---- the orchestration's pure parts (whisperx_matrix.bench)


def test_minutes_and_stm_parsing():
    from whisperx_matrix import bench

    assert bench.parse_minutes("1,5,20") == [1.0, 5.0, 20.0]
    with pytest.raises(ValueError):
        bench.parse_minutes("1,x")
    assert bench.stm_text("sample 1 A 6.68 7.16 Hello?\nsample 1 B 7.6 8.1 Oh, hello.\n") == "Hello? Oh, hello."


def test_summary_and_cpu_targets_judge_dialogue_files_only():
    from whisperx_matrix import bench

    stages = [
        {
            "stage": "whisperx_batched[int8,bs8]",
            "kind": "whisperx_batched",
            "status": "ok",
            "file": "sample.wav",
            "audio_s": 30,
            "wall_s": 60,
            "rtf": 0.5,
            "wer": 0.4,
        },
        {
            "stage": "whisperx_batched[int8,bs8]",
            "kind": "whisperx_batched",
            "status": "ok",
            "file": "dialogue-1min.wav",
            "audio_s": 60,
            "wall_s": 10,
            "rtf": 6.0,
            "wer": 0.05,
        },
        {
            "stage": "faster_whisper_sequential[int8]",
            "kind": "sequential",
            "status": "ok",
            "file": "dialogue-1min.wav",
            "audio_s": 60,
            "wall_s": 20,
            "rtf": 3.0,
            "wer": 0.04,
        },
        {"stage": "align", "status": "ok", "file": "dialogue-1min.wav", "audio_s": 60, "wall_s": 10, "rtf": 6.0},
        {"stage": "batch_sweep[int8,bs64]", "kind": "batch_sweep", "status": "oom", "file": "dialogue-1min.wav"},
    ]
    result = {"ok": True, "device": "cpu", "model": "tiny.en", "model_weights": "real", "stages": stages}
    s = bench.summarise_transcribe(result)
    one = s["per_file"]["dialogue-1min.wav"]
    assert one["batched_over_sequential"] == 2.0
    assert one["partial_rtf"] == 3.0 and one["pipeline_stages"] == ["vad+asr (batched)", "align"]
    assert one["partial_stages"] == "vad+asr+align" and "stage_sum_rtf" not in one  # no diarization: partial
    targets = bench.transcribe_targets({"device": "cpu", "result": result})
    assert set(targets) == set(bench.CPU_TARGETS)
    assert targets["cpu_faster_than_real_time"]["slowest_rtf"] == 6.0  # sample.wav's 0.5x is not a dialogue file
    assert all(t["met"] for t in targets.values())
    stages[1]["wer"] = 0.2
    targets = bench.transcribe_targets({"device": "cpu", "result": result})
    assert targets["cpu_wer"] == targets["cpu_wer"] | {"worst_wer": 0.2, "met": False}
    synthetic = {"device": "cpu", "result": result | {"model_weights": "synthetic"}}
    assert all(t["met"] is None and t["not_measured"] for t in bench.transcribe_targets(synthetic).values())


def _gpu_stage(kind, bs, file, *, rtf, wall, peak=None, windows=47, weights="synthetic", **extra):
    return {
        "stage": f"{kind}[float16,bs{bs}]",
        "kind": kind,
        "compute_type": "float16",
        "batch_size": bs,
        "file": file,
        "status": "ok",
        "audio_s": 1000.0,
        "rtf": rtf,
        "wall_s": wall,
        "gpu_peak_mib": peak,
        "windows": windows,
        "weights": weights,
        **extra,
    }


def test_gpu_targets_are_computed_from_the_measured_stages():
    from whisperx_matrix import bench

    f = "dialogue-20min.flac"
    large = {
        "ok": True,
        "model": "large-v3-shaped",
        "model_weights": "synthetic",
        "compute_type": "float16",
        "max_new_tokens": 100,
        "stages": [
            _gpu_stage("whisperx_batched", 16, f, rtf=200.0, wall=5.0, peak=9000, tokens_per_window=50.0),
            _gpu_stage("batch_sweep", 8, f, rtf=140.0, wall=7.1, peak=6000),
            _gpu_stage("batch_sweep", 32, f, rtf=250.0, wall=4.0, peak=15000),
            _gpu_stage("batch_sweep", 64, f, rtf=260.0, wall=3.8, peak=20000),
        ],
    }
    tiny = {
        "ok": True,
        "model": "tiny.en",
        "model_weights": "real",
        "compute_type": "float16",
        "stages": [
            _gpu_stage(
                "whisperx_batched", 16, f, rtf=500.0, wall=2.0, peak=1300, weights="real", tokens_per_window=75.0
            ),
            {"stage": "align", "status": "ok", "file": f, "audio_s": 1000.0, "wall_s": 10.0, "rtf": 100.0},
            {"stage": "diarize", "status": "ok", "file": f, "audio_s": 1000.0, "wall_s": 8.0, "rtf": 125.0},
        ],
    }
    data = {
        "device": "cuda",
        "cu130_check": {"ok": False, "stages": []},
        "tiny_en": tiny,
        "large": large,
        "machine": {"synthetic_model": {"parameters": 1_000_000_000}},
    }
    t = bench.transcribe_targets(data)
    assert set(t) == set(bench.GPU_TARGETS)
    asr = t["asr_large_v3_fp16_bs16"]
    assert (asr["run"], asr["rtf"], asr["met"]) == ("large", 200.0, True)
    assert asr["other_batch_sizes_rtf"] == {"8": 140.0, "32": 250.0, "64": 260.0}
    assert asr["real_weights_tokens_per_window"] == {"tiny_en": 75.0}
    pipe = t["pipeline"]
    assert (pipe["run"], pipe["total_s"], pipe["rtf"], pipe["met"]) == ("tiny_en", 20.0, 50.0, False)
    assert "large" in pipe["not_measured_for"]
    mem = t["gpu_memory_large_v3_fp16_bs16"]
    assert (mem["peak_mib"], mem["limit_mib"], mem["met"]) == (9000, 7629, False)
    assert mem["batch_sizes_within_limit"] == {"8": {"peak_mib": 6000, "rtf": 140.0}}
    est = mem["asr_estimate"]  # points (8, 6000), (16, 9000), (32, 15000), (47, 20000): windows capped at 47
    assert [p[0] for p in est["points_windows_mib"]] == [8, 16, 32, 47]
    assert est["weights_mib"] == round(2e9 / 2**20)
    assert est["weights_and_batch_mib"] == round(2e9 / 2**20 + 16 * est["per_window_mib"])
    large["stages"][0]["gpu_peak_mib"] = 7000
    assert bench.transcribe_targets(data)["gpu_memory_large_v3_fp16_bs16"]["met"] is True
    del data["large"]
    assert bench.transcribe_targets(data)["asr_large_v3_fp16_bs16"]["met"] is None


def test_summarise_file_rewrites_summary_and_targets_only(tmp_path):
    from whisperx_matrix import bench

    result = {
        "ok": True,
        "device": "cpu",
        "model": "tiny.en",
        "model_weights": "real",
        "stages": [
            {
                "stage": "whisperx_batched[int8,bs8]",
                "kind": "whisperx_batched",
                "status": "ok",
                "file": "dialogue-1min.wav",
                "audio_s": 60,
                "wall_s": 10,
                "rtf": 6.0,
                "wer": 0.05,
            }
        ],
    }
    data = {"device": "cpu", "result": result, "summary": {"stale": True}, "targets": {"typed by hand": True}}
    path = tmp_path / "transcribe-cpu-2026-01-01.json"
    path.write_text(json.dumps(data))
    assert bench.summarise_results(tmp_path) == [(path, True)]
    new = json.loads(path.read_text())
    assert new["result"] == result and new["summary"] == bench.summarise_transcribe(result)
    assert new["targets"] == bench.transcribe_targets(data)
    assert bench.summarise_results(tmp_path) == [(path, False)]


def test_committed_transcribe_results_carry_what_the_code_computes():
    from whisperx_matrix import bench

    for path in sorted((ROOT / "benchmarks" / "results").glob("transcribe-*.json")):
        data = json.loads(path.read_text())
        assert bench.summarise_file(data) == data, f"{path.name}: run python -m whisperx_matrix bench summarise"


def test_sampler_reads_process_memory_from_a_fake_nvml_and_falls_back_to_device_use_no_gpu_here(monkeypatch):
    import os
    import types

    listed = {"pids": [os.getpid()]}

    class Proc:
        def __init__(self, pid):
            self.pid, self.usedGpuMemory = pid, 700 * 2**20

    fake = types.SimpleNamespace(  # stands in for pynvml with one GPU: there is no GPU (or NVML) here
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=900 * 2**20),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [Proc(p) for p in listed["pids"]],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    s = kit.Sampler(gpu=True)
    assert s.gpu_now() == 700 * 2**20 and s.gpu_source == "nvml-process"
    listed["pids"] = [1]  # NVML lists another pid namespace's pids (a container)
    assert s.gpu_now() == 900 * 2**20 and s.gpu_source.startswith("nvml-device-used")
    assert s.device_used_peak == 900 * 2**20


def test_the_cuda_jit_cache_state_is_recorded_with_the_first_call(tmp_path: Path) -> None:
    """An empty, a warm and a disabled cache, read from real folders (no GPU needed to read a folder)."""
    fresh = tmp_path / "jit"
    assert kit.cuda_jit_cache_state({"CUDA_CACHE_PATH": str(fresh)}) == {
        "path": "CUDA_CACHE_PATH",
        "entries": 0,
        "state": "empty",
    }
    (fresh / "a").mkdir(parents=True)
    (fresh / "a" / "entry.bin").write_bytes(b"x")
    assert kit.cuda_jit_cache_state({"CUDA_CACHE_PATH": str(fresh)})["state"] == "warm"
    assert kit.cuda_jit_cache_state({"CUDA_CACHE_DISABLE": "1"})["state"] == "disabled"
