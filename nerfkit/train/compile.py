"""``--compile``: the method's fields through ``torch.compile``, falling back to eager code when the compiler
fails (no C++ compiler for the CPU backend, an unsupported operation, ...), with one warning.

The field's ``forward`` (compiled for training, where gradients are on; evaluation renders with the eager
code, so it compiles nothing more) and its ``query_density`` (occupancy-grid updates and early stopping) are
replaced on the instance; parameters and ``state_dict`` keys do not change, so checkpoints stay
interchangeable with eager runs.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

__all__ = ["compile_fields", "FIELD_NAMES"]

FIELD_NAMES = ("field", "coarse", "fine")
"""Attributes of a method that hold fields (``field`` for occupancy-grid recipes, ``coarse``/``fine`` for the
coarse-to-fine one)."""


class _Fallback:
    """Shared by one method's compiled functions: the first compiler failure warns once and turns all eager."""

    def __init__(self) -> None:
        self.failed = False


class _CompiledOrEager:
    def __init__(self, eager, name: str, fallback: _Fallback, train_only: bool) -> None:
        self.eager, self.name, self.fallback, self.train_only = eager, name, fallback, train_only
        self.compiled = torch.compile(eager, dynamic=True)
        self.backward_with_forward = _backward_compiled_with_forward()  # one context, entered at every call

    def __call__(self, *args, **kwargs):
        if self.fallback.failed or (self.train_only and not torch.is_grad_enabled()):
            return self.eager(*args, **kwargs)
        try:
            with self.backward_with_forward:
                return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.TorchDynamoException as err:  # compiler failures, not errors of the model
            if not self.fallback.failed:
                cause = getattr(err, "inner_exception", None) or err.__cause__ or err
                text = str(cause).strip().splitlines()
                warnings.warn(f"--compile: torch.compile failed on {self.name} ({type(cause).__name__}"
                              f"{': ' + text[0] if text else ''}); training continues with eager code",
                              RuntimeWarning, stacklevel=2)
            self.fallback.failed = True
            return self.eager(*args, **kwargs)


def _backward_compiled_with_forward():
    """A context in which AOTAutograd compiles a graph's backward together with its forward (reusable: build it
    once, as each new one leaves state behind in the thread's context when it exits).

    Otherwise, where it may (static shapes) or where compiling the backward fails, it defers that to the first
    ``backward()``, whose compiler error would surface there, outside the fallback of :class:`_CompiledOrEager`,
    and end the run. (``torch._functorch.config.force_non_lazy_backward_lowering``; a no-op on a torch without
    it.)"""
    import torch._functorch.config as config

    if not hasattr(config, "force_non_lazy_backward_lowering"):
        return contextlib.nullcontext()
    return config.patch(force_non_lazy_backward_lowering=True)


def compile_fields(method: nn.Module) -> list[str]:
    """Compiles ``forward`` and ``query_density`` of each field of ``method`` in place (lazily: the compiler
    runs at the first call). Returns the names of the fields it wrapped."""
    fallback, names = _Fallback(), []
    for name in FIELD_NAMES:
        field = getattr(method, name, None)
        if not isinstance(field, nn.Module):
            continue
        names.append(name)
        field.forward = _CompiledOrEager(field.forward, f"{name}.forward", fallback, train_only=True)
        if hasattr(field, "query_density"):
            field.query_density = _CompiledOrEager(field.query_density, f"{name}.query_density", fallback,
                                                   train_only=False)
    return names
