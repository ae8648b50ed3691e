"""The answer step, the one place where a request becomes an action: image + query -> call -> outbox item.

Shared by `octopus ask` and the daemon, so both mean the same by a dry run: every call the model makes is
recorded in the outbox (`dry_run` set unless `actions.execute` or `ask --execute`), and delivering a dry-run
item checks it against the config (allow-list, lengths) and records what would have been done, sending
nothing. The daemon's sender thread delivers; `ask` delivers its one item before it returns.
Torch-free, like the rest of `octopus.device`.
"""

from __future__ import annotations

from octopus.calls import CallError
from octopus.device.actions import Actions
from octopus.device.config import ConfigError
from octopus.device.outbox import Outbox, OutboxError
from octopus.functions import BUILTIN


class AnswerStep:
    def __init__(self, agent, outbox: Outbox, actions: Actions, execute: bool, max_new_tokens: int):
        self.agent, self.outbox, self.actions = agent, outbox, actions
        self.execute, self.max_new_tokens = execute, max_new_tokens

    @classmethod
    def from_config(cls, agent, outbox: Outbox, config, execute: bool | None = None,
                    actions: Actions | None = None) -> AnswerStep:
        """`execute=None` follows `actions.execute` (the daemon); `ask` passes its `--execute`. The actions read
        the agent's function table (user functions included). Raises ConfigError when the config names a
        function the model does not have."""
        if actions is None:
            try:
                actions = Actions(config.actions, getattr(agent, "registry", BUILTIN))
            except ConfigError as exc:
                raise ConfigError(f"{config.source}: {exc}") from None
        if config.model.reject_bias:  # the config's bias replaces the model's own, language by language
            agent.reject_bias = {**getattr(agent, "reject_bias", {}), **config.model.reject_bias}
        return cls(agent, outbox, actions,
                   config.actions.execute if execute is None else execute, config.model.max_new_tokens)

    def __call__(self, image, query: str, source: str) -> dict:
        """One answer, as a record: `function`, `arguments`, `raw`, `timings_ms`; for a call, `outbox_id`,
        `dry_run` and `action` (what it does); `error` for an invalid call or an outbox that refused it (then
        also `not_queued`). A query the model cannot take raises `QueryError`."""
        generation = self.agent.generate(image, query, max_new_tokens=self.max_new_tokens)
        record: dict = {"function": generation.function, "arguments": generation.arguments, "raw": generation.raw,
                        "timings_ms": {k: round(v, 1) for k, v in generation.timings_ms.items()}}
        if isinstance(generation.result, CallError):
            record["error"] = f"not a valid call ({generation.result.kind}: {generation.result.message})"
        elif generation.function is not None:
            dry_run = not self.execute
            try:
                record["outbox_id"] = self.outbox.enqueue(generation.function, generation.arguments, source, dry_run)
            except OutboxError as exc:  # disk full or read-only: the answer is shown, nothing is queued
                record.update(error=str(exc), not_queued=True)
                return record
            record["dry_run"] = dry_run
            record["action"] = ("dry run: " if dry_run else "") + self.actions.describe(generation.function,
                                                                                       generation.arguments)
        return record

    def deliver(self, item_id: str) -> dict:
        """Deliver one recorded item now (what `ask` does; the daemon's sender delivers in the background).
        Returns the item's outcome: a retryable failure stays queued for the daemon."""
        item = self.outbox.deliver_one(item_id, self.actions.perform_item) or self.outbox.get(item_id)
        return {"outbox_id": item_id, "status": item.status, "detail": item.result}
