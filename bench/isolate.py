"""Run one benchmark function in a fresh interpreter and bring its return value back.

Each benchmark configures Django for itself (its own database, its own environment) and
some load models or hold thousands of sockets; a spawned child per call keeps them from
seeing each other's state, and gives their memory back when it ends.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any


class ChildFailed(RuntimeError):
    """The function raised in the child, or the child died; `details`: the traceback."""

    def __init__(self, details: str, exitcode: int | None):
        lines = details.strip().splitlines()
        super().__init__(f"{lines[-1] if lines else 'no answer'} (exit code {exitcode})")
        self.details = details


def _child_main(conn: Connection, function: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        conn.send((True, function(*args, **kwargs)))
    except BaseException:  # reported to the parent, whatever it was
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def in_child(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` in a spawned process; it must be a module-level name."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(sender, function, args, kwargs))
    process.start()
    sender.close()  # only the child holds it now: its death reads as EOF here
    try:
        ok, payload = receiver.recv()
    except EOFError:
        ok, payload = False, "the child died before it answered"
    finally:
        # Interrupted (Ctrl-C, SIGTERM) or done: the child must not outlive this call.
        if process.is_alive():
            process.join(timeout=5)
        if process.is_alive():
            process.terminate()
        process.join()
        receiver.close()
    if not ok:
        raise ChildFailed(payload, process.exitcode)
    return payload
