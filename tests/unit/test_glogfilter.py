"""COLMAP's INFO and WARNING lines kept off stderr by a filter process (imc_core.glogfilter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imc_core.glogfilter import drop_glog_lines, drop_stray_resets, filtered, glog_lines_dropped

REPO = Path(__file__).resolve().parents[2]
GLOG = (b"I20261127 03:25:20.447185 140190974651264 bundle_adjustment.cc:46] === Global bundle adjustment ===\n"
        b"W20261127 03:25:20.493426 140190974651264 timer.cc:90] Elapsed time: 0.001 [minutes]\n")


def _filtered(stream: bytes, size: int) -> bytes:
    """What the filter lets through of ``stream`` read in chunks of ``size`` bytes, its last unfinished line too."""
    out, tail = b"", b""
    for i in range(0, len(stream), size):
        chunk, tail = drop_glog_lines(stream[i:i + size], tail)
        out += chunk
    return out + tail


def test_glog_lines_are_dropped_and_everything_else_passes_in_order() -> None:
    stream = (b"\rETs/features 3/22" + b"\n" + GLOG + b"warning: kept\nE20261127 03:25:20.1 1 x.cc:1] an error\n"
              + b"E20261129 05:25:46.994266 139726264727232 pose_prior.cc:101] Unknown EXIF orientation: 0\n"
              + b"E20261129 05:47:13.008122 139941822778240 helpers.h:519] Stopping thread...\n"
              + b"E20261129 05:47:13.1 1 helpers.h:519] Stopping thread... (not this one)\n"
              + b"Index 2 is a line that starts with I\n" + b"\rETs/mapping 5/22")
    for size in (1, 7, 64, len(stream)):  # however the pipe cuts it
        assert _filtered(stream, size) == (b"\rETs/features 3/22\nwarning: kept\nE20261127 03:25:20.1 1 x.cc:1] an error\n"
                              b"E20261129 05:47:13.1 1 helpers.h:519] Stopping thread... (not this one)\n"
                              b"Index 2 is a line that starts with I\n\rETs/mapping 5/22")
    # a progress line is written at once; only what may still become a glog line waits for its newline
    assert drop_glog_lines(b"\rETs/mapping 5/22", b"") == (b"\rETs/mapping 5/22", b"")
    assert drop_glog_lines(b"I2026", b"") == (b"", b"I2026")
    assert drop_glog_lines(b"Index", b"") == (b"Index", b"")


def test_coloured_glog_lines_are_dropped() -> None:
    """After pycolmap.bundle_adjustment, glog colours its lines where TERM has colour (a code before the line, a
    reset after its newline): they passed the filter, every INFO line of the next dataset with them."""
    coloured = (b"\x1b[0;33mW20261129 05:27:03.016766 1 feature_extraction.cc:445] Your current options\n\x1b[m"
                b"I20261129 05:27:03.020000 1 feature_extraction.cc:498] === Feature extraction ===\n"
                b"\x1b[0;31mE20261129 05:27:03.1 1 pose_prior.cc:101] Unknown EXIF orientation: 0\n\x1b[m"
                b"\x1b[0;31mE20261129 05:27:03.2 1 x.cc:1] an error\n\x1b[m\rETs/mapping 5/22")
    for size in (1, 3, 64, len(coloured)):
        # (the reset after a dropped line stays at the next line's start: harmless)
        assert _filtered(coloured, size) == (b"\x1b[m\x1b[m\x1b[0;31mE20261129 05:27:03.2 1 x.cc:1] an error\n\x1b[m"
                              b"\rETs/mapping 5/22")
    # a kept coloured line's reset, at the start of a dropped line, stays: what follows was red in the terminal
    kept_then_dropped = (b"\x1b[0;31mE20261129 05:27:03.2 1 controller.cc:10] Check failed\n"
                         b"\x1b[mI20261129 05:27:03.3 1 bundle_adjustment.cc:46] info\nour line\n")
    assert drop_glog_lines(kept_then_dropped, b"") == (
        b"\x1b[0;31mE20261129 05:27:03.2 1 controller.cc:10] Check failed\n\x1b[mour line\n", b"")
    # COLMAP says it on a cancelled mapping too, where it read as a failure; a real one is a run warning
    failed = b"\x1b[0;31mE20261129 05:27:03.2 1 incremental_pipeline.cc:10] Failed to create any sparse model\n\x1b[m"
    assert drop_glog_lines(failed + b"next\n", b"") == (b"\x1b[mnext\n", b"")
    assert drop_glog_lines(b"\x1b[0;3", b"") == (b"", b"\x1b[0;3")  # (an unfinished colour code waits)
    # what the filter passes leaves out the resets that close no colour (a file that stderr went to began with
    # ESC[m); a kept coloured line's reset stays
    for size in (1, 3, 64, len(coloured)):
        got = b"".join(filtered(coloured[i:i + size] for i in range(0, len(coloured), size)))
        assert got == b"\x1b[0;31mE20261129 05:27:03.2 1 x.cc:1] an error\n\x1b[m\rETs/mapping 5/22"
    assert b"".join(filtered([failed + b"next\n"])) == b"next\n"
    assert b"".join(filtered([kept_then_dropped])) == (
        b"\x1b[0;31mE20261129 05:27:03.2 1 controller.cc:10] Check failed\n\x1b[mour line\n")
    assert drop_stray_resets(b"\x1b[0mx\x1b[1;32my\x1b[0m\x1b[mz", False) == (b"x\x1b[1;32my\x1b[0mz", False)
    assert drop_stray_resets(b"\x1b[ma", True) == (b"\x1b[ma", False)


def test_glog_lines_dropped_on_file_descriptor_2(capfd: pytest.CaptureFixture) -> None:
    """What the pipeline's C++ side writes to fd 2, a real ``pycolmap.bundle_adjustment`` call included."""
    import pycolmap

    rec = pycolmap.synthesize_dataset(pycolmap.SyntheticDatasetOptions(num_frames_per_rig=3, num_points3D=50))
    with glog_lines_dropped():
        os.write(2, b"before\n" + GLOG)
        opts = pycolmap.BundleAdjustmentOptions()
        opts.print_summary = False
        pycolmap.bundle_adjustment(rec, opts)  # prints two INFO lines whatever minloglevel says
        os.write(2, b"between\n")
        os.write(2, b"after")
    os.write(2, b"\nrestored\n")
    assert capfd.readouterr().err == "before\nbetween\nafter\nrestored\n"


