"""Each prediction's ordered event log: a Redis Stream whose entry ids are `<seq>-0`.

Every event is appended here before anyone is told about it; the SSE view, the WebSocket
consumer and the OpenAI-compatible stream all tail the log from an offset, so a client
that connects late or reconnects gets every event after its last seq exactly once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

import redis
from django.conf import settings
from redis.commands.core import Script

from portal.redis_client import sync_client

STREAM_MAX_EVENTS = 50_000
# After the terminal event the log stays for late joiners, then the database answers.
RETENTION_SECONDS = 24 * 3600
TERMINAL_EVENT = "done"
REDIS_RETRY_SECONDS = 0.5
# How far back a resent append looks for its first send (see _APPEND_SCRIPT).
RESEND_WINDOW = 16

# Seq and append in one atomic step, so several writers (worker, canceler, reaper) never
# reuse a seq and readers always see seqs in increasing order.
# ARGV[5] names this append: redis-py resends a command whose reply it lost (Redis
# restarting, a dropped connection), and if the first send ran, its entry is among the
# last few (other writers append a handful at most meanwhile); the resend returns that
# entry's seq instead of writing the event twice.
# KEYS[3], when given, is a flag the appender watches (a worker, its cancel flag): the
# reply says whether it is set, which saves the worker a round trip per token.
_APPEND_SCRIPT = """
local flagged = 0
if KEYS[3] then flagged = redis.call('EXISTS', KEYS[3]) end
local recent = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[6])
for _, entry in ipairs(recent) do
  if entry[2][6] == ARGV[5] then
    return {tonumber(string.match(entry[1], '^%d+')), flagged}
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], seq .. '-0',
  't', ARGV[1], 'd', ARGV[2], 'a', ARGV[5])
if ARGV[1] == 'done' then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {seq, flagged}
"""


@dataclass(frozen=True)
class Event:
    seq: int
    type: str
    data: object

    def as_message(self) -> dict:
        return {"seq": self.seq, "type": self.type, "data": self.data}

    @cached_property
    def sse(self) -> bytes:
        """The Server-Sent Event, encoded once: the hub hands the same Event to every
        stream watching its log (5000 idle streams each encoded it on their own)."""
        data = json.dumps(self.data)
        return f"id: {self.seq}\nevent: {self.type}\ndata: {data}\n\n".encode()


def stream_key(prediction_id: str) -> str:
    return f"pred:{{{prediction_id}}}:events"


def _seq_key(prediction_id: str) -> str:
    return f"pred:{{{prediction_id}}}:seq"


@lru_cache(maxsize=1)
def _append_script(client: redis.Redis) -> Script:
    # Registered once: later calls send only the script's SHA (EVALSHA).
    return client.register_script(_APPEND_SCRIPT)


def append(prediction_id: str, type_: str, data: object) -> int:
    """Appends one event and returns its seq."""
    seq, _ = _append(prediction_id, type_, data, [])
    return seq


def append_watching(prediction_id: str, type_: str, data: object, flag_key: str) -> bool:
    """Appends one event and says whether `flag_key` is set, in one round trip."""
    _, flagged = _append(prediction_id, type_, data, [flag_key])
    return flagged


def _append(prediction_id: str, type_: str, data: object, watched: list[str]) -> tuple[int, bool]:
    script = _append_script(sync_client())
    keys = [stream_key(prediction_id), _seq_key(prediction_id), *watched]
    append_id = secrets.token_hex(8)
    args = [type_, json.dumps(data), STREAM_MAX_EVENTS, RETENTION_SECONDS, append_id, RESEND_WINDOW]
    seq, flagged = script(keys=keys, args=args)
    return int(seq), bool(flagged)


def decode(entry_id: bytes, fields: dict[bytes, bytes]) -> Event:
    return Event(
        seq=int(entry_id.split(b"-")[0]),
        type=fields[b"t"].decode(),
        data=json.loads(fields[b"d"]),
    )


def read_after(prediction_id: str, after_seq: int, count: int = 1000) -> list[Event]:
    entries = sync_client().xrange(stream_key(prediction_id), min=f"({after_seq}-0", count=count)
    return [decode(entry_id, fields) for entry_id, fields in entries]


def erase(prediction_ids: list[str]) -> None:
    """Drops the event logs (they hold the output) of finished predictions."""
    pipeline = sync_client().pipeline(transaction=False)
    for prediction_id in prediction_ids:
        # One DEL per prediction: its two keys share a hash slot, different ids may not.
        pipeline.delete(stream_key(prediction_id), _seq_key(prediction_id))
    pipeline.execute()


def log_exists(prediction_id: str) -> bool:
    return bool(sync_client().exists(_seq_key(prediction_id)))


def wait_for_terminal(
    prediction_id: str, seconds: float, *, tick: float, on_tick: Callable[[], None]
) -> None:
    """Blocks until the prediction's terminal event or the deadline, calling `on_tick` at
    least every `tick` seconds (to renew the waiter's slot).

    The blocking reads use a connection of their own, closed on return: one from the
    process's pool would be held for the whole wait, and a few dozen waits would take
    the pool every other request needs."""
    deadline = time.monotonic() + seconds
    key = stream_key(prediction_id)
    last = "0-0"
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=None)
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            block_ms = int(min(remaining, tick) * 1000) + 1
            try:
                response = client.xread({key: last}, count=500, block=block_ms)
            except (redis.ConnectionError, redis.TimeoutError):
                # Redis restarting: wait, then read on from the last seen entry.
                time.sleep(REDIS_RETRY_SECONDS)
                response = None
            on_tick()
            for entry_id, fields in response[0][1] if response else []:
                last = entry_id
                if fields[b"t"] == TERMINAL_EVENT.encode():
                    return
    finally:
        client.close()
