"""Content-addressed artifacts: keys, reuse, atomicity."""

from __future__ import annotations

from pathlib import Path

import pytest

from imc_core.cache import DONE, artifact_key, cached, clean_stale_temps, get_or_build
from imc_core.errors import Cancelled


def test_key_depends_on_conf_inputs_and_fingerprint() -> None:
    k = artifact_key("features", {"a": 1}, ["x"], "fp")
    assert k == artifact_key("features", {"a": 1}, ["x"], "fp")
    assert k != artifact_key("features", {"a": 2}, ["x"], "fp")
    assert k != artifact_key("features", {"a": 1}, ["y"], "fp")
    assert k != artifact_key("features", {"a": 1}, ["x"], "fp2")
    assert k != artifact_key("matching", {"a": 1}, ["x"], "fp")


def test_build_once_then_hit(tmp_path: Path) -> None:
    calls = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "out.txt").write_text("hello")

    a = get_or_build("features", "ds", "k1", build, root=tmp_path)
    b = get_or_build("features", "ds", "k1", build, root=tmp_path)
    assert not a.hit and b.hit and len(calls) == 1
    assert a.path == b.path and (b.path / "out.txt").read_text() == "hello"
    assert (b.path / DONE).is_file()
    c = get_or_build("features", "ds", "k1", build, root=tmp_path, use_cache=False)
    assert not c.hit and len(calls) == 2


def test_failed_build_leaves_no_artifact_and_keeps_old(tmp_path: Path) -> None:
    get_or_build("matching", "ds", "k", lambda d: (d / "m").write_text("old"), root=tmp_path)

    def boom(d: Path) -> None:
        (d / "m").write_text("half")
        raise Cancelled("stop")

    with pytest.raises(Cancelled):
        get_or_build("matching", "ds", "k", boom, root=tmp_path, use_cache=False)
    art = get_or_build("matching", "ds", "k", boom, root=tmp_path)
    assert art.hit and (art.path / "m").read_text() == "old"
    with pytest.raises(RuntimeError):
        get_or_build("matching", "ds", "other", lambda d: (_ for _ in ()).throw(RuntimeError("x")), root=tmp_path)
    assert not list((tmp_path / "matching").glob(".tmp-*"))
    assert not (tmp_path / "matching" / "ds-other").exists()


def test_folder_without_done_marker_is_rebuilt(tmp_path: Path) -> None:
    torn = tmp_path / "features" / "ds-k"
    torn.mkdir(parents=True)
    (torn / "features.h5").write_text("torn")
    art = get_or_build("features", "ds", "k", lambda d: (d / "features.h5").write_text("good"), root=tmp_path)
    assert not art.hit and (art.path / "features.h5").read_text() == "good"


def test_cached_looks_up_without_building(tmp_path: Path) -> None:
    assert cached("s", "ds", "k1", root=tmp_path) is None
    art = get_or_build("s", "ds", "k1", lambda d: (d / "f").write_text("x"), root=tmp_path)
    assert cached("s", "ds", "k1", root=tmp_path) == art.path
    (art.path / DONE).unlink()  # unfinished: not an artifact
    assert cached("s", "ds", "k1", root=tmp_path) is None
    assert cached("s", "other", "k1", root=tmp_path) is None


def test_clean_stale_temps(tmp_path: Path) -> None:
    (tmp_path / "features" / ".tmp-ds-k-1234").mkdir(parents=True)
    assert clean_stale_temps(tmp_path, older_than_s=-1) == 1
