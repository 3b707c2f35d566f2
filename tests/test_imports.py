"""One module, one name: detector/, streams/, models/ and config/ are the packages
straycode.detector, .streams, .models and .config (pyproject package-dir). Run from the
repository root they are also importable by their bare folder names, which would load the
same file twice as two modules; the bare names refuse to import."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = ("detector", "streams", "models", "config")

WALK = r"""
import importlib, os, pkgutil, sys
repo = os.getcwd() + os.sep
names = ["straycode", "straycode.detector", "straycode.streams", "straycode.models",
         "straycode.config"]
for name in names:
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        importlib.import_module(info.name)
refused = []
for bare in ("detector.engine", "streams.agents", "models.simulate", "config", "detector"):
    try:
        importlib.import_module(bare)
    except ImportError as exc:
        refused.append(bare)
        assert "import 'straycode." in str(exc), exc
by_file = {}
for name, mod in list(sys.modules.items()):
    path = getattr(mod, "__file__", None)
    if path and path.startswith(repo) and "site-packages" not in path:
        by_file.setdefault(path, []).append(name)
twice = {p: n for p, n in by_file.items() if len(n) > 1}
assert not twice, twice
print(len(by_file), "modules;", "refused:", ",".join(refused))
"""


def test_no_module_file_is_loaded_under_two_names():
    """Import every straycode module, then try the bare names from the repository root
    (where the folders are on sys.path): each must refuse, and no file is loaded twice."""
    done = subprocess.run([sys.executable, "-c", WALK], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: detector.engine,streams.agents,models.simulate,config,detector" in done.stdout


def test_no_source_file_imports_a_mapped_package_by_its_bare_name():
    bare = re.compile(rf"^\s*(from|import)\s+({'|'.join(MAPPED)})(\.|\s|$)", re.M)
    offenders = []
    for folder in ("straycode", *MAPPED, "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in bare.finditer(path.read_text(encoding="utf-8")):
                offenders.append(f"{path.relative_to(ROOT)}: {match.group().strip()}")
    assert offenders == []
