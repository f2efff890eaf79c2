"""Continuous-time systems made discrete, with the chain rule through the discretisation.

``c2d`` is :func:`scipy.signal.cont2discrete`; ``c2d_vjp`` and ``c2d_jvp`` carry
gradients (reverse and forward) from the discrete matrices back to the continuous ones:

- ``zoh``: ``[[Ad, Bd], [0, I]] = expm(h [[A, B], [0, 0]])``; through the matrix
  exponential by its Frechet derivative, whose adjoint is the Frechet derivative at the
  transpose: ``<G, L(X, E)> = <L(X^T, G), E>``.
- ``foh``: the same with scipy's ``(n + 2m)`` block matrix.
- ``euler``, ``backward_euler``, ``tustin``: the generalised bilinear transform with
  ``alpha = 0, 1, 1/2``; ``P = (I - alpha h A)^-1``, ``Ad = P (I + (1-alpha) h A)``,
  ``Bd = h P B``, ``Cd = C P``, ``Dd = D + alpha C Bd``.

``tf2ss`` realises ``num(s)/den(s)`` in controllable canonical form (scipy's), with its
own chain rule ``tf2ss_vjp``/``tf2ss_jvp``.
"""

from __future__ import annotations

import numpy as np

from blockflow.errors import ParameterError

METHODS = ("zoh", "foh", "tustin", "euler", "backward_euler")
_ALPHA = {"euler": 0.0, "backward_euler": 1.0, "tustin": 0.5}
_SCIPY = {"zoh": "zoh", "foh": "foh", "tustin": "bilinear", "euler": "euler",
          "backward_euler": "backward_diff"}

Matrices = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def check_method(method: str, where: str) -> str:
    if method not in METHODS:
        raise ParameterError(f"{where}: unknown discretisation method {method!r}; use one "
                             f"of {', '.join(METHODS)}")
    return method


def has_feedthrough(D: np.ndarray, method: str) -> bool:
    """Whether the discrete system reads ``u(k)`` in ``y(k)``: ``D != 0``, or a method that
    mixes the current input into the output (foh, tustin, backward Euler)."""
    return bool(np.any(D)) or method in ("foh", "tustin", "backward_euler")


def c2d(A, B, C, D, h: float, method: str = "zoh") -> Matrices:
    """The discrete ``(Ad, Bd, Cd, Dd)`` of a continuous ``(A, B, C, D)`` at period ``h``."""
    import scipy.signal  # (deferred: importing scipy.signal costs 0.2-0.4 s)
    Ad, Bd, Cd, Dd, _ = scipy.signal.cont2discrete((A, B, C, D), h, method=_SCIPY[method])
    return Ad, Bd, Cd, Dd


def _zoh_matrix(A, B, h):
    n, m = B.shape
    M = np.zeros((n + m, n + m))
    M[:n, :n], M[:n, n:] = A * h, B * h
    return M


def _foh_matrix(A, B, h, eye: float = 1.0):
    n, m = B.shape
    M = np.zeros((n + 2 * m, n + 2 * m))
    M[:n, :n], M[:n, n:n + m] = A * h, B * h
    M[n:n + m, n + m:] = eye * np.eye(m)
    return M


def c2d_vjp(A, B, C, D, h: float, method: str, g: Matrices) -> Matrices:
    """``(dJ/dA, dJ/dB, dJ/dC, dJ/dD)`` from the gradients ``g`` of the discrete matrices."""
    import scipy.linalg  # (deferred: importing scipy.linalg costs 0.2-0.4 s)
    gAd, gBd, gCd, gDd = g
    n, m = B.shape
    if method in ("zoh", "foh"):
        M = _zoh_matrix(A, B, h) if method == "zoh" else _foh_matrix(A, B, h)
        E = scipy.linalg.expm(M)
        G = np.zeros_like(M)
        if method == "zoh":
            G[:n, :n], G[:n, n:] = gAd, gBd
            gC, gD = gCd, gDd
        else:  # Ad = E11, Bd = E12 - E13 + E11 E13, Cd = C, Dd = D + C E13
            E11, E13 = E[:n, :n], E[:n, n + m:]
            G[:n, :n] = gAd + gBd @ E13.T
            G[:n, n:n + m] = gBd
            G[:n, n + m:] = -gBd + E11.T @ gBd + C.T @ gDd
            gC, gD = gCd + gDd @ E13.T, gDd
        GM = scipy.linalg.expm_frechet(M.T, G, compute_expm=False)
        return h * GM[:n, :n], h * GM[:n, n:n + m], gC, gD
    a = _ALPHA[method]
    P = np.linalg.inv(np.eye(n) - a * h * A)
    Ad, Bd, Cd = P @ (np.eye(n) + (1 - a) * h * A), h * P @ B, C @ P
    gBd = gBd + a * C.T @ gDd  # Dd = D + a C Bd
    gA = h * P.T @ gAd @ (a * Ad + (1 - a) * np.eye(n)).T
    gA = gA + a * h * P.T @ gBd @ Bd.T + a * h * Cd.T @ gCd @ P.T
    return gA, h * P.T @ gBd, gCd @ P.T + a * gDd @ Bd.T, gDd


