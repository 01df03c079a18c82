"""The link server's process-level settings for holding many links."""

from __future__ import annotations

import resource

from cloud.link import PING_INTERVAL_S, PING_TIMEOUT_S, raise_open_files_limit


def test_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
        if hard == resource.RLIM_INFINITY:
            assert raised > lowered
        else:
            assert raised == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_keepalive_interval_outlasts_the_pong_timeout() -> None:
    # websockets' Trio keepalive waits ``interval - latency`` before its next ping and
    # fails with ValueError when a pong came later than the interval: a pong is either in
    # time (latency <= timeout < interval) or the link is closed.
    assert PING_TIMEOUT_S < PING_INTERVAL_S
