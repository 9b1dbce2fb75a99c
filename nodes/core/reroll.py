"""Re-roll chosen views of a turnaround: those views get a new cache slot (their ``take``), every other view stays
the cached result at $0.00. Going back to an earlier take is free: that take is still in the cache.

Saved in the workflow as two plain inputs (``reroll``: view names; ``take``: a number), so it works headless and the
picker's re-roll action only edits those two widgets.
"""

from __future__ import annotations

from ..runflow.errors import InputError
from .pose import Pose
from .spec import JobSpec, parse_views
from .spend import cost_line

REROLL_TOOLTIP = ("Views to re-render (comma-separated names, e.g. back view) while every other view stays the "
                  "cached result for $0.00. Each re-rolled view is one $0.20 run per new take.")
TAKE_TOOLTIP = ("Which take of the re-rolled views: 0 = the original render, 1, 2, … = re-rolls. Every take is "
                "cached, so going back to an earlier take costs $0.00.")


def reroll_views(text: str | None) -> list[str]:
    """The ``reroll`` input as exact view names ([] when empty)."""
    return parse_views(text) if (text or "").strip() else []


def reroll_specs(poses: list[Pose], base: dict, reroll: str | None, take: int) -> list[JobSpec]:
    """One JobSpec per pose; views named in ``reroll`` carry ``take`` (their own cache slot).

    Labels are the view name, or the whole pose when a pose list renders one view more than once.
    Bad input (an unknown name, a re-rolled view that is not rendered) is an InputError before anything is sent."""
    take = int(take or 0)
    if take < 0:
        raise InputError("take must be 0 or more (0 = the original render)")
    chosen = set(reroll_views(reroll))
    rendered = {p.view for p in poses}
    missing = [v for v in chosen if v not in rendered]
    if missing:
        raise InputError(f"reroll names {', '.join(sorted(missing))}, which this node does not render "
                         f"(views: {', '.join(p.view for p in poses)}); re-roll one of those, or clear reroll")
    views = [p.view for p in poses]
    specs = []
    for p in poses:
        label = p.view if views.count(p.view) == 1 else str(p)
        specs.append(JobSpec(view=p.view, angle=p.angle, shot=p.shot, label=label,
                             take=take if p.view in chosen else 0, **base))
    return specs


def reroll_note(specs: list[JobSpec]) -> str:
    """'re-roll back view (take 2): 1 run × $0.20' for the status, or '' when nothing is re-rolled.

    An upper bound: a take already rendered before is served from the cache for $0.00."""
    rolled = [s for s in specs if s.take]
    if not rolled:
        return ""
    names = ", ".join(dict.fromkeys(s.view for s in rolled))
    return f"re-roll {names} (take {rolled[0].take}): {cost_line(len(rolled))} at most (earlier takes are cached)"
