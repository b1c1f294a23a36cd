"""A PEP 503 simple index on loopback, serving wheels a test chose: a stand-in for an index these machines cannot
reach (PyTorch's nightly index). Real wheels, real HTTP, real hashes; only the index's host is ours."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import os
import threading
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from whisperx_matrix.wheelhouse import sha256_file


def build_index(root: Path, wheels: Iterable[Path]) -> Path:
    """root/<project>/index.html listing each wheel (linked, not copied) with its sha256, and root/index.html."""
    projects: dict[str, list[Path]] = {}
    for whl in wheels:
        projects.setdefault(canonicalize_name(parse_wheel_filename(whl.name)[0]), []).append(whl)
    for name, files in projects.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        links = []
        for whl in files:
            target = folder / whl.name
            if not target.exists():
                try:
                    os.link(whl, target)
                except OSError:
                    target.symlink_to(whl)
            links.append(f'<a href="{whl.name}#sha256={sha256_file(whl)}">{whl.name}</a>')
        (folder / "index.html").write_text("<html><body>" + "".join(links) + "</body></html>")
    (root / "index.html").write_text("".join(f'<a href="{n}/">{n}</a>' for n in sorted(projects)))
    return root


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port); yields the index URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal valid wheel: one module, METADATA (with Requires-Dist), WHEEL and RECORD with hashes."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    files = {
        f"{name.replace('-', '_')}/__init__.py": f"__version__ = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": meta.encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for arc, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(data)}")
    record.append(f"{dist}.dist-info/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for arc, data in files.items():
            zf.writestr(arc, data)
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path
