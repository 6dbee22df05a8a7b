"""The write side: enrolling devices, sending commands, operators, erasure, backups; every change an event."""
