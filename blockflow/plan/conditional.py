"""Enabled and triggered subsystems, expanded into gated blocks.

A model holding an :class:`~blockflow.core.gated.EnablePort` (or a
:class:`~blockflow.core.gated.TriggerPort`) runs only on the steps its gate is open.
:func:`conditioned` expands it, once per compile, into an ordinary model: every block
but the ports and the sources becomes a :class:`~blockflow.core.gated.Gated` block of
the same name, wired to the gate (the enable signal, or an edge detector on the
trigger).  The reciprocal transform, the tangent and the parameter gradients then
follow from the gated block's rules.
"""

from __future__ import annotations

import copy

from blockflow.core.gated import EdgeDetector, EnablePort, Gated, TriggerPort
from blockflow.core.model import Model
from blockflow.core.ports import Inport, Outport
from blockflow.errors import WiringError
from blockflow.plan.cache import cached


def gate_port(m: Model) -> EnablePort | TriggerPort | None:
    """The model's enable or trigger port (at most one), or None."""
    ports = [b for b in m.blocks.values() if isinstance(b, EnablePort | TriggerPort)]
    if len(ports) > 1:
        raise WiringError(f"model {m.name!r} has {len(ports)} enable/trigger ports "
                          f"({', '.join(b.name for b in ports)}); a subsystem has at most "
                          "one (combine the conditions into one signal)")
    return ports[0] if ports else None


def conditioned(m: Model) -> Model:
    """``m`` itself, or its gated expansion when it has an enable or trigger port (cached
    until ``m`` is edited or a parameter array replaced)."""
    port = gate_port(m)
    if port is None:
        return m
    return cached(m, "conditioned", lambda: _gate(m, port))


def _gate(m: Model, port) -> Model:
    em = Model(m.name, dt=m.dt)  # (a subsystem's: its parent's, resolved)
    gated = []
    for n, b in m.blocks.items():
        if isinstance(b, Model):
            kind = "an enabled" if isinstance(port, EnablePort) else "a triggered"
            raise WiringError(
                f"subsystem {n!r} sits inside {kind} subsystem {m.name!r}; move its "
                f"blocks up into {m.name!r} (a gated subsystem runs its own blocks)")
        if isinstance(b, Inport | Outport) or b.source:
            c = copy.copy(b)
            c._model = None
            em.add(c)
        else:
            em.add(Gated(b, states=port.states, outputs=port.outputs_mode))
            gated.append(n)
    for s, d, data in m.graph.edges(data=True):
        em.connect(em.blocks[s][data["src_port"]], em.blocks[d][data["dst_port"]])
    gate = em.blocks[port.name]
    if isinstance(port, TriggerPort):
        name = f"{port.name}@edge"
        gate = em.add(EdgeDetector(port.edge, name=name))
        em.connect(em.blocks[port.name].y, gate.u)
    for n in gated:
        em.connect(gate.y, em.blocks[n].enable)
    return em
