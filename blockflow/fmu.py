"""A model as an FMU (FMI 2.0 co-simulation): ``export_fmu(model, path)``.

The FMU zips ``modelDescription.xml``, the model's C (:mod:`blockflow.codegen`), a small
FMI wrapper, and a shared library built for this platform with the system C compiler
against the FMI 2.0 headers that FMPy ships (the extra ``fmu``).  Every element of every
Inport and Outport is a ``Real`` variable (``r``, ``w[0]``, ...).  ``fmi2DoStep`` runs
the model's base steps that fit the communication step, inputs held; an output read at
a communication point is the model's output there for the inputs set, the state left
where it is (a model step on a copy of the state).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from blockflow.codegen import export_c
from blockflow.codegen.forward import _ident
from blockflow.errors import CodegenError
from blockflow.plan.compiler import compile

#: the FMI 2.0 functions around ``NAME_step`` (a C template: NAME, "GUID", DT)
_WRAPPER = Path(__file__).with_name("fmi2_wrapper.c")


def _headers() -> Path:
    try:
        import fmpy
    except ImportError:
        raise CodegenError("an FMU is built against the FMI 2.0 headers FMPy ships: "
                           "pip install 'blockflow[fmu]'") from None
    return Path(fmpy.__file__).parent / "c-code"


def _platform() -> tuple[str, str]:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win"}.get(platform.system())
    bits = "64" if np.dtype(np.intp).itemsize == 8 else "32"
    if system is None:
        raise CodegenError(f"export_fmu: no FMI platform name for {platform.system()}")
    ext = {"linux": ".so", "darwin": ".dylib", "win": ".dll"}[system]
    return f"{system}{bits}", ext


def export_fmu(model, path, name: str | None = None, *, compiler: str | None = None) -> Path:
    """Write ``model`` as an FMI 2.0 co-simulation FMU at ``path`` (see the module)."""
    cc = compiler or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise CodegenError("export_fmu builds a shared library and needs a C compiler (cc)")
    name = _ident(name or model.name)
    plan = compile(model, mode="step")
    headers = _headers()
    plat, ext = _platform()
    guid = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"blockflow:{name}:{plan.model.name}")) \
        + "}"
    dt = model.dt
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "sources"
        h, c = export_c(model, src, name)
        wrapper = src / "fmu.c"
        wrapper.write_text(_WRAPPER.read_text().replace("NAME", name).replace('"GUID"', f'"{guid}"')
                           .replace("DT;", f"{float(dt)!r};"))
        lib = tmp / "binaries" / plat / f"{name}{ext}"
        lib.parent.mkdir(parents=True)
        cmd = [cc, "-std=c99", "-O2", "-shared", "-fPIC", f"-I{headers}", f"-I{src}",
               "-o", str(lib), str(c), str(wrapper), "-lm"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise CodegenError(f"export_fmu: the C compiler failed:\n{r.stderr[-2000:]}")
        (tmp / "modelDescription.xml").write_text(_description(plan, name, guid, dt))
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
                z.write(f, f.relative_to(tmp).as_posix())
    return out


def _variables(plan) -> list[tuple[str, str]]:
    """``(name, causality)`` of every Real, inputs then outputs, in C order."""
    st = plan.slot_types
    out = []
    for ports, causality in ((plan.inports, "input"), (plan.outports, "output")):
        for port, slot in ports.items():
            n = int(np.prod(st[slot].shape, dtype=int))
            out += [(port if not st[slot].shape else f"{port}[{i}]", causality)
                    for i in range(n)]
    return out


def _description(plan, name: str, guid: str, dt: float) -> str:
    vars_ = _variables(plan)
    rows = []
    for vr, (var, causality) in enumerate(vars_):
        start = ' start="0"' if causality == "input" else ""
        rows.append(f'    <ScalarVariable name={quoteattr(var)} valueReference="{vr}" '
                    f'causality="{causality}" variability="discrete">'
                    f'<Real{start}/></ScalarVariable>')
    outputs = [f'      <Unknown index="{i + 1}"/>' for i, (_, c) in enumerate(vars_)
               if c == "output"]  # (each may read any input: listed without dependencies)
    return "\n".join([
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<fmiModelDescription fmiVersion="2.0" modelName={quoteattr(plan.model.name)} '
        f'guid="{guid}" generationTool="blockflow" numberOfEventIndicators="0" '
        'variableNamingConvention="flat">',
        f'  <CoSimulation modelIdentifier="{name}" canHandleVariableCommunicationStepSize='
        '"true" canGetAndSetFMUstate="false" canSerializeFMUstate="false"/>',
        f'  <DefaultExperiment startTime="0" stepSize="{float(dt)!r}"/>',
        "  <ModelVariables>", *rows, "  </ModelVariables>",
        "  <ModelStructure>", "    <Outputs>", *outputs, "    </Outputs>",
        "    <InitialUnknowns>", *outputs, "    </InitialUnknowns>",
        "  </ModelStructure>", "</fmiModelDescription>", ""])


__all__ = ["export_fmu"]
