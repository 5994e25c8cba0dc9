"""Attributes of the strategy that read and write other state: a mini-batch's fields, and
the names Avalanche gives to the strategy's own."""

from __future__ import annotations


class BatchField:
    """``strategy.mb_x`` and friends: a field of the current :class:`~clreplay.data.MiniBatch`,
    read and set."""

    def __init__(self, field: str, doc: str) -> None:
        self.field, self.__doc__ = field, doc

    def __get__(self, strategy, owner=None):
        if strategy is None:
            return self
        mb = strategy.mb
        return None if mb is None else getattr(mb, self.field)

    def __set__(self, strategy, value) -> None:
        setattr(strategy._mb(), self.field, value)


class Alias:
    """Another name for an attribute, read and set through it (``strategy._criterion``, the
    name Avalanche's plugins use for ``strategy.loss_fn``).

    >>> class Box:
    ...     old = Alias("new", "the old name of new")
    >>> box = Box(); box.new = 1; box.old = box.old + 1
    >>> box.new
    2
    """

    def __init__(self, target: str, doc: str) -> None:
        self.target, self.__doc__ = target, doc

    def __get__(self, obj, owner=None):
        return self if obj is None else getattr(obj, self.target)

    def __set__(self, obj, value) -> None:
        setattr(obj, self.target, value)