def _child(body: str, **kw: object) -> subprocess.Popen[bytes]:
    code = ("import os, signal, sys, time\nfrom imc_core.glogfilter import glog_lines_dropped\n"
            f"with glog_lines_dropped():\n{body}")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kw)


def test_the_last_words_of_a_process_that_aborts_get_through() -> None:
    """A failed COLMAP check aborts the process: the filter, a process of its own, still passes the reason on."""
    proc = _child(f"    os.write(2, {GLOG!r} + b'F20261127 03:25:20.1 1 x.cc:1] Check failed: the reason\\n')\n"
                  "    os.abort()\n")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGABRT
    assert err == b"F20261127 03:25:20.1 1 x.cc:1] Check failed: the reason\n"


def test_a_signal_to_the_process_group_leaves_the_filter_running() -> None:
    """The dashboard cancels a job with SIGTERM to its process group: the job's own handling still gets printed."""
    proc = _child("    stop = []\n    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))\n"
                  "    print('ready', flush=True)\n    while not stop:\n        time.sleep(0.01)\n"
                  "    os.write(2, b'cancelled cleanly\\n')\n", start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b"cancelled cleanly\n"


def test_colmaps_nameless_exif_orientation_error_is_dropped(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """COLMAP's extractor logs "Unknown EXIF orientation: 0" as an ERROR without the file's name; the run names
    the image in a warning (imc_core.images.exif_problems), so the filter drops that line and keeps other errors."""
    import numpy as np
    import pycolmap
    from PIL import Image

    (tmp_path / "images").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 0
    pixels = (np.random.default_rng(0).random((120, 160)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / "zero.jpg", exif=exif.tobytes())
    capfd.readouterr()
    with glog_lines_dropped():
        pycolmap.extract_features(str(tmp_path / "db.db"), str(tmp_path / "images"), device=pycolmap.Device.cpu)
        os.write(2, b"E20261127 03:25:20.1 1 x.cc:1] another error\n")
    err = capfd.readouterr().err
    assert "EXIF orientation" not in err and "another error" in err
    pycolmap.extract_features(str(tmp_path / "db2.db"), str(tmp_path / "images"), device=pycolmap.Device.cpu)
    assert "Unknown EXIF orientation: 0" in capfd.readouterr().err  # (what the filter keeps off)