def c2d_jvp(A, B, C, D, h: float, method: str, d: Matrices) -> Matrices:
    """``(dAd, dBd, dCd, dDd)`` for directions ``d = (dA, dB, dC, dD)``."""
    import scipy.linalg  # (deferred: importing scipy.linalg costs 0.2-0.4 s)
    dA, dB, dC, dD = d
    n, m = B.shape
    if method in ("zoh", "foh"):
        M = _zoh_matrix(A, B, h) if method == "zoh" else _foh_matrix(A, B, h)
        dM = _zoh_matrix(dA, dB, h) if method == "zoh" else _foh_matrix(dA, dB, h, 0.0)
        E, dE = scipy.linalg.expm_frechet(M, dM)
        if method == "zoh":
            return dE[:n, :n], dE[:n, n:], dC, dD
        E11, E13 = E[:n, :n], E[:n, n + m:]
        dE11, dE12, dE13 = dE[:n, :n], dE[:n, n:n + m], dE[:n, n + m:]
        return (dE11, dE12 - dE13 + dE11 @ E13 + E11 @ dE13, dC,
                dD + dC @ E13 + C @ dE13)
    a = _ALPHA[method]
    P = np.linalg.inv(np.eye(n) - a * h * A)
    Ad, Bd, Cd = P @ (np.eye(n) + (1 - a) * h * A), h * P @ B, C @ P
    PdA = h * P @ dA
    dAd = PdA @ (a * Ad + (1 - a) * np.eye(n))
    dBd = a * PdA @ Bd + h * P @ dB
    dCd = dC @ P + a * h * Cd @ dA @ P
    return dAd, dBd, dCd, dD + a * (dC @ Bd + C @ dBd)


def tf2ss(num, den) -> Matrices:
    """``num(s)/den(s)`` (descending powers) in controllable canonical form, as
    :func:`scipy.signal.tf2ss`: ``A`` has ``-den[1:]/den[0]`` in its first row."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    n = den.size - 1
    b = np.concatenate([np.zeros(den.size - num.size), num]) / den[0]
    a = den / den[0]
    A = np.zeros((n, n))
    if n:
        A[0] = -a[1:]
        A[1:, :-1] = np.eye(n - 1)
    B = np.zeros((n, 1))
    if n:
        B[0, 0] = 1.0
    C = (b[1:] - b[0] * a[1:]).reshape(1, n)
    return A, B, C, np.array([[b[0]]])


def tf2ss_vjp(num, den, g: Matrices) -> tuple[np.ndarray, np.ndarray]:
    """``(dJ/dnum, dJ/dden)`` from the gradients of the realisation ``(A, B, C, D)``."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    gA, _, gC, gD = g
    pad = den.size - num.size
    b = np.concatenate([np.zeros(pad), num]) / den[0]
    a = den / den[0]
    gb, ga = np.zeros(den.size), np.zeros(den.size)
    if den.size > 1:
        ga[1:] = -gA[0] - b[0] * gC[0]
        gb[1:] = gC[0]
    gb[0] = gD[0, 0] - gC[0] @ a[1:]
    gnum = gb[pad:] / den[0]
    gden = ga / den[0]
    gden[0] -= (gb @ (b * den[0]) + ga @ den) / den[0] ** 2
    return gnum, gden


def tf2ss_jvp(num, den, dnum, dden) -> Matrices:
    """The realisation's change ``(dA, dB, dC, dD)`` for directions ``dnum, dden``."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    pad = den.size - num.size
    nb = np.concatenate([np.zeros(pad), num])
    dnb = np.concatenate([np.zeros(pad), np.asarray(dnum, float)])
    dden = np.asarray(dden, float)
    d0 = den[0]
    b, a = nb / d0, den / d0
    db, da = dnb / d0 - nb * dden[0] / d0**2, dden / d0 - den * dden[0] / d0**2
    n = den.size - 1
    dA = np.zeros((n, n))
    if n:
        dA[0] = -da[1:]
    dC = (db[1:] - db[0] * a[1:] - b[0] * da[1:]).reshape(1, n)
    return dA, np.zeros((n, 1)), dC, np.array([[db[0]]])
