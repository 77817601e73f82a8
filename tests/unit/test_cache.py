"""Content-addressed artifacts: keys, reuse, atomicity, sizes and pruning."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from imc_core.cache import (DONE, artifact_key, cached, clean_stale_temps, content_fingerprint, get_or_build,
                            list_artifacts, prune, unreferenced)
from imc_core.cli import main
from imc_core.errors import Cancelled, InputError
from imc_core.runs import referenced_artifacts


def test_key_depends_on_conf_inputs_and_fingerprint() -> None:
    k = artifact_key("features", {"a": 1}, ["x"], "fp")
    assert k == artifact_key("features", {"a": 1}, ["x"], "fp")
    assert k != artifact_key("features", {"a": 2}, ["x"], "fp")
    assert k != artifact_key("features", {"a": 1}, ["y"], "fp")
    assert k != artifact_key("features", {"a": 1}, ["x"], "fp2")
    assert k != artifact_key("matching", {"a": 1}, ["x"], "fp")


def test_a_rebuild_puts_the_new_artifact_in_place_before_deleting_the_old(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A `--no-cache` rebuild deleted the old copy before renaming the new one in: a concurrent run holding the
    path found no artifact there (16,465 of 83,985 opens failed in a tester's race on a 3,000-file artifact)."""
    import shutil

    import imc_core.cache as cache

    def build(d: Path) -> None:
        (d / "x.txt").write_text("x")

    art = get_or_build("features", "ds", "k", build, root=tmp_path)
    seen = []
    real_rmtree = shutil.rmtree

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name.startswith(".trash-"):
            seen.append((art.path / DONE).is_file())  # the new copy is there while the old one is deleted
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(cache.shutil, "rmtree", rmtree)
    again = get_or_build("features", "ds", "k", build, root=tmp_path, use_cache=False)
    assert not again.hit and seen == [True]
    assert not list(tmp_path.glob("features/.trash-*")) and (art.path / "x.txt").read_text() == "x"
    # the new copy cannot be put in place (or an interrupt comes between): the old one is put back, not lost
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".tmp-"):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        get_or_build("features", "ds", "k", build, root=tmp_path, use_cache=False)
    assert (art.path / DONE).is_file() and (art.path / "x.txt").read_text() == "x"
    assert not list(tmp_path.glob("features/.trash-*")) and not list(tmp_path.glob("features/.tmp-*"))


