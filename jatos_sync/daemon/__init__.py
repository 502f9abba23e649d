"""The `watch` daemon, one job per module.

- `worker.py`: one mapping followed in its own thread (watcher → debouncer → passes), paused
  and retried with backoff; `Timings`.
- `supervisor.py`: `Daemon`, which starts, restarts and stops the workers, reloads on SIGHUP,
  talks to systemd; and `run`, the entry of `jatos-sync watch`.
- `status.py`: what each mapping is doing: the status file and `read_status`.
"""
