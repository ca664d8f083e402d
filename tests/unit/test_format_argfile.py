"""The storage format's @argfile read back by the real java launcher: whatever a password
holds (quotes, backslashes, `#`, whitespace, a leading `-` or `@`) reaches the tool as
written. Skipped without java."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from devstack.kafka.server import argfile_text, private_argfile

ECHO = """public class Echo {
    public static void main(String[] args) {
        for (String a : args) System.out.print(a + "\\0");
    }
}
"""
TRICKY = ["plain", "a b", 'q"uote', "s'ingle", "back\\slash", "end\\", "#hash", "@at",
          "-dash", "tab\tx", "new\nline", "cr\rff\f", "", "=[name=x,password=y]", "a\\nb"]


@pytest.mark.skipif(shutil.which("java") is None, reason="no java on PATH")
def test_the_launcher_reads_back_every_argument_as_written(tmp_path):
    echo = tmp_path / "Echo.java"
    echo.write_text(ECHO)
    with private_argfile(tmp_path / "echo.args", [str(echo), *TRICKY]) as path:
        out = subprocess.run(["java", f"@{path}"], capture_output=True, timeout=60,
                             check=True).stdout
    assert out.decode().split("\0")[:-1] == TRICKY
    assert not path.exists()


def test_one_quoted_argument_a_line():
    assert argfile_text(["a", 'b"c\\']) == '"a"\n"b\\"c\\\\"\n'
