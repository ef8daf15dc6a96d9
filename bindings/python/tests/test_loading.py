"""Library lookup: explicit path, $RATETRACK_LIBRARY, system loader, the wheel's
bundled copy; error messages; versions."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import subprocess
import sys
import types
from typing import Callable, Dict

import pytest

import ratetrack
from ratetrack import _library


SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def _fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (nothing loaded yet: in this process the
    loader would match the already-loaded libratetrack.so.0 by its SONAME)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("RATETRACK_LIBRARY", "LD_LIBRARY_PATH")}
    environ["PYTHONPATH"] = SRC
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=60)


def _system_has_library() -> bool:
    return _fresh("import ctypes; ctypes.CDLL('libratetrack.so.0')").returncode == 0


FIND = """
import ratetrack
from ratetrack import _library
try:
    _library.find_library({path!r}, {env!r})
except ratetrack.LibraryNotFound as e:
    print(e)
    raise SystemExit(3)
"""


def test_bad_paths_list_every_place_tried() -> None:
    if _system_has_library():
        pytest.skip("libratetrack.so.0 is installed system-wide: the system loader would find it")
    proc = _fresh(FIND.format(path="/nonexistent/explicit.so", env={"RATETRACK_LIBRARY": "/nonexistent/env.so"}))
    assert proc.returncode == 3, proc.stderr
    text = proc.stdout
    assert "/nonexistent/explicit.so" in text
    assert "/nonexistent/env.so" in text
    assert "libratetrack.so.0" in text
    assert text.count("cannot open shared object file") == 3  # the loader's message for each
    # A source tree has no bundled copy: said so, not tried.
    assert "bundled copy '%s': not in this install" % _library.BUNDLED in text
    assert (text.index("explicit.so") < text.index("env.so") < text.index("libratetrack.so.0")
            < text.index("bundled copy"))


def test_unset_env_var_is_reported() -> None:
    if _system_has_library():
        pytest.skip("libratetrack.so.0 is installed system-wide")
    proc = _fresh(FIND.format(path=None, env={}))
    assert proc.returncode == 3, proc.stderr
    assert "RATETRACK_LIBRARY: not set" in proc.stdout
    assert "libratetrack.so.0" in proc.stdout


def test_a_library_without_the_symbols_is_passed_over(library_path: str) -> None:
    libc = ctypes.util.find_library("c")
    assert libc
    lib, where = _library.find_library(libc, {"RATETRACK_LIBRARY": library_path})
    assert where == library_path


def test_a_bad_load_in_a_fresh_process_names_all_places() -> None:
    if _system_has_library():
        pytest.skip("libratetrack.so.0 is installed system-wide")
    code = (
        "import ratetrack\n"
        "try:\n"
        "    ratetrack.global_tracker()\n"
        "except ratetrack.LibraryNotFound as e:\n"
        "    print(e)\n"
        "    raise SystemExit(3)\n"
    )
    proc = _fresh(code, RATETRACK_LIBRARY="/nonexistent/env.so")
    assert proc.returncode == 3, proc.stderr
    for place in ("$RATETRACK_LIBRARY '/nonexistent/env.so'", "system loader 'libratetrack.so.0'",
                  "bundled copy '%s'" % _library.BUNDLED):
        assert place in proc.stdout


def test_the_system_loader_is_the_last_resort(library_path: str) -> None:
    code = "import ratetrack, ratetrack._library as l; print(ratetrack.version(), l.loaded_from())"
    proc = _fresh(code, LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(library_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [ratetrack.version(), "libratetrack.so.0"]


def test_the_bundled_copy_is_next_to_the_package() -> None:
    assert _library.BUNDLED == os.path.join(os.path.dirname(ratetrack.__file__), "_lib", "libratetrack.so.0")


BUNDLED = """
from ratetrack import _library
lib, where = _library.find_library(None, {{}}, bundled={bundled!r})
print(where)
"""


def test_the_bundled_copy_comes_last(library_path: str) -> None:
    """With nothing named and no system library, the bundled copy is loaded."""
    if _system_has_library():
        pytest.skip("libratetrack.so.0 is installed system-wide: the system loader would find it")
    proc = _fresh(BUNDLED.format(bundled=library_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == library_path


def test_the_system_library_comes_before_the_bundled_copy(library_path: str) -> None:
    """So that C and Python in one process share one library (one global tracker)."""
    proc = _fresh(BUNDLED.format(bundled=library_path),
                  LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(library_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "libratetrack.so.0"


class _FakeLibrary:
    """A library of the given rt_version_number() with every symbol."""

    def __init__(self, number: int) -> None:
        self.rt_version_number = lambda: number

    def __getattr__(self, name: str) -> object:
        fn = types.SimpleNamespace()
        setattr(self, name, fn)
        return fn


def _fake_loader(versions: Dict[str, int]) -> Callable[[str], _FakeLibrary]:
    def cdll(name: str) -> _FakeLibrary:
        if name not in versions:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return _FakeLibrary(versions[name])
    return cdll


def test_a_system_library_of_another_version_is_passed_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    bundled = tmp_path / "libratetrack.so.0"
    bundled.write_bytes(b"")
    monkeypatch.setattr(ctypes, "CDLL", _fake_loader({"libratetrack.so.0": 200, str(bundled): 103}))
    lib, where = _library.find_library(None, {}, bundled=str(bundled))  # 0.2.0, then 0.1.3
    assert where == str(bundled)
    assert lib.rt_version_number() == 103


def test_a_named_library_of_another_version_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    bundled = tmp_path / "libratetrack.so.0"
    bundled.write_bytes(b"")
    monkeypatch.setattr(ctypes, "CDLL", _fake_loader({"/old/lib.so": 200, str(bundled): 103}))
    with pytest.raises(ratetrack.VersionMismatch, match="libratetrack 0.2.0"):
        _library.find_library("/old/lib.so", {}, bundled=str(bundled))
    with pytest.raises(ratetrack.VersionMismatch, match="libratetrack 0.2.0"):
        _library.find_library(None, {"RATETRACK_LIBRARY": "/old/lib.so"}, bundled=str(bundled))


def test_only_libraries_of_another_version(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """Nothing of this version loads: VersionMismatch, naming every place."""
    bundled = tmp_path / "libratetrack.so.0"
    bundled.write_bytes(b"")
    monkeypatch.setattr(ctypes, "CDLL", _fake_loader({"libratetrack.so.0": 200, str(bundled): 201}))
    with pytest.raises(ratetrack.VersionMismatch) as info:
        _library.find_library(None, {}, bundled=str(bundled))
    text = str(info.value)
    assert text.startswith("libratetrack 0.2.0")  # the first found
    assert "system loader 'libratetrack.so.0': libratetrack 0.2.0" in text
    assert "bundled copy %r: libratetrack 0.2.1" % str(bundled) in text
    assert "RATETRACK_LIBRARY: not set" in text


def test_the_env_var_in_a_fresh_process(library_path: str) -> None:
    code = "import ratetrack, ratetrack._library as l; ratetrack.load(); print(l.loaded_from())"
    proc = _fresh(code, RATETRACK_LIBRARY=library_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == library_path


def test_the_ex_functions_are_resolved_at_load(library_path: str) -> None:
    for name in ("rt_open_ex", "rt_global_get_ex", "rt_stats_json_ex"):
        assert name in _library._PROTOTYPES
        assert getattr(_library.load(), name).restype is ctypes.c_int
    # The NULL-only forms are not used: every failure kind comes from a status code.
    for name in ("rt_open", "rt_global_get", "rt_stats_json"):
        assert name not in _library._PROTOTYPES


def test_a_library_without_the_ex_functions_is_not_this_version(library_path: str) -> None:
    """An earlier build (every symbol but the *_ex ones, the provider-truth
    ones, or the metrics and shm ones) is refused by _declare, so find_library passes it over
    and names the missing symbol."""

    class EarlierBuild:
        def __init__(self, missing: str) -> None:
            self.missing = missing

        def __getattr__(self, name: str) -> object:
            if name == self.missing:
                raise AttributeError(f"earlier-build.so: undefined symbol: {name}")
            fn = types.SimpleNamespace()
            setattr(self, name, fn)
            return fn

    provider_truth = ("rt_try_acquire_io", "rt_settle_io", "rt_pick", "rt_observe_headers", "rt_report_limited")
    metrics_shm = ("rt_metrics_text", "rt_shm_list", "rt_shm_remove")
    for missing in ("rt_open_ex", "rt_global_get_ex", "rt_stats_json_ex") + provider_truth + metrics_shm:
        with pytest.raises(AttributeError, match=missing):
            _library._declare(EarlierBuild(missing))  # type: ignore[arg-type]
    real = ctypes.CDLL(library_path)
    _library._declare(real)  # the real library has them all


def test_lookup_order(library_path: str) -> None:
    _, where = _library.find_library(None, {"RATETRACK_LIBRARY": library_path})
    assert where == library_path
    _, where = _library.find_library(library_path, {"RATETRACK_LIBRARY": "/nonexistent/env.so"})
    assert where == library_path
    # A bad explicit path falls through to the next place in the lookup order.
    _, where = _library.find_library("/nonexistent/explicit.so", {"RATETRACK_LIBRARY": library_path})
    assert where == library_path


def test_version_mismatch_with_the_real_library(library_path: str) -> None:
    with pytest.raises(ratetrack.VersionMismatch) as info:
        _library.find_library(library_path, {}, binding=(0, 2))
    text = str(info.value)
    assert ratetrack.version() in text  # the library's version
    assert "0.2" in text  # the binding's


def test_version_info(library_path: str) -> None:
    assert ratetrack.version_number() // 100 == 1  # 0.1.x
    assert ratetrack.version().startswith("0.1.")
    assert ratetrack.version() == "0.1.%d" % (ratetrack.version_number() % 100)
    assert _library.loaded_from() == library_path
    assert ratetrack.status_string(0)
    assert ratetrack.status_string(-2)


def test_load_is_shared(library_path: str) -> None:
    assert _library.load() is _library.load("/ignored/after/first/load.so")
