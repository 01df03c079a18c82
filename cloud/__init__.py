"""The AssetBook cloud core: link server, router, storage, REST API and their helpers."""
