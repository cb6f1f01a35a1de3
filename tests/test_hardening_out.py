"""Output locations that cannot be written are refused before any work, with one line."""

from __future__ import annotations

import os
import subprocess

import pytest

from tenure.errors import InputError
from tenure.io import check_out_dir


def test_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_out_dir(tmp_path / "f" / "out")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_full_disk(tmp_path):
    mnt = tmp_path / "full"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with (mnt / "filler").open("wb") as f:
            try:
                f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        with pytest.raises(InputError, match="cannot write to"):
            check_out_dir(mnt / "out")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
