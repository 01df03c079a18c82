"""Identity: users, tenants' login settings, secrets at rest, sessions and tokens for people.

The package is split so that every decision is testable without I/O:

* pure (no I/O, no clock, no randomness): :mod:`.personnummer`, :mod:`.policy`,
  :mod:`.lockout`, :mod:`.roles`;
* crypto with keys passed in: :mod:`.keyring` (the outside-the-database key), :mod:`.hashing`;
* the store and the shells: :mod:`.store` (SQLite tables ``identity_*``), :mod:`.service`
  (login, reset, TOTP), :mod:`.sessions` (refresh families, logout), :mod:`.mail` (SMTP).

It does not serve HTTP (that is :mod:`cloud.api`) and does not sign JWTs itself
(:mod:`cloud.tokens` does).
"""
