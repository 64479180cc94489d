"""Which parameter goes where in a job's figures: x axis, colour, panels, and what is aggregated.

The user decides (``report:`` in the manifest, or ``hog-batch report`` options);
what they leave open is chosen here:

- **replicates** (aggregated: mean with a 95% interval) are the parameters
  named like a replicate index (``seed``, ``rep``, ``trial``...), and a
  ``range`` parameter no result depends on; never every varying parameter,
  so something is left to draw against;
- **x** is the numeric parameter left with the most values (else the first one);
- **colour** is the next one with the fewest values: a line per value up to
  ``MAX_LINES``, a heatmap beyond;
- **facet** is a further one with at most ``MAX_FACETS`` values, a panel each;
- anything still left is averaged as well, and the caption says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .data import JobView
from .settings import FigureChoice

MAX_LINES = 8
MAX_FACETS = 6
MAX_PANELS = 12
_REPLICATE_NAME = re.compile(
    r"^(random_?)?(seed|seeds|rep|reps|repeat|repeats|repetition|replicate|replicates|replica"
    r"|trial|trials)(_?\d+|_?id|_?idx|_?index|_?no)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Roles:
    x: str | None
    colour: str | None
    facet: str | None
    replicates: tuple[str, ...]  # aggregated because they are replicates
    folded: tuple[str, ...]  # aggregated because no place was left for them
    heatmap: bool
    log_x: bool
    log_y: bool
    interval: str  # band | bars
    ignored: tuple[
        str, ...
    ] = ()  # choices that name no varying parameter of this job (said in the caption)

    @property
    def aggregated(self) -> tuple[str, ...]:
        return (*self.replicates, *self.folded)


def looks_like_replicate(name: str) -> bool:
    return bool(_REPLICATE_NAME.match(name))


def independent_of(job: JobView, param: str) -> bool:
    """No result depends on ``param``: within each combination of the other parameters, the share of
    the results' variance that its values explain is no more than noise would give (at most three
    times its expectation, (k - 1) / (n - groups), and never above one half)."""
    import numpy as np

    others = [p for p in job.varying if p != param]
    done = job.frame[job.frame["status"] == "succeeded"]
    if not len(done) or not job.results:
        return False
    for result in job.results[:5]:
        rows = done[done[result].notna()]
        if len(rows) < 4:
            return False
        values = rows[result].astype(float)
        centred = values - (
            values.groupby([rows[o] for o in others], dropna=False).transform("mean")
            if others
            else values.mean()
        )
        total = float((centred**2).sum())
        if total <= 0 or not np.isfinite(total):
            continue
        level_means = centred.groupby(rows[param], dropna=False)
        between = float((level_means.transform("mean") ** 2).sum())
        groups = rows.groupby(others, dropna=False).ngroups if others else 1
        k = rows[param].nunique(dropna=False)
        expected = (k - 1) / max(len(rows) - groups, 1)
        if between / total > max(0.05, min(0.5, 3 * expected)):
            return False
    return True


def choose_roles(
    job: JobView, choice: FigureChoice | None = None, elsewhere: frozenset[str] = frozenset()
) -> Roles:
    """``elsewhere``: parameters of the run's other jobs (a choice naming one of them is not meant for this job)."""
    choice = choice or FigureChoice()
    varying = list(job.varying)
    unknown = {*varying, *elsewhere}
    ignored = tuple(
        f"{key}: {name}"
        for key, name in (("x", choice.x), ("color", choice.color), ("facet", choice.facet))
        if name is not None and name not in unknown
    )
    ignored += tuple(
        f"replicates: {name}" for name in choice.replicates or () if name not in unknown
    )
    if choice.replicates is not None:
        replicates = [p for p in choice.replicates if p in varying]
    else:
        placed = {choice.x, choice.color, choice.facet}
        replicates = [
            p
            for p in varying
            if p not in placed
            and (
                looks_like_replicate(p) or (job.kinds.get(p) == "range" and independent_of(job, p))
            )
        ]
        if replicates and len(replicates) == len(varying):
            replicates = []  # something must be left to draw against
    rest = [p for p in varying if p not in replicates]
    x = choice.x if choice.x in rest else None
    colour = choice.color if choice.color in rest and choice.color != x else None
    facet = choice.facet if choice.facet in rest and choice.facet not in (x, colour) else None
    free = [p for p in rest if p not in (x, colour, facet)]
    if x is None and free:
        numeric = [p for p in free if job.is_numeric(p)]
        x = max(numeric or free, key=job.n_values)  # first of the largest on ties
        free.remove(x)
    free.sort(key=job.n_values)
    if colour is None and free:
        colour = free.pop(0)
    if facet is None and choice.facet is None:
        facet = next((p for p in free if job.n_values(p) <= MAX_FACETS), None)
    folded = tuple(p for p in free if p != facet)
    heatmap = colour is not None and job.n_values(colour) > MAX_LINES
    log_x = (
        choice.log_x
        if choice.log_x is not None
        else (x is not None and job.kinds.get(x) == "geomspace")
    )
    if log_x and (x is None or not job.is_numeric(x) or not (job.frame[x].dropna() > 0).all()):
        log_x = False  # a log axis needs positive numbers
    interval = choice.interval or ("band" if x is not None and job.is_numeric(x) else "bars")
    return Roles(
        x,
        colour,
        facet,
        tuple(replicates),
        folded,
        heatmap,
        bool(log_x),
        bool(choice.log_y),
        interval,
        ignored,
    )
