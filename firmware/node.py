"""Node logic: sample, queue until acknowledged, batch, resend. No I/O, no clock of its own.

Readings get seq = 1, 2, ... per boot. The queue holds at most ``capacity`` unacknowledged
readings; a reading taken while it is full is dropped and counted (the count travels in
every readings message, so the gateway can show the loss). The oldest readings are kept:
they are the ones the gateway has been offered already.

Sending is stop-and-wait: the oldest ``batch`` readings are sent, then nothing more until
an ack arrives or ``resend_ms`` passes, when the same readings are sent again. An ack
(boot, seq) removes every reading of this boot up to seq. Time is passed in by the caller
(milliseconds of uptime), so this module runs unchanged on a board and in tests.
"""

import nodeproto


class Node:
    """One node's delivery state; see the module docstring."""

    def __init__(
        self, node_id: str, boot: int, capacity: int = 48, batch: int = 12, resend_ms: int = 1000
    ) -> None:
        self.node_id = node_id
        self.boot = boot
        self.capacity = capacity
        self.batch = batch
        self.resend_ms = resend_ms
        self.queue: list[tuple[int, int, str, str, float]] = []
        self.next_seq = 1
        self.acked = 0
        self.dropped = 0
        self.sent_at = -1  # uptime of the last send; -1 = nothing in flight
        self.sends = 0

    def add(self, t_ms: int, name: str, unit: str, value: float) -> bool:
        """Queue one reading; False (and counted) when the queue is full."""
        if len(self.queue) >= self.capacity:
            self.dropped += 1
            return False
        self.queue.append((self.next_seq, t_ms, name, unit, value))
        self.next_seq += 1
        return True

    def on_payload(self, payload: bytes) -> bool:
        """Apply one received payload; True when it was an ack that freed readings."""
        ack = nodeproto.parse_ack(payload)
        if ack is None or ack[0] != self.boot or ack[1] <= self.acked:
            return False
        self.acked = min(ack[1], self.next_seq - 1)
        while self.queue and self.queue[0][0] <= self.acked:
            self.queue.pop(0)
        self.sent_at = -1  # in-flight readings are settled: the next batch may go
        return True

    def due(self, now_ms: int) -> bytes | None:
        """The frame to send now, if any (a new batch, or a resend after a timeout)."""
        if not self.queue:
            return None
        if self.sent_at >= 0 and now_ms - self.sent_at < self.resend_ms:
            return None
        self.sent_at = now_ms
        self.sends += 1
        records = self.queue[: self.batch]
        payload = nodeproto.readings(self.node_id, self.boot, now_ms, self.dropped, records)
        # A leading zero ends any noise or partial frame the gateway holds (resync point).
        return b"\x00" + nodeproto.frame(payload)

    def hello(self, firmware: str) -> bytes:
        """The hello frame, with a leading zero byte that ends any partial frame on the line."""
        return b"\x00" + nodeproto.frame(nodeproto.hello(self.node_id, self.boot, firmware))
