"""What a model level runs as: its continuous subsystem integrated
(:mod:`blockflow.plan.integrate`), then its blocks gated when it is an enabled or
triggered subsystem (:mod:`blockflow.plan.conditional`).  Flattening, the reciprocal
transform and the tangent all read a level through :func:`expanded`."""

from __future__ import annotations

from blockflow.core.model import Model
from blockflow.plan.conditional import conditioned
from blockflow.plan.integrate import integrated


def expanded(m: Model) -> Model:
    """The ordinary model that level ``m`` runs as (``m`` itself when nothing to do)."""
    return conditioned(integrated(m))
