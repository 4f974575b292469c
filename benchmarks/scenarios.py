"""The lab scenario suite: deterministic multi-day fleet series, labeled faults and benign events.

Used by ``benchmarks/detection.py`` (and its tests) to compare the detectors with fixed thresholds.
``generate(seed)`` returns 10 hosts x 14 days x 9 signals at 1-minute resolution: the first 7 days
are history (baselines are trained there; one labeled fault there shows that incident windows are
left out of training), the last 7 are judged. Benign events recur as in real fleets: a nightly
backup drives CPU to 95 % for 40 minutes and writes a temporary archive, deploys restart services,
a weekly batch job runs on Sunday afternoons. Faults: a slow memory leak, a disk filling with logs,
a CPU runaway, DDoS-like inbound traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY = 86400.0
STEP = 60.0
SIGNALS = ("cpu", "load", "memory_available", "disk_available", "network_in", "network_out",
           "service_rss", "service_cpu", "node_up")
START = 1_700_006_400.0  # a Wednesday, 00:00 UTC


@dataclass(frozen=True)
class Event:
    """A labeled window on one host: a fault (must be found) or a benign event (must not)."""

    host: str
    kind: str
    start: float
    end: float
    fault: bool
    exhausted_at: float | None = None  # for the slow leak: when memory reaches 0


@dataclass(frozen=True)
class Scenario:
    hosts: tuple[str, ...]
    times: np.ndarray
    values: dict[str, np.ndarray]  # signal -> (rows, hosts)
    events: tuple[Event, ...]
    train_until: float

    @property
    def eval_host_days(self) -> float:
        return len(self.hosts) * (self.times[-1] + STEP - self.train_until) / DAY


def generate(seed: int = 7, hosts: int = 10, days: int = 14) -> Scenario:
    rng = np.random.default_rng(seed)
    names = tuple(f"web{i:02d}" for i in range(hosts))
    rows = int(days * DAY / STEP)
    t = START + STEP * np.arange(rows)
    tod = (t % DAY) / DAY
    ((t - START) // DAY + 2) % 7  # 0 = Monday; START is a Wednesday
    daily = np.sin(2 * np.pi * (tod - 0.35))[:, None]
    h = np.ones((1, hosts))
    base_cpu = rng.uniform(0.15, 0.3, hosts)
    v: dict[str, np.ndarray] = {}
    v["cpu"] = base_cpu * h + 0.08 * daily * h + rng.normal(0, 0.02, (rows, hosts))
    v["memory_available"] = (rng.uniform(0.55, 0.7, hosts) * h - 0.03 * daily * h
                             + rng.normal(0, 0.008, (rows, hosts)))
    growth = 0.002 * (t - START)[:, None] / DAY
    v["disk_available"] = rng.uniform(0.5, 0.7, hosts) * h - growth + rng.normal(0, 0.001,
                                                                                 (rows, hosts))
    v["network_in"] = 2e6 * (1.3 + 0.5 * daily) * rng.lognormal(0, 0.15, (rows, hosts))
    v["network_out"] = 3e6 * (1.3 + 0.5 * daily) * rng.lognormal(0, 0.15, (rows, hosts))
    v["service_rss"] = rng.uniform(4e8, 8e8, hosts) * h * (1 + rng.normal(0, 0.01, (rows, hosts)))
    v["service_cpu"] = 0.1 + 0.05 * daily * h + rng.normal(0, 0.01, (rows, hosts))
    v["node_up"] = np.ones((rows, hosts))
    events: list[Event] = []

    def win(start: float, minutes: float) -> np.ndarray:
        return (t >= start) & (t < start + minutes * 60)

    # Benign: nightly backup 02:00-02:40 on every host (CPU ~95 %, temporary 3 % archive).
    for day in range(days):
        s = START + day * DAY + 2 * 3600
        m = win(s, 40)
        v["cpu"][m] = 0.95 + rng.normal(0, 0.01, (m.sum(), hosts))
        v["network_out"][m] *= 6
        v["disk_available"][m] -= np.linspace(0, 0.03, m.sum())[:, None]
        for name in names:
            events.append(Event(name, "nightly_backup", s, s + 2400, False))
    # Benign: weekly batch job, Sunday 13:00-15:00 (CPU 75 %, inbound data).
    for day in range(days):
        if (2 + day) % 7 == 6:
            s = START + day * DAY + 13 * 3600
            m = win(s, 120)
            v["cpu"][m] = 0.75 + rng.normal(0, 0.02, (m.sum(), hosts))
            v["network_in"][m] *= 4
            for name in names:
                events.append(Event(name, "weekly_batch", s, s + 7200, False))
    # Benign: deploy restarts (service down 1 minute, RSS rebuilt over 20 minutes).
    for k in range(12):
        i = int(rng.integers(hosts))
        s = START + float(rng.integers(1, days * 24 - 1)) * 3600 + 600
        j = int(np.searchsorted(t, s))
        v["node_up"][j, i] = 0.0
        ramp = np.linspace(0.3, 1.0, 20)
        v["service_rss"][j:j + 20, i] *= ramp
        v["memory_available"][j:j + 20, i] += 0.1 * (1 - ramp)
        v["cpu"][j + 1:j + 4, i] += 0.3
        v["service_cpu"][j + 1:j + 4, i] += 0.5
        events.append(Event(names[i], f"deploy_restart_{k}", s, s + 1200, False))
    # Fault in the training window (left out of training): CPU runaway on web05, day 3.
    s = START + 3 * DAY + 15 * 3600
    m = win(s, 180)
    v["cpu"][m, 5] = 0.99
    v["service_cpu"][m, 5] = 1.9
    events.append(Event(names[5], "cpu_runaway", s, s + 3 * 3600, True))
    # Fault: slow memory leak on web01 from day 8 00:00, memory runs out 60 h later.
    s = START + 8 * DAY
    m = t >= s
    leak_h = 60.0
    start_level = v["memory_available"][m, 1][:30].mean()
    v["memory_available"][m, 1] -= start_level * np.minimum((t[m] - s) / (leak_h * 3600), 1.0)
    v["memory_available"][:, 1] = np.maximum(v["memory_available"][:, 1], 0.0)
    v["service_rss"][m, 1] *= 1 + 3 * np.minimum((t[m] - s) / (leak_h * 3600), 1.0)
    after = t >= s + leak_h * 3600 + 600  # the OOM killer ends it; the service comes back
    v["memory_available"][after, 1] = v["memory_available"][after, 0]
    v["service_rss"][after, 1] = v["service_rss"][after, 0]
    events.append(Event(names[1], "slow_leak", s, s + leak_h * 3600, True,
                        exhausted_at=s + leak_h * 3600))
    # Fault: disk filling with logs on web02, day 9 10:00, full in 8 h.
    s = START + 9 * DAY + 10 * 3600
    m = (t >= s) & (t < s + 8 * 3600)
    level = v["disk_available"][m, 2][:5].mean()
    v["disk_available"][m, 2] = level * (1 - (t[m] - s) / (8 * 3600)) + 0.005
    full = (t >= s + 8 * 3600) & (t < s + 9 * 3600)
    v["disk_available"][full, 2] = 0.005
    v["disk_available"][t >= s + 9 * 3600, 2] = level  # logs cleaned by hand an hour later
    events.append(Event(names[2], "disk_fill", s, s + 9 * 3600, True))
    # Fault: CPU runaway on web03, day 11 15:00, 3 h.
    s = START + 11 * DAY + 15 * 3600
    m = win(s, 180)
    v["cpu"][m, 3] = 0.99 + rng.normal(0, 0.003, m.sum())
    v["service_cpu"][m, 3] = 1.9
    events.append(Event(names[3], "cpu_runaway", s, s + 3 * 3600, True))
    # Fault: DDoS-like inbound traffic on web04, day 12 20:00, 2 h.
    s = START + 12 * DAY + 20 * 3600
    m = win(s, 120)
    v["network_in"][m, 4] *= 30
    v["cpu"][m, 4] = 0.85 + rng.normal(0, 0.02, m.sum())
    events.append(Event(names[4], "ddos", s, s + 2 * 3600, True))
    v["cpu"] = np.clip(v["cpu"], 0.0, 1.0)
    v["load"] = np.maximum(0.0, v["cpu"] * 1.8 + rng.normal(0, 0.05, (rows, hosts)))
    v["service_cpu"] = np.maximum(v["service_cpu"], 0.0)
    return Scenario(names, t, v, tuple(events), train_until=START + 7 * DAY)
