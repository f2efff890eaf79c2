"""Gradients: the reciprocal transform and the rules it derives, the tangent (forward
mode), the backward sweep and its schedules (full, truncated, chunked, streamed), losses
and gradient checks."""
