"""Gateway side of one node link: which readings are new, and what to acknowledge when.

The rules (``docs/node-protocol.md`` §Delivery):

* A node numbers its readings ``seq`` = 1, 2, ... per boot and resends every reading until
  an ack covers it. The gateway acknowledges a reading only once it is stored in the
  outbox, so a gateway that dies before storing simply never acks, and the node resends.
* Readings at or below what was stored, or already handed on and waiting to be stored,
  are duplicates: not handed on again, counted. A batch made only of stored duplicates is
  acknowledged at once (the earlier ack was lost on the line).
* A new ``boot`` starts the count again (the node restarted); a boot lower than the last
  one is accepted too (a node whose boot counter was wiped), and counted.
* Handed-on readings that are not reported stored within the caller's timeout are given up
  (:meth:`NodeSession.give_up`), so a later resend is accepted again rather than ignored.

:class:`NodeSession` is sans-IO: the caller passes messages in and sends the acks it gets
back; it keeps no clock (ages come from the node's own uptime stamps).
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.node.messages import Ack, Hello, Message, Readings, Record


@dataclass(frozen=True, slots=True)
class Delivery:
    """What to do with one received message.

    Attributes:
        new: records to store (in order); empty when there is nothing new.
        ack_now: an ack to send at once (nothing new to wait for), or ``None``.
        boot: the node boot the records belong to.
        now_ms: the node's uptime when it sent the batch (age of a record: now - t).
    """

    new: tuple[Record, ...] = ()
    ack_now: Ack | None = None
    boot: int = 0
    now_ms: int = 0


@dataclass(slots=True)
class NodeCounters:
    """Counters for health (never reset while the gateway runs)."""

    hellos: int = 0
    boots: int = 0  # boot changes seen (node restarts)
    boot_regressions: int = 0  # boot counter went down (wiped or replaced node)
    duplicates: int = 0  # records received again, not stored twice
    node_dropped: int = 0  # readings the node reports it discarded (its queue was full)
    given_up: int = 0  # handed-on records never reported stored in time


class NodeSession:
    """State of one node link (see the module docstring)."""

    def __init__(self) -> None:
        self.node_id: str | None = None
        self.boot: int | None = None
        self.stored = 0  # highest seq of ``boot`` known stored
        self.handed = 0  # highest seq of ``boot`` handed on (stored or waiting)
        self.counters = NodeCounters()
        self._dropped_seen = 0

    def receive(self, message: Message) -> Delivery:
        """Account for one message from the node."""
        if isinstance(message, Hello):
            self.counters.hellos += 1
            self._enter(message.node_id, message.boot)
            return Delivery(ack_now=Ack(message.boot, self.stored), boot=message.boot)
        if isinstance(message, Readings):
            return self._readings(message)
        return Delivery()  # an ack is gateway → node; a node echoing one is ignored

    def mark_stored(self, boot: int, seq: int) -> Ack | None:
        """Records of ``boot`` up to ``seq`` are in the outbox: the ack to send, if any."""
        if boot != self.boot or seq <= self.stored:
            return None  # a newer boot took over, or already acknowledged
        self.stored = seq
        self.handed = max(self.handed, seq)
        return Ack(boot, seq)

    def give_up(self, boot: int, seq: int) -> None:
        """Handed-on records of ``boot`` up to ``seq`` were not stored: accept them again."""
        if boot == self.boot and self.stored < seq <= self.handed:
            self.counters.given_up += seq - self.stored
            self.handed = self.stored

    def _readings(self, message: Readings) -> Delivery:
        self._enter(message.node_id, message.boot)
        if message.dropped > self._dropped_seen:
            self.counters.node_dropped += message.dropped - self._dropped_seen
            self._dropped_seen = message.dropped
        new = tuple(r for r in message.records if r.seq > self.handed)
        self.counters.duplicates += len(message.records) - len(new)
        if new:
            self.handed = new[-1].seq
            return Delivery(new=new, boot=message.boot, now_ms=message.now_ms)
        ack = Ack(message.boot, self.stored) if self.stored else None
        return Delivery(ack_now=ack, boot=message.boot, now_ms=message.now_ms)

    def _enter(self, node_id: str, boot: int) -> None:
        self.node_id = node_id
        if boot == self.boot:
            return
        if self.boot is not None:
            self.counters.boots += 1
            if boot < self.boot:
                self.counters.boot_regressions += 1
        self.boot = boot
        self.stored = self.handed = 0
        self._dropped_seen = 0
