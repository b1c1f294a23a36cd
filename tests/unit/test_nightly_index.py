"""The nightly machinery against a PyTorch-style index we serve ourselves (the real nightly index is out of reach
here): the index URL comes from matrix.toml's override variable, torch resolves from it as a pre-release, the rest
from the default index, and the lock records the index in its inputs. The torch wheels served are stand-ins we
build (empty packages with real wheel metadata), since no nightly torch can be downloaded on these machines."""

from __future__ import annotations

from pathlib import Path

import pytest
from pep503 import build_index, make_wheel, serve

from whisperx_matrix import lock, matrix

pytestmark = pytest.mark.network  # whisperx and the rest resolve from the default index

NIGHTLY = "2.10.0.dev20260101"


@pytest.fixture
def nightly_index(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A PEP 503 simple index on localhost serving stand-in torch, torchaudio and torchvision nightlies."""
    made = tmp_path / "wheels"
    wheels = []
    for name, version in (("torch", NIGHTLY), ("torchaudio", NIGHTLY), ("torchvision", "0.25.0.dev20260101")):
        (made / name).mkdir(parents=True)
        wheels.append(make_wheel(made / name, name, version))
    with serve(build_index(tmp_path / "index", wheels)) as url:
        yield url


def test_nightly_cell_locks_from_its_index(
    tiny_project: Path, nightly_index: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tiny_project / "matrix.toml"
    toml.write_text(
        toml.read_text().replace(
            'index = "nightly"\npins = { whisperx = "3.8.6" }',
            'index = "nightly"\npins = { whisperx = "3.8.6" }\n'
            'overrides = ["torch>=2.10.0.dev0", "torchaudio>=2.10.0.dev0", "torchvision>=0.25.0.dev0", "pyannote-audio>=4.0.1"]',
        )
    )
    monkeypatch.setenv("WXM_TEST_NIGHTLY_INDEX", nightly_index)
    m = matrix.load(toml)
    cell = m.get("tiny-nightly")
    assert cell.index is not None and cell.index.url == nightly_index
    dest = tiny_project / "resolved" / "tiny-nightly.txt"
    status = lock.resolve_floating(m, cell, dest)
    assert status.state == "written", status.detail
    assert not lock.lock_path(m, cell).exists()  # a floating lock never lands in constraints/
    text = dest.read_text()
    assert f"\ntorch=={NIGHTLY} \\\n    --hash=sha256:" in text  # the nightly came from our index, hashed
    assert f"\ntorchaudio=={NIGHTLY} \\\n" in text
    assert "\nwhisperx==3.8.6 \\\n" in text  # everything else from the default index
    header = lock.read_header(dest)
    assert header is not None and header.inputs["index"] == nightly_index and header.cell == "tiny-nightly"
    assert lock.check(m, [cell])[0].state == "floating"
