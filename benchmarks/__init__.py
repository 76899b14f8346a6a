"""Benchmarks for asyncmembers: ``python -m benchmarks [--quick | --smoke]``.

Every figure is a ratio or a fraction against a baseline measured in the same run
(interleaved pairs, medians). The embedded server runs in its own process, and so does
every client under test, so that a client's CPU time and peak RSS are its own.

Modules:

- ``_procs``: child processes (server and clients), their watchdogs and clean-up.
- ``_serverproc``: the embedded server in a child process, steered over a pipe.
- ``_clients``: the clients under test (asyncmembers, raw aiohttp, losant-rest, naive).
- ``_instant``: an in-process transport that answers at once (no network).
- ``_scenarios``: the six scenarios, each measuring and judging its own figures.
- ``_report``: the terminal table, ``RESULTS.md`` and ``throughput.png``.
- ``_profile``: where a client's time goes, per function, from pyinstrument samples.
- ``_bytecode``: compiles the measured packages' bytecode first, as pip does on install.
- ``instructions``: ``python -m benchmarks.instructions``, instructions per row counted
  under valgrind on the instant transport (deterministic, where timings scatter).
- ``syscalls``: ``python -m benchmarks.syscalls``, system calls per row of the cold jobs
  under strace (kernel work, which instruction counts do not see).
"""
