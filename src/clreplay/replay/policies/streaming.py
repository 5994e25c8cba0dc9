"""StreamingStoragePolicy: a storage policy that can also be fed one mini-batch at a time."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

from torch import Tensor

from clreplay.replay.policies.base import StoragePolicy


class StreamingStoragePolicy(StoragePolicy, ABC):
    """A storage policy with a per-mini-batch update, for online replay.

    Besides ``policy(strategy)`` (store from a whole experience),
    :meth:`update_from_batch` stores from the tensors of one mini-batch of
    ``strategy.experience``, so an :class:`~clreplay.replay.online.OnlineReplayPlugin`
    can update the memory after every step without building datasets. Other
    policies still work online, fed each mini-batch as a tiny experience.
    """

    @abstractmethod
    def update_from_batch(self, strategy, x: Tensor, y: Tensor, t: Tensor, *, columns=None) -> Optional[bool]:
        """Store from the samples ``x`` (labels ``y``, task labels ``t``) of a mini-batch.

        ``strategy.experience`` is the experience they come from (its
        ``current_experience`` is their provenance). ``columns`` maps other columns of
        the store to their values for these samples (one row each), e.g. the logits
        the model gave them (a mapping that may compute them when first looked up:
        only when a sample is kept); columns it does not name read their fill.

        Returns False when the memory is unchanged (no sample stored), so that online
        replay goes on reading it as before; True or None: it may have changed.
        """
