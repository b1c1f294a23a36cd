"""A PEP 503 simple index on loopback, serving wheels a test chose: a stand-in for an index these machines cannot
reach (PyTorch's nightly index). Real wheels, real HTTP, real hashes; only the index's host is ours."""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
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