def test_an_unreadable_hit_is_rebuilt_in_place(tmp_path: Path) -> None:
    import sqlite3

    import h5py

    from imc_core.cache import h5_problem, sqlite_problem

    def build(d: Path) -> None:
        with h5py.File(d / "x.h5", "w") as f:
            f["a"] = list(range(5000))
        with sqlite3.connect(d / "x.db") as con:  # (the tables of a COLMAP database)
            for table in ("cameras", "images", "keypoints", "two_view_geometries"):
                con.execute(f"CREATE TABLE {table} (v BLOB)")
            con.execute("CREATE TABLE matches (v BLOB)")
            con.executemany("INSERT INTO matches VALUES (?)", [(b"x" * 4000,)] * 50)
        con.close()

    def check(d: Path) -> str | None:
        return h5_problem(d / "x.h5") or sqlite_problem(d / "x.db")

    a = get_or_build("matching", "ds", "k", build, root=tmp_path, check=check)
    assert check(a.path) is None and get_or_build("matching", "ds", "k", build, root=tmp_path, check=check).hit
    for name in ("x.h5", "x.db"):
        original = (a.path / name).read_bytes()
        (a.path / name).write_bytes(original[:len(original) // 3])
        problem = check(a.path)
        assert problem is not None and problem.startswith(name), problem
        again = get_or_build("matching", "ds", "k", build, root=tmp_path, check=check)
        # (the size recorded at build time tells first)
        assert not again.hit and again.rebuilt_because.startswith(f"{name} changed after it was built (")
        assert again.path == a.path
        assert check(a.path) is None
    assert get_or_build("matching", "ds", "k", build, root=tmp_path, check=check).rebuilt_because is None
    # emptied: SQLite opens a 0-byte file as a new database, and every pair then "failed" verification
    (a.path / "x.db").write_bytes(b"")
    assert check(a.path) == "x.db is empty"
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (v BLOB)")
    con.close()
    assert sqlite_problem(other) == "other.db is no COLMAP database (no table cameras, images, keypoints, matches, " \
                                    "two_view_geometries)"
    assert not list(tmp_path.glob("other.db-*"))  # read without a -shm or -wal file beside it


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


def test_unwritable_cache_is_a_clear_error_and_its_artifacts_still_read(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from imc_core.cache import CacheError

    get_or_build("features", "ds", "k", lambda d: (d / "f").write_text("kept"), root=tmp_path)
    real_mkdir = Path.mkdir

    def refuse(self: Path, *a, **k) -> None:  # what a read-only copy of the cache does (tests run as root)
        if tmp_path in self.parents or self == tmp_path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refuse)
    art = get_or_build("features", "ds", "k", lambda d: None, root=tmp_path)
    assert art.hit and (art.path / "f").read_text() == "kept"
    with pytest.raises(CacheError) as err:
        get_or_build("matching", "ds", "k2", lambda d: None, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "matching") in msg and "Permission denied" in msg and "IMC_CACHE_DIR" in msg
    assert "matching artifact of ds" in msg


def test_full_disk_during_a_build_is_a_clear_error_and_keeps_the_old_artifact(tmp_path: Path) -> None:
    import errno

    from imc_core.cache import CacheError

    get_or_build("matching", "ds", "k", lambda d: (d / "m").write_text("old"), root=tmp_path)

    def full(d: Path) -> None:
        (d / "m").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CacheError, match="is full while writing the matching artifact of ds.*cache prune"):
        get_or_build("matching", "ds", "k", full, root=tmp_path, use_cache=False)
    assert not list((tmp_path / "matching").glob(".tmp-*"))
    assert (tmp_path / "matching" / "ds-k" / "m").read_text() == "old"
    with pytest.raises(OSError) as other:  # an OSError that is not about space (an unreadable image) is left as is
        get_or_build("matching", "ds", "k3", lambda d: (_ for _ in ()).throw(
            PermissionError(errno.EACCES, "Permission denied", "img.jpg")), root=tmp_path)
    assert not isinstance(other.value, CacheError)


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


def test_clean_stale_temps_spares_a_build_still_writing(tmp_path: Path) -> None:
    tmp = tmp_path / "matching" / ".tmp-ds-k-1234"
    tmp.mkdir(parents=True)
    (tmp / "matches.h5.part").write_bytes(b"growing")
    old = time.time() - 7200
    os.utime(tmp, (old, old))  # the folder itself was created two hours ago; its file was written just now
    assert clean_stale_temps(tmp_path, older_than_s=3600) == 0 and tmp.exists()
    os.utime(tmp / "matches.h5.part", (old, old))
    assert clean_stale_temps(tmp_path, older_than_s=3600) == 1 and not tmp.exists()


def _age(path: Path, days: float) -> None:
    """Make the artifact at ``path`` look last used ``days`` ago."""
    t = time.time() - days * 86400
    os.utime(path / DONE, (t, t))


def _artifact(root: Path, stage: str, key: str, nbytes: int = 10, inputs: list[str] | None = None,
              days_old: float = 0.0) -> Path:
    art = get_or_build(stage, "ds", key, lambda d: (d / "data.bin").write_bytes(b"x" * nbytes), root=root,
                       meta={"inputs": inputs or [], "dataset": "ds"})
    _age(art.path, days_old)
    return art.path


def test_a_cache_hit_marks_the_artifact_used(tmp_path: Path) -> None:
    path = _artifact(tmp_path, "features", "k", days_old=30)
    assert time.time() - (path / DONE).stat().st_mtime > 29 * 86400
    assert get_or_build("features", "ds", "k", lambda d: None, root=tmp_path).hit
    assert time.time() - (path / DONE).stat().st_mtime < 60


def test_list_artifacts_sizes_and_skips_what_is_not_an_artifact(tmp_path: Path) -> None:
    _artifact(tmp_path, "features", "a", nbytes=1000)
    _artifact(tmp_path, "matching", "b", nbytes=30, inputs=["a"])
    (tmp_path / "features" / ".tmp-ds-c-1234").mkdir()  # a build in progress
    (tmp_path / "features" / "ds-torn").mkdir()  # no DONE marker
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "thumbs" / "x.jpg").write_bytes(b"jpg")
    entries = list_artifacts(tmp_path)
    assert [(e.stage, e.name, e.dataset, e.inputs) for e in entries] == [
        ("features", "ds-a", "ds", ()), ("matching", "ds-b", "ds", ("a",))]
    assert entries[0].size == 1000 + (tmp_path / "features" / "ds-a" / DONE).stat().st_size
    assert list_artifacts(tmp_path / "missing") == []


def test_prune_needs_a_criterion(tmp_path: Path) -> None:
    _artifact(tmp_path, "features", "a", days_old=100)
    with pytest.raises(ValueError, match="say what to prune"):
        prune(tmp_path)
    assert len(list_artifacts(tmp_path)) == 1


def test_prune_by_age_keeps_recent_and_in_grace(tmp_path: Path) -> None:
    old = _artifact(tmp_path, "features", "old", days_old=10)
    mid = _artifact(tmp_path, "features", "mid", days_old=3)
    new = _artifact(tmp_path, "features", "new")
    gone = prune(tmp_path, older_than_s=7 * 86400, dry_run=True)
    assert [e.name for e in gone] == ["ds-old"] and old.exists()  # dry run: nothing removed
    gone = prune(tmp_path, older_than_s=7 * 86400)
    assert [e.name for e in gone] == ["ds-old"] and not old.exists() and mid.exists() and new.exists()
    # --older-than 0 still spares what was used within the grace period (a running pipeline may read it)
    assert [e.name for e in prune(tmp_path, older_than_s=0)] == ["ds-mid"] and new.exists()
    assert not list((tmp_path / "features").glob(".trash-*"))


