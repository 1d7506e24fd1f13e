"""Outbound campaigns: leads, calling windows, the sans-I/O scheduler, the store and the dialer."""
