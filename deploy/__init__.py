"""Deployment: the gateway's Debian package and systemd unit, container images, compose file."""