def test_prune_by_stage(tmp_path: Path) -> None:
    _artifact(tmp_path, "features", "f", days_old=10)
    _artifact(tmp_path, "matching", "m", days_old=10)
    assert [e.stage for e in prune(tmp_path, older_than_s=86400, stages=["matching"])] == ["matching"]
    assert [e.stage for e in list_artifacts(tmp_path)] == ["features"]
    # a killed build's leftovers go with their own stage only
    for stage in ("features", "matching"):
        (tmp_path / stage / ".tmp-ds-x-1").mkdir()
    old = time.time() - 7200
    os.utime(tmp_path / "features" / ".tmp-ds-x-1", (old, old))
    os.utime(tmp_path / "matching" / ".tmp-ds-x-1", (old, old))
    prune(tmp_path, older_than_s=86400, stages=["matching"])
    assert (tmp_path / "features" / ".tmp-ds-x-1").exists() and not (tmp_path / "matching" / ".tmp-ds-x-1").exists()


def test_unreferenced_keeps_named_artifacts_and_their_verified_database(tmp_path: Path) -> None:
    _artifact(tmp_path, "features", "f1", days_old=5)
    _artifact(tmp_path, "matching", "m1", inputs=["f1"], days_old=5)
    _artifact(tmp_path, "reconstruction", "r1", inputs=["m1", "f1"], days_old=5)
    _artifact(tmp_path, "database", "d1", inputs=["m1", "f1"], days_old=5)
    _artifact(tmp_path, "features", "f2", days_old=5)  # from a run that was deleted
    _artifact(tmp_path, "database", "d2", inputs=["m2", "f2"], days_old=5)
    referenced = {("features", "ds-f1"), ("matching", "ds-m1"), ("reconstruction", "ds-r1")}
    assert [e.name for e in unreferenced(list_artifacts(tmp_path), referenced)] == ["ds-d2", "ds-f2"]
    gone = prune(tmp_path, referenced=referenced)
    assert sorted(e.name for e in gone) == ["ds-d2", "ds-f2"]
    assert sorted(e.name for e in list_artifacts(tmp_path)) == ["ds-d1", "ds-f1", "ds-m1", "ds-r1"]
    # both criteria: unreferenced AND old
    _artifact(tmp_path, "features", "f3", days_old=1)
    assert prune(tmp_path, referenced=referenced, older_than_s=2 * 86400) == []
    # --stage only narrows what may go: d1 stays for r1 (filtered first, the reconstructions went unseen and every
    # verified database looked unused)
    assert prune(tmp_path, referenced=referenced, stages=["database"], dry_run=True) == []


def test_a_damaged_marker_keeps_the_databases_and_models_of_its_dataset(tmp_path: Path) -> None:
    """A ``DONE`` emptied or damaged lost its inputs, so `cache prune --unused` could not tell which reconstruction
    a verified database or mapped model belonged to, and removed it: the next mapping change mapped again."""
    _artifact(tmp_path, "features", "f1", days_old=5)
    _artifact(tmp_path, "matching", "m1", inputs=["f1"], days_old=5)
    rec = _artifact(tmp_path, "reconstruction", "r1", inputs=["m1", "f1"], days_old=5)
    db = _artifact(tmp_path, "database", "d1", inputs=["m1", "f1"], days_old=5)
    mapped = _artifact(tmp_path, "mapping", "p1", inputs=["d1"], days_old=5)
    other = tmp_path / "database" / "other-d9"  # a dataset no run names: its damaged database may go
    other.mkdir()
    (other / DONE).write_text("")
    _age(other, 5)
    referenced = {("features", "ds-f1"), ("matching", "ds-m1"), ("reconstruction", "ds-r1")}
    assert sorted(e.name for e in unreferenced(list_artifacts(tmp_path), referenced)) == ["ds-p1", "other-d9"]
    for damaged in (db, mapped):  # the database's or model's own marker
        (damaged / DONE).write_text("{not json")
        _age(damaged, 5)
    assert [e.name for e in unreferenced(list_artifacts(tmp_path), referenced)] == ["other-d9"]
    (rec / DONE).write_text("")  # the reconstruction's: which database is its own is unknown, so all stay
    _age(rec, 5)
    (db / DONE).write_text(json.dumps({"inputs": ["m7", "f7"]}))
    _age(db, 5)
    assert [e.name for e in unreferenced(list_artifacts(tmp_path), referenced)] == ["other-d9"]
    assert [e.name for e in prune(tmp_path, referenced=referenced)] == ["other-d9"]
    # the next hit writes back what the build wrote (its inputs), so the marker says it again
    (db / DONE).write_text("")
    assert get_or_build("database", "ds", "d1", lambda d: None, root=tmp_path,
                        meta={"inputs": ["m1", "f1"], "dataset": "ds"}).hit
    marker = json.loads((db / DONE).read_text())
    assert marker["key"] == "d1" and marker["inputs"] == ["m1", "f1"] and "data.bin" in marker["files"]


def _run_dir(runs: Path, name: str, artifacts: object) -> Path:
    d = runs / name
    d.mkdir(parents=True)
    (d / "run.json").write_text("{}")
    (d / "artifacts.json").write_text(json.dumps(artifacts))
    return d


