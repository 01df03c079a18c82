"""Fleet management in the core: proof of possession, desired configuration, releases, rollouts.

* :mod:`cloud.fleet.dpop`: DPoP proofs (RFC 9449) and JWK thumbprints (RFC 7638), sans-IO.
* :mod:`cloud.fleet.bundle`: signed update bundles (manifest, hashes, Ed25519 signature).
* :mod:`cloud.fleet.store`: desired and reported configuration, releases and rollouts (SQLite).
* :mod:`cloud.fleet.agent`: the Trio task that talks to connected gateways with ``Command``.
* :mod:`cloud.fleet.cli`: the operator's commands.

The gateway's side lives in ``gateway/`` (enrol, device_key, remote_config, update).
"""
