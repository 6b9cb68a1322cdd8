"""The pure core: no I/O, no SDKs, no database. Everything here is testable with plain values."""