def test_referenced_artifacts_reads_every_run_by_folder_name(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run_dir(runs, "a", {"ETs": {"features": "/elsewhere/cache/features/ETs-1", "matching": "C:\\c\\matching\\ETs-2"}})
    _run_dir(runs, "b", {"ETs": {"features": "/work/cache/features/ETs-1"}, "k": {"reconstruction": "/x/k-3"}})
    (runs / "no-artifacts").mkdir()
    assert referenced_artifacts(runs) == {("features", "ETs-1"), ("matching", "ETs-2"), ("reconstruction", "k-3")}
    # a mistyped runs folder must not make every artifact look unused to `cache prune --unused`
    with pytest.raises(InputError, match="runs folder not found"):
        referenced_artifacts(tmp_path / "none")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(InputError, match="runs folder is not a folder"):
        referenced_artifacts(tmp_path / "a_file")
    (tmp_path / "c").mkdir()
    assert main(["cache", "prune", "--unused", "--dry-run", "--cache-dir", str(tmp_path / "c"),
                 "--runs-dir", str(tmp_path / "typo")]) == 2
    # a mistyped stage pruned nothing and said nothing
    assert main(["cache", "prune", "--older-than", "0", "--stage", "featres", "--cache-dir", str(tmp_path / "c")]) == 2
    assert main(["cache", "prune", "--older-than", "0", "--stage", "features", "--cache-dir", str(tmp_path / "c"),
                 "--dry-run"]) == 0
    # the images' fingerprint memo is no stage (taken, nothing went); --json is the listing's (it was ignored)
    (tmp_path / "c" / "fingerprints").mkdir()
    assert main(["cache", "prune", "--older-than", "0", "--stage", "fingerprints", "--cache-dir",
                 str(tmp_path / "c")]) == 2
    assert main(["cache", "prune", "--older-than", "0", "--json", "--cache-dir", str(tmp_path / "c")]) == 2
    bad = _run_dir(runs, "c", ["not", "a", "mapping"])
    with pytest.raises(InputError, match="cannot tell which cache artifacts") as err:
        referenced_artifacts(runs)
    assert str(bad / "artifacts.json") in str(err.value)


def test_a_run_from_before_artifacts_json_keeps_its_datasets_artifacts(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """Runs of an imc-lab from before artifacts.json name no artifact: `cache prune --unused` removed everything
    they read (58 MB of one tester's ETs runs). Every artifact of the datasets they read from the cache stays."""
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    _artifact(cache, "features", "old", days_old=3)
    _artifact(cache, "matching", "old2", inputs=["old"], days_old=3)
    other = get_or_build("features", "k", "x", lambda d: None, root=cache).path
    _age(other, 3)
    _run_dir(runs, "new", {"k": {"features": "/c/features/k-elsewhere"}})
    old = runs / "old"
    old.mkdir()
    (old / "run.json").write_text("{}")
    (old / "timings.json").write_text(json.dumps({"cache": {"ds": {"pairs": "computed", "features": "hit",
                                                                   "matching": "miss"}}}))
    (runs / "refused").mkdir()  # a run that read nothing (no timings) needs nothing
    (runs / "refused" / "run.json").write_text("{}")
    assert ("*", "ds") in referenced_artifacts(runs) and ("*", "refused") not in referenced_artifacts(runs)
    assert referenced_artifacts(old) == {("*", "ds")}  # the run folder itself (--runs-dir RUN_DIR)
    assert referenced_artifacts(runs / "refused") == set()
    assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir", str(runs)]) == 0
    out, err = capsys.readouterr()
    assert "every artifact of ds stays" in err and "removed 1 artifact(s)" in out
    assert [e.name for e in list_artifacts(cache)] == ["ds-old", "ds-old2"]


def test_cache_cli_lists_and_prunes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    kept = _artifact(cache, "features", "keep", nbytes=2 * 1024**2, days_old=3)
    stale = _artifact(cache, "features", "stale", nbytes=1024**2, days_old=3)
    _run_dir(runs, "r", {"ds": {"features": str(kept)}})
    # a mistyped cache folder said "no artifacts" (or "would remove 0"); the default one may not exist yet
    for typo, problem in ((tmp_path / "cahce", "cache folder not found"),
                          (runs / "r" / "run.json", "the cache folder is not a folder")):
        for cmd in (["cache"], ["cache", "prune", "--older-than", "0", "--dry-run"]):
            assert main([*cmd, "--cache-dir", str(typo)]) == 2
            assert capsys.readouterr().err.strip() == f"error: {typo}: {problem}"
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "features" in out and "3.0 MB" in out and "total" in out
    assert main(["cache", "--cache-dir", str(cache), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["stages"]["features"]["artifacts"] == 2 and listed["bytes"] > 3 * 1024**2
    assert main(["cache", "prune", "--cache-dir", str(cache)]) == 2  # no criterion: refuse, remove nothing
    assert "say what to remove" in capsys.readouterr().err and stale.exists()
    # an empty runs folder (a wrong IMC_RUNS_DIR) made every artifact "unused": refused, even as a dry run
    (tmp_path / "empty_runs").mkdir()
    for dry in ([], ["--dry-run"]):
        assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir",
                     str(tmp_path / "empty_runs"), *dry]) == 2
        assert "no run in " in capsys.readouterr().err and stale.exists() and kept.exists()
    # a run written elsewhere (`run --out`) protects its artifacts when named, beside a runs folder
    _run_dir(tmp_path / "elsewhere", "solo", {"ds": {"features": str(stale)}})
    assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir", str(runs), "--runs-dir",
                 str(tmp_path / "elsewhere" / "solo"), "--dry-run"]) == 0
    assert "would remove 0 artifact(s)" in capsys.readouterr().out
    assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir", str(runs), "--dry-run"]) == 0
    assert "would remove features/ds-stale" in capsys.readouterr().out and stale.exists()
    assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir", str(runs)]) == 0
    assert "removed 1 artifact(s), 1.0 MB" in capsys.readouterr().out
    assert kept.exists() and not stale.exists()
    _run_dir(runs, "broken", "{")  # a run whose needs are unknown: nothing may go
    (runs / "broken" / "artifacts.json").write_text("{")
    assert main(["cache", "prune", "--unused", "--cache-dir", str(cache), "--runs-dir", str(runs)]) == 2
    assert "artifacts.json" in capsys.readouterr().err and kept.exists()
    fresh = _artifact(cache, "matching", "fresh")  # just built: the grace period keeps it unless told otherwise
    assert main(["cache", "prune", "--older-than", "0", "--stage", "matching", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "removed 0 artifact(s)" in out and fresh.exists()
    # and says so: "0" read as "nothing is unused" right after runs were removed (a tester)
    assert "kept 1 more artifact(s), 0.0 MB, that match but were built or used in the last 1 h (a run may be reading " \
           "them): --grace-hours 0 includes them" in out
    assert main(["cache", "prune", "--older-than", "0", "--stage", "matching", "--grace-hours", "0",
                 "--cache-dir", str(cache)]) == 0
    assert "removed matching/ds-fresh" in capsys.readouterr().out and not fresh.exists()
    with pytest.raises(SystemExit) as exc:
        main(["cache", "prune", "--older-than", "-1", "--cache-dir", str(cache)])
    assert exc.value.code == 2 and "must be a number ≥ 0" in capsys.readouterr().err


def test_cache_listing_counts_temporary_folders_and_prune_says_it_cleared_them(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run killed mid-build left a .tmp-* folder of features: `cache` said "no artifacts" while it held the
    disk, and `cache prune` cleared it without a word."""
    cache = tmp_path / "cache"
    left = cache / "features" / ".tmp-ds-0123456789abcdef-1a2b3c4d"
    left.mkdir(parents=True)
    (left / "features.h5").write_bytes(b"x" * 2 * 1024**2)
    old = time.time() - 2 * 3600
    for p in (left / "features.h5", left):
        os.utime(p, (old, old))
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "no artifacts" in out and "1 temporary folder(s), 2.0 MB" in out
    assert main(["cache", "--cache-dir", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["temporary"] == {"folders": 1, "bytes": 2 * 1024**2}
    building = _artifact(cache, "matching", "keep").parent / ".tmp-ds-fedcba9876543210-00000000"  # a build at work
    building.mkdir()
    (building / "matches.h5").write_bytes(b"y" * 1024)
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache), "--dry-run"]) == 0
    assert "would clear 1 temporary folder(s) left by killed runs, 2.0 MB" in capsys.readouterr().out
    assert left.exists()
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache)]) == 0
    assert "cleared 1 temporary folder(s) left by killed runs, 2.0 MB" in capsys.readouterr().out
    assert not left.exists() and building.exists()
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    assert "1 temporary folder(s), 0.0 MB" in capsys.readouterr().out


def test_an_artifact_folder_whose_marker_is_gone_is_listed_and_cleared(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """An artifact whose DONE was removed by hand was in no listing and no prune: never read again, never freed
    (`cache` said 81.2 MB where `du` said 85 MB; a tester)."""
    from imc_core.cache import list_leftovers

    cache = tmp_path / "cache"
    lost = _artifact(cache, "mapping", "lost", nbytes=2 * 1024**2)
    kept = _artifact(cache, "mapping", "kept")
    (lost / DONE).unlink()
    (cache / "thumbs").mkdir()  # (the dashboard's thumbnails and the fingerprint memo are no stage: never listed)
    (cache / "thumbs" / "t.jpg").write_bytes(b"j")
    (cache / "fingerprints").mkdir()
    assert [(t.path, t.incomplete) for t in list_leftovers(cache)] == [(lost, True)]
    assert [e.name for e in list_artifacts(cache)] == ["ds-kept"]
    assert main(["cache", "--cache-dir", str(cache)]) == 0
    assert "1 temporary folder(s), 2.0 MB, newest write" in (out := capsys.readouterr().out)
    assert "1 artifact folder(s) whose DONE marker is gone (never read again)" in out
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache)]) == 0
    assert lost.exists()  # (written within the grace hour: it could be a build's)
    old = time.time() - 2 * 3600
    for p in (lost / "data.bin", lost):
        os.utime(p, (old, old))
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache), "--stage", "features"]) == 0
    assert lost.exists()  # (another stage's)
    capsys.readouterr()
    assert main(["cache", "prune", "--older-than", "30", "--cache-dir", str(cache)]) == 0
    assert "cleared 1 temporary folder(s) left by killed runs or without their DONE marker (1), 2.0 MB" \
        in capsys.readouterr().out
    assert not lost.exists() and (kept / DONE).is_file() and (cache / "thumbs" / "t.jpg").is_file()
    # a run that needs the key builds it anew, as before
    again = get_or_build("mapping", "ds", "lost", lambda d: (d / "data.bin").write_bytes(b"z"), root=cache)
    assert not again.hit and (again.path / DONE).is_file()


def test_a_build_another_process_finished_first_is_not_a_hit(tmp_path: Path) -> None:
    """Two runs of one config at once: the slower one kept the other's artifact and said "cache hit, 0.0 s" for
    the work it did."""
    key = artifact_key("features", {"x": 1}, [], "fp")

    def build(folder: Path) -> None:
        (folder / "mine.txt").write_text("mine")
        other = get_or_build("features", "ds", key, lambda f: (f / "theirs.txt").write_text("theirs"), root=tmp_path)
        assert not other.hit  # the other process, finishing while this one builds
        time.sleep(0.05)

    art = get_or_build("features", "ds", key, build, root=tmp_path)
    assert not art.hit and art.seconds >= 0.05
    assert [p.name for p in art.path.iterdir() if p.name != DONE] == ["theirs.txt"]  # theirs is kept


def _a_live_runs_cache(tmp_path: Path) -> tuple[Path, Path, Path, Path, Path, Path]:
    """A cache and runs folder as a live run that started an hour ago sees them: ``(cache, runs, kept, new,
    building, old)``: an artifact a finished run names, one the live run built 30 min ago, its build folder at work
    (last written 10 min ago), and an unused artifact from before it."""
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    kept = _artifact(cache, "features", "keep", days_old=3)
    _run_dir(runs, "done", {"ds": {"features": str(kept)}})
    new = _artifact(cache, "matching", "new", days_old=0.5 / 24)
    building = cache / "reconstruction" / ".tmp-ds-x-1"
    building.mkdir(parents=True)
    os.utime(building, (time.time() - 600, time.time() - 600))
    old = _artifact(cache, "features", "old", days_old=3)
    return cache, runs, kept, new, building, old


def test_prune_keeps_what_a_run_still_at_work_built(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cache prune --unused --grace-hours 0` during a run removed the matches it had just built and its
    reconstruction's temporary folder: the run failed. What the cache got since a live run started now stays."""
    import datetime as dt
    import subprocess
    import sys

    from imc_core.runs import RunWriter

    cache, runs, kept, new, building, old = _a_live_runs_cache(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "imc_core"])
    try:
        started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
        RunWriter(runs / "live").write_meta(id="live", status="running", created=started, pid=proc.pid)
        _wait_cmdline(proc, "imc_core")
        assert main(["cache", "prune", "--unused", "--grace-hours", "0", "--cache-dir", str(cache),
                     "--runs-dir", str(runs)]) == 0
    finally:
        proc.kill()
        proc.wait()
    captured = capsys.readouterr()
    assert "a run is still at work" in captured.err
    assert new.exists() and building.exists() and kept.exists() and not old.exists()
    # the artifact kept is said kept for the run at work (it read "in the last 1.01667 h (...): --grace-hours 0
    # includes them" to one who had given --grace-hours 0)
    assert "kept 1 more artifact(s), 0.0 MB, that match but were built or used since the run still at work " \
           "started (" in captured.out and "they stay while it runs" in captured.out, captured.out


def test_prune_keeps_what_a_run_written_elsewhere_built(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run with `--out` outside the runs folders prune was told about lost its artifacts and its temporary build
    folder to `cache prune --unused --grace-hours 0`, and died: a run at work says so in the cache itself, and
    prune keeps what the cache got since it started; a record left by a killed run is removed. A run folder named
    by --runs-dir is read as a run."""
    import datetime as dt

    from imc_core.cache import LIVE, live_runs, register_live_run, release_live_run
    from imc_core.runs import RunWriter

    cache, runs, kept, new, building, old = _a_live_runs_cache(tmp_path)
    record = register_live_run(tmp_path / "elsewhere", root=cache)  # (this process: alive)
    assert record is not None
    info = json.loads(record.read_text())
    record.write_text(json.dumps({**info, "started": time.time() - 3600}))
    dead = cache / LIVE / "1-dead.json"
    dead.write_text(json.dumps({**info, "pid": 2**22 + 12345, "started": time.time() - 86400}))
    assert [r["run_dir"] for r in live_runs(cache)] == [str(tmp_path / "elsewhere")] and dead.exists()
    other = cache / LIVE / "2-other-host.json"  # a run on another machine sharing the cache: taken at its word
    other.write_text(json.dumps({**info, "pid": 2**22 + 1, "host": "another-machine", "started": time.time() - 60}))
    assert len(live_runs(cache)) == 2
    assert main(["cache", "prune", "--unused", "--grace-hours", "0", "--cache-dir", str(cache),
                 "--runs-dir", str(runs), "--dry-run"]) == 0
    assert dead.exists()  # (a dry run changes nothing)
    assert main(["cache", "prune", "--unused", "--grace-hours", "0", "--cache-dir", str(cache),
                 "--runs-dir", str(runs)]) == 0
    assert "a run is still at work" in capsys.readouterr().err
    assert not dead.exists() and other.exists()
    other.unlink()
    assert new.exists() and building.exists() and kept.exists() and not old.exists()
    release_live_run(record)
    assert live_runs(cache) == [] and not record.exists()
    # a run folder named by itself, live: what the cache got since it started stays too
    started = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    RunWriter(tmp_path / "solo").write_meta(id="solo", status="running", created=started, pid=os.getpid(),
                                            pid_start=_own_start())
    assert main(["cache", "prune", "--older-than", "0", "--grace-hours", "0", "--cache-dir", str(cache),
                 "--runs-dir", str(tmp_path / "solo")]) == 0
    assert "a run is still at work" in capsys.readouterr().err
    assert new.exists() and not kept.exists()


def _own_start() -> int | None:
    from imc_core.liveness import process_start

    return process_start(os.getpid())


def _wait_cmdline(proc: Any, text: str) -> None:
    """Wait until ``proc`` shows its own command line (right after the fork /proc shows the parent's)."""
    deadline = time.monotonic() + 20
    while text not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_folder_removed_while_the_listing_walks_it_is_skipped(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A build renamed into place or a prune's trash removed while `cache` (or the Run page's cache line) walked a
    temporary folder: Path.rglob raised FileNotFoundError and the whole listing failed ("file not found")."""
    import shutil

    from imc_core.cache import _tree_stats

    top = tmp_path / ".trash-x"
    (top / "a").mkdir(parents=True)
    (top / "a" / "f").write_bytes(b"12345")
    (top / "b" / "sub").mkdir(parents=True)
    (top / "b" / "sub" / "g").write_bytes(b"123")
    real = os.scandir

    class Listed:  # a scandir iterator over entries read before the removal
        def __init__(self, entries: list[os.DirEntry[str]]) -> None:
            self._it = iter(entries)

        def __iter__(self) -> Listed:
            return self

        def __next__(self) -> os.DirEntry[str]:
            return next(self._it)

        def __enter__(self) -> Listed:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def close(self) -> None:
            pass

    listed: list[os.DirEntry[str]] = []

    def scandir(path: Any = ".") -> Any:
        if isinstance(path, int) or Path(path) != top:
            return real(path)
        if not listed:  # top is listed with b, then b is removed before the walk goes into it
            with real(path) as it:
                listed.extend(it)
            shutil.rmtree(top / "b")
        return Listed(listed)

    monkeypatch.setattr(os, "scandir", scandir)
    size, latest = _tree_stats(top)
    assert size == 5 and latest > 0


def test_a_file_changed_in_place_after_its_build_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes overwritten in place, or an HDF5 group deleted with h5py: the file still opened, and its data were
    read as the artifact's (a pair group gone from matches.h5 read as "no matches"; the run scored above 100)."""
    import h5py

    from imc_core import cache as cache_mod
    from imc_core.cache import FILES, files_problem

    builds = []

    def build(d: Path) -> None:
        builds.append(d)
        with h5py.File(d / "matches.h5", "w") as f:
            for k in range(20):
                f.create_dataset(f"a/b{k}", data=list(range(200)))
        (d / "sub").mkdir()
        (d / "sub" / "notes.txt").write_text("x" * 100)

    a = get_or_build("matching", "ds", "k", build, root=tmp_path, check=None)
    records = json.loads((a.path / DONE).read_text())[FILES]
    assert set(records) == {"matches.h5", "sub/notes.txt"} and all(len(r["sha256"]) == 64 for r in records.values())
    assert files_problem(a.path) is None and get_or_build("matching", "ds", "k", build, root=tmp_path).hit

    with h5py.File(a.path / "matches.h5", "r+") as f:  # a group deleted: the file keeps its size and opens
        del f["a/b3"]
    assert (a.path / "matches.h5").stat().st_size == records["matches.h5"]["size"]
    again = get_or_build("matching", "ds", "k", build, root=tmp_path)
    assert not again.hit and len(builds) == 2
    assert again.rebuilt_because == "matches.h5 changed after it was built (its content differs from the checksum " \
                                   "taken then)"
    with h5py.File(again.path / "matches.h5") as f:
        assert "b3" in f["a"]

    (a.path / "sub" / "notes.txt").unlink()
    assert files_problem(a.path) == "sub/notes.txt is missing"
    assert not get_or_build("matching", "ds", "k", build, root=tmp_path).hit

    # touched (a copy of the cache without its times): read once, then its new time is recorded
    hashed = []
    real = cache_mod._sha256
    monkeypatch.setattr(cache_mod, "_sha256", lambda p: hashed.append(p.name) or real(p))
    os.utime(a.path / "matches.h5", (1, 1))
    assert get_or_build("matching", "ds", "k", build, root=tmp_path).hit and hashed == ["matches.h5"]
    assert get_or_build("matching", "ds", "k", build, root=tmp_path).hit and hashed == ["matches.h5"]
    assert len(builds) == 3
    # an artifact built before the records were kept is recorded at its first use, and checked from then on
    meta = json.loads((a.path / DONE).read_text())
    del meta[FILES]
    (a.path / DONE).write_text(json.dumps(meta))
    (a.path / "sub" / "notes.txt").write_text("y" * 100)
    assert files_problem(a.path) is None
    assert set(json.loads((a.path / DONE).read_text())[FILES]) == {"matches.h5", "sub/notes.txt"}
    (a.path / "sub" / "notes.txt").write_text("z" * 100)
    assert files_problem(a.path) == "sub/notes.txt changed after it was built (its content differs from the " \
                                    "checksum taken then)"
    # so is one whose marker is empty or damaged (it had stayed unchecked at every use)
    for marker, char in (("", "u"), ("{not json", "v"), ("[1, 2]", "w")):
        (a.path / DONE).write_text(marker)
        assert files_problem(a.path) is None
        assert set(json.loads((a.path / DONE).read_text())[FILES]) == {"matches.h5", "sub/notes.txt"}
        (a.path / "sub" / "notes.txt").write_text(char * 100)
        assert "sub/notes.txt changed after it was built" in files_problem(a.path)
    # SQLite's side files are never recorded (a plain open of the database removes them), nor checked if they were
    (a.path / "x.db-wal").write_bytes(b"")
    (a.path / "x.db-shm").write_bytes(b"s" * 10)
    assert set(cache_mod.file_records(a.path)) == {"matches.h5", "sub/notes.txt"}
    meta = json.loads((a.path / DONE).read_text())
    meta[FILES] = {**cache_mod.file_records(a.path), "x.db-shm": {"size": 10, "mtime_ns": 1, "sha256": "0" * 64}}
    (a.path / DONE).write_text(json.dumps(meta))
    (a.path / "x.db-shm").unlink()
    assert files_problem(a.path) is None


def test_two_processes_publishing_one_key_at_once_keep_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other process renamed its build into place between this one's check and its rename: os.replace failed
    with 'Directory not empty' after all the work (5 of 30 keys in a tester's race)."""
    from imc_core import cache as cache_mod

    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(src).name.startswith(".tmp-") and not Path(dst).exists():  # theirs lands first
            theirs = Path(dst)
            theirs.mkdir()
            (theirs / "x.txt").write_text("theirs")
            (theirs / DONE).write_text("{}")
        real(src, dst)

    monkeypatch.setattr(cache_mod.os, "replace", replace)
    art = get_or_build("features", "ds", "k", lambda d: (d / "x.txt").write_text("mine"), root=tmp_path)
    assert not art.hit and (art.path / "x.txt").read_text() == "theirs"
    assert [p.name for p in (tmp_path / "features").iterdir()] == ["ds-k"]  # no temporary folder left


def test_content_fingerprint_follows_bytes_not_times_and_is_remembered(tmp_path: Path) -> None:
    from imc_core.data import fingerprint_files

    cache = tmp_path / "cache"
    images = tmp_path / "a"
    images.mkdir()
    for name, data in (("x.png", b"one"), ("y.png", b"two")):
        (images / name).write_bytes(data)
    names = ["x.png", "y.png"]
    stat_fp = fingerprint_files(images, names)
    fp = content_fingerprint(images, names, root=cache)
    assert (cache / "fingerprints" / stat_fp).read_text().strip() == fp
    # a copy elsewhere with other times: another cheap fingerprint, the same content fingerprint
    copy = tmp_path / "b"
    copy.mkdir()
    for name in names:
        (copy / name).write_bytes((images / name).read_bytes())
        os.utime(copy / name, ns=(1_000_000_000, 1_000_000_000))
    copy_stat = fingerprint_files(copy, names)
    assert copy_stat != stat_fp
    assert content_fingerprint(copy, names, root=cache) == fp
    # remembered: the memo answers without reading the images
    (cache / "fingerprints" / copy_stat).write_text("f" * 64)
    assert content_fingerprint(copy, names, root=cache) == "f" * 64
    # other bytes, or a renamed image, give another fingerprint
    (images / "y.png").write_bytes(b"TWO")
    assert content_fingerprint(images, names, root=cache) != fp
    (images / "z.png").write_bytes(b"one")
    assert content_fingerprint(images, ["y.png", "z.png"], root=cache) != fp
    # an image that cannot be read is named; a cache that cannot take the memo still answers
    (copy / "x.png").unlink()
    with pytest.raises(InputError, match="x.png"):
        content_fingerprint(copy, names, root=cache)
    (tmp_path / "file").write_text("")
    assert content_fingerprint(images, names, root=tmp_path / "file") == content_fingerprint(
        images, names, root=cache)


def test_a_fingerprint_read_while_an_image_changed_is_not_remembered(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An image edited while it was read, then put back with its old time, found the edited bytes' fingerprint
    remembered under its own names, sizes and times: the next run would have reused features of other bytes."""
    import imc_core.cache
    from imc_core.data import fingerprint_files

    images = tmp_path / "a"
    images.mkdir()
    (images / "x.png").write_bytes(b"one")
    before = fingerprint_files(images, ["x.png"])
    real = imc_core.cache._sha256

    def edited_meanwhile(path: Path) -> str:
        digest = real(path)
        (images / "x.png").write_bytes(b"edited")
        return digest

    monkeypatch.setattr(imc_core.cache, "_sha256", edited_meanwhile)
    content_fingerprint(images, ["x.png"], root=tmp_path / "cache")
    assert not (tmp_path / "cache" / "fingerprints" / before).exists()
