"""TensorFlow's start-up notices reach neither the terminal nor a progress bar, whatever the
CPU: fed through the import path that must hide them, and through the kernels the runner
starts (whose descriptors 1 and 2 go to a log file). Real errors still get through."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

# What TensorFlow 2.21 prints at import on a CPU with AVX-512 and AMX, twice, before any
# logging exists: TF_CPP_MIN_LOG_LEVEL cannot stop it.
NOTICES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1764590000.123456    4242 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1764590000.223456    4242 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI "
    "AMX_TILE AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.\n"
)
REAL_ERROR = "E0000 00:00:1764590001.000000    4242 some_op.cc:12] a real error\n"
NOISY_MODULE = f"""
import os
os.write(2, {NOTICES.encode()!r})  # C++ writes straight to file descriptor 2
os.write(2, {REAL_ERROR.encode()!r})
os.write(2, {NOTICES.encode()!r})
"""


@pytest.mark.parametrize("line", NOTICES.splitlines())
def test_each_notice_is_recognised(line):
    from lrstudy import tfquiet

    assert tfquiet.is_notice(line)


@pytest.mark.parametrize("line", [REAL_ERROR.strip(), "Traceback (most recent call last):",
                                  "W0000 00:00:1.0  1 foo.cc:1] a warning", "UserWarning: x"])
def test_other_lines_are_not_notices(line):
    from lrstudy import tfquiet

    assert not tfquiet.is_notice(line)


def test_notices_written_at_import_are_hidden_and_other_lines_kept(tmp_path):
    (tmp_path / "noisy_tf.py").write_text(NOISY_MODULE)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from lrstudy import tfquiet; "
            "tfquiet.import_tensorflow('noisy_tf'); print('imported')")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "imported\n"
    assert proc.stderr == REAL_ERROR


def test_importing_the_training_modules_prints_nothing(tmp_path):
    """The real TensorFlow, without TF_CPP_MIN_LOG_LEVEL: on a CPU that prints notices, this
    is where they would appear."""
    code = ("from lrstudy.training import fitting, epoch_logger, step_recorder; "
            "from lrstudy.lr import range_test, schedules; print('ok')")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n" and proc.stderr == ""


@pytest.mark.slow
def test_a_kernels_own_output_goes_to_its_log_not_the_terminal(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(textwrap.dedent(f"""
                    import os
                    os.write(2, {NOTICES.encode()!r})
                    print("from the cell", x)"""))]
    nbformat.write(nb, tmp_path / "noisy.ipynb")
    code = ("import sys; from lrstudy.execution import kernels; "
            "kernels.execute(sys.argv[1], sys.argv[2], {'x': 7}, cwd=sys.argv[3])")
    out = tmp_path / "out" / "noisy.ipynb"
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "noisy.ipynb"), str(out),
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr, proc.stderr
    from lrstudy.execution import kernels

    assert "oneDNN custom operations are on" in kernels.log_path(out).read_text()
    assert "from the cell 7" in out.read_text()  # what cells print stays in the notebook
