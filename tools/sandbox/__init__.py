"""The trust boundary: who runs untrusted code, where, and how it is stopped."""
