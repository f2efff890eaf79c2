"""A model as a Gymnasium environment: :class:`ModelEnv` (the optional extra ``rl``).

A plant model becomes an environment an agent acts on one sample period at a time:
the action drives one Inport, the observation is the model's chosen Outports,
flattened into one vector, and a :class:`~blockflow.Simulator` steps the model
(its state carried between steps, bit for bit what one long run computes).  A
controller trained through the model by BPTT can be evaluated in it, beside any
reinforcement-learning agent.

The observation after an action must not depend on that same action within the step
(the plant is strictly proper from the action to what is observed): the observation of
step ``k + 1`` is the model's output there, read before the next action.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

import networkx as nx
import numpy as np

from blockflow.core.model import feedthrough_graph
from blockflow.errors import SimulationError
from blockflow.run.simulator import Simulator

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError as e:  # pragma: no cover - the extra is installed by make test
    raise ImportError("blockflow.env needs Gymnasium: pip install 'blockflow[rl]'") from e


def _quadratic(observation: dict, action: np.ndarray) -> float:
    """The default reward: minus the squared observations (regulation to zero)."""
    return -float(sum(np.sum(np.square(v)) for v in observation.values()))


class ModelEnv(gym.Env):
    """A model stepped by an agent.

    Parameters
    ----------
    model : Model
    action : str, optional
        The Inport the action drives (default: the model's only Inport).  Other Inports
        read ``inputs(k)`` (a dict by name) if given, else zero.
    observation : list of str, optional
        The Outports observed, in this order, each flattened (default: all of them).
    reward : callable, optional
        ``reward(observation, action) -> float`` with the observation after the action
        as a dict by Outport; default minus its squared norm.
    terminated : callable, optional
        ``terminated(observation) -> bool``: the episode ends (a fall, a failure).
    horizon : int, optional
        Steps per episode, after which it is truncated.
    action_low, action_high : float or array, optional
        Bounds of the action space (default unbounded).
    initial_state : dict or callable, optional
        States by block path (as ``Simulator.state`` names them) at each reset, or
        ``initial_state(rng) -> dict`` drawn from the environment's seeded generator.
    inputs : callable, optional
        ``inputs(k) -> dict``: the other Inports' samples at step ``k``.
    realtime : float, optional
        Pace steps to ``realtime * dt`` seconds of wall-clock time each (1.0: real time,
        for hardware-in-the-loop demonstrations).
    backend : str, optional
        The simulator's backend.
    """

    metadata = {"render_modes": []}

    def __init__(self, model, *, action: str | None = None,
                 observation: list[str] | None = None,
                 reward: Callable[[dict, np.ndarray], float] | None = None,
                 terminated: Callable[[dict], bool] | None = None,
                 horizon: int | None = None, action_low=-np.inf, action_high=np.inf,
                 initial_state: dict | Callable | None = None,
                 inputs: Callable[[int], dict] | None = None, realtime: float | None = None,
                 backend: str | None = None):
        super().__init__()
        self.sim = Simulator(model, backend=backend)
        plan = self.sim.plan
        names = list(plan.inports)
        if action is None:
            if len(names) != 1:
                raise SimulationError(f"ModelEnv: {model.name!r} has Inports {names}; name "
                                      "the one the action drives with action=")
            action = names[0]
        if action not in plan.inports:
            raise SimulationError(f"ModelEnv: {model.name!r} has no Inport {action!r}; its "
                                  f"Inports are {names}")
        observation = list(plan.outports) if observation is None else list(observation)
        unknown = [o for o in observation if o not in plan.outports]
        if unknown or not observation:
            raise SimulationError(f"ModelEnv: observation names {unknown or 'nothing'}; the "
                                  f"Outports of {model.name!r} are {list(plan.outports)}")
        ft = feedthrough_graph(plan.flat)
        direct = [o for o in observation if nx.has_path(ft, action, o)]
        if direct:
            raise SimulationError(
                f"ModelEnv: Outport(s) {direct} of {model.name!r} read the action {action!r} "
                "within the same step, so the observation after an action would depend on "
                "the next one; observe a strictly proper output (add a UnitDelay)")
        self.action, self.observed = action, observation
        self.reward_fn = reward or _quadratic
        self.terminated_fn = terminated
        self.horizon, self.realtime, self.inputs_fn = horizon, realtime, inputs
        self.initial_state = initial_state
        st = plan.slot_types
        self._a_type = st[plan.inports[action]]
        self._o_types = [st[plan.outports[o]] for o in observation]
        size = sum(int(np.prod(t.shape, dtype=int)) for t in self._o_types)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float64)
        low = np.broadcast_to(np.asarray(action_low, np.float64), self._a_type.shape)
        high = np.broadcast_to(np.asarray(action_high, np.float64), self._a_type.shape)
        self.action_space = spaces.Box(low, high, shape=self._a_type.shape, dtype=np.float64)
        self._next_wall = None

    # ------------------------------------------------------------------ helpers
    def _inputs(self, a) -> dict:
        plan = self.sim.plan
        given = self.inputs_fn(self.sim.k) if self.inputs_fn is not None else {}
        out = {}
        for name, slot in plan.inports.items():
            t = plan.slot_types[slot]
            v = a if name == self.action else given.get(name, np.zeros(t.shape, t.dtype))
            out[name] = np.asarray(v, t.dtype).reshape(t.shape)
        return out

    def _observe(self) -> dict:
        """The observed outputs at the current step (the model's state moves nowhere)."""
        saved, k = self.sim.state, self.sim.k
        y = self.sim.step(self._inputs(np.zeros(self._a_type.shape)))
        self.sim.state, self.sim.k = saved, k
        return {o: np.array(y[o][0], np.float64) for o in self.observed}

    def _vector(self, obs: dict) -> np.ndarray:
        return np.concatenate([np.ravel(obs[o]) for o in self.observed]).astype(np.float64)

    # ---------------------------------------------------------------- Gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        state = (options or {}).get("state", self.initial_state)
        if callable(state):
            state = state(self.np_random)
        self.sim.reset(state)
        self._next_wall = None
        obs = self._observe()
        return self._vector(obs), {"time": self.sim.time, "outputs": obs}

    def step(self, action):
        a = np.asarray(action, np.float64).reshape(self._a_type.shape)
        self.sim.step(self._inputs(a))
        obs = self._observe()
        reward = float(self.reward_fn(obs, a))
        terminated = bool(self.terminated_fn(obs)) if self.terminated_fn else False
        truncated = self.horizon is not None and self.sim.k >= self.horizon
        if self.realtime:
            period = self.realtime * self.sim.model.dt
            now = _time.monotonic()
            self._next_wall = (self._next_wall or now) + period
            if self._next_wall > now:
                _time.sleep(self._next_wall - now)
        return self._vector(obs), reward, terminated, truncated, \
            {"time": self.sim.time, "outputs": obs}
