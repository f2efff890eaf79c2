"""FMUs (blockflow.fmu): built with the system C compiler, checked by FMPy's own
validation, simulated by FMPy, equal to simulate() (1e-12)."""

import shutil

import numpy as np
import pytest

from blockflow import simulate

fmpy = pytest.importorskip("fmpy")
pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler (cc) on this machine")

from fmpy import simulate_fmu  # noqa: E402
from fmpy.validation import validate_fmu  # noqa: E402

from blockflow.fmu import export_fmu  # noqa: E402
from models.cart_pole import cart_pole  # noqa: E402
from models.dc_motor import motor_loop  # noqa: E402


@pytest.mark.parametrize(("build", "port", "outs"), [(motor_loop, "r", ["w"]),
                                                     (cart_pole, "push", ["theta", "x", "a"])])
def test_fmpy_validates_and_simulates_the_fmu_as_simulate_does(build, port, outs, tmp_path):
    m = build()
    path = export_fmu(m, tmp_path / "m.fmu")
    assert validate_fmu(str(path)) == []
    T = 120
    u = 0.5 + np.sin(np.arange(T) * 0.07)
    u[0] = 1.0  # non-zero at k = 0
    signal = np.array(list(zip(np.arange(T) * m.dt, u, strict=True)),
                      dtype=[("time", float), (port, float)])
    res = simulate_fmu(str(path), start_time=0.0, stop_time=(T - 1) * m.dt, step_size=m.dt,
                       output_interval=m.dt, input=signal, output=outs)
    tr = simulate(m, {port: u[:, None]}, mode="step", backend="numpy")
    assert len(res) == T
    for o in outs:
        np.testing.assert_allclose(res[o], tr[o][:, 0], rtol=1e-12, atol=1e-12)


def test_the_command_line_builds_an_fmu(tmp_path, capsys):
    from pathlib import Path

    from blockflow.cli import main

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "motor.fmu"
    assert main(["codegen", str(root / "models" / "dc_motor.py:motor_loop"), "--fmu",
                 "-o", str(out)]) == 0
    assert "FMU written to" in capsys.readouterr().out
    assert validate_fmu(str(out)) == []
