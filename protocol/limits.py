"""Explicit size limits and identifiers of the link protocol (``docs/protocol.md`` §Limits).

The limits bound what a single peer can make the other allocate. Both sides enforce them:
the encoder refuses to build an oversized message and the decoder refuses to accept one.
"""

from __future__ import annotations

from typing import Final

#: The WebSocket subprotocol; the trailing number is the protocol version.
SUBPROTOCOL: Final = "assetbook.link.v1"
PROTOCOL_VERSION: Final = 1

#: Largest WebSocket message either side accepts, in bytes.
MAX_MESSAGE_BYTES: Final = 1_048_576
#: Most events in one batch.
MAX_BATCH_EVENTS: Final = 2_000
#: Most SenML records in one event.
MAX_READINGS_PER_EVENT: Final = 64
#: Longest text field (ids, names, units, string values), in UTF-8 bytes.
MAX_TEXT_BYTES: Final = 256
#: Longest byte-string value in a reading.
MAX_BLOB_BYTES: Final = 4_096
#: Most topic patterns in one subscription request.
MAX_TOPICS: Final = 64
#: Largest unsigned integer on the wire (sequence numbers, times): 2**63 - 1 so that it fits
#: a signed 64-bit database column.
MAX_UINT: Final = 2**63 - 1
#: Boot ids are 16 bytes (the kernel's random boot UUID).
BOOT_ID_BYTES: Final = 16
