"""What requests for a model have been costing lately: the concurrency gate's estimates."""

from __future__ import annotations

from collections import deque

from billing import pricing
from oneapi.options import OptionSnapshot

WINDOW = 32
# The answer length assumed for a model nothing is known about yet (no max_tokens given,
# no request finished): long enough that a cold start cannot overdraw by much.
COLD_COMPLETION_TOKENS = 1024


class CostEstimates:
    """The largest of the last few costs per model, in this process."""

    def __init__(self) -> None:
        self._costs: dict[str, deque[int]] = {}

    def observe(self, model: str, cost: int) -> None:
        costs = self._costs.get(model)
        if costs is None:
            costs = self._costs[model] = deque(maxlen=WINDOW)
        costs.append(cost)

    def learned(self, model: str) -> int | None:
        costs = self._costs.get(model)
        return max(costs) if costs else None

    def for_text(
        self,
        model: str,
        prompt_tokens: int,
        max_tokens: int,
        ratio: float,
        completion_ratio: float,
        options: OptionSnapshot,
    ) -> int:
        """An upper bound when `max_tokens` is given, else what the model has been costing,
        else a cold guess."""
        if max_tokens > 0:
            return pricing.text_quota(prompt_tokens, max_tokens, ratio, completion_ratio)
        learned = self.learned(model)
        if learned is not None:
            return learned
        return pricing.text_quota(prompt_tokens, COLD_COMPLETION_TOKENS, ratio, completion_ratio)
