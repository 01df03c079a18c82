"""Modules that run beside the core as their own processes and talk to it over the link."""
