"""What every command of the command line needs: its arguments, the environment, the
streams, the configuration, a connected client, the state store, and a way to run another
command in-process.

Owns `Context` and the production client factory. Heavy modules (the HTTP client, the
checks) are imported when a command first asks for a client, never at import time.

Must not: print results, decide exit codes (the commands and `jatos_sync.cli` do).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from jatos_sync.config import Config, default_config_path, load_config
from jatos_sync.credentials import load_token

if TYPE_CHECKING:
    from jatos_sync.client import JatosClient
    from jatos_sync.progress import Tally
    from jatos_sync.state import StateStore

ClientFactory = Callable[[Config, Any], "JatosClient"]


def default_client(config: Config, token: Any) -> JatosClient:
    """The client of the configuration's `server:` section."""
    from jatos_sync.client import JatosClient

    return JatosClient.for_server(config.server, token)


QUICK_TIMEOUT_S = 10.0  # while a person waits for an answer (init)


def quick_client(config: Config, token: Any) -> JatosClient:
    """A client that tries once, with a short time limit: for `check` at the end of
    `init`, where a wrong address must not keep a person waiting through retries."""
    from jatos_sync.client import JatosClient

    return JatosClient.for_server(
        config.server, token, retries=0, timeout_s=min(config.server.timeout_s, QUICK_TIMEOUT_S)
    )


class Context:
    """What every command needs: arguments, environment, streams and the client seam."""

    def __init__(
        self,
        args: argparse.Namespace,
        environ: Mapping[str, str],
        out: TextIO,
        err: TextIO,
        stdin: TextIO,
        client_factory: ClientFactory,
    ) -> None:
        self.args, self.environ, self.out, self.err, self.stdin = args, environ, out, err, stdin
        self.client_factory = client_factory
        self.tallies: list[Tally] = []  # the passes' file counts, for Ctrl-C

    def progress(self, *, enabled: bool, label: str) -> Tally:
        """A tally of a pass's files, with a bar on a terminal when `enabled`."""
        from jatos_sync.progress import Tally, progress_for

        bar = progress_for(self.err, enabled=enabled, label=label, environ=self.environ)
        tally = Tally(bar)
        self.tallies.append(tally)
        return tally

    def how_far(self) -> str:
        """What Ctrl-C leaves behind, and how to finish."""
        files = sum(t.files for t in self.tallies)
        done = sum(t.done for t in self.tallies)
        command = f"jatos-sync {self.args.command}"
        if not files:
            return f"interrupted; nothing was left half done. Run `{command}` again to finish."
        return (
            f"interrupted after {done} of {files} files. Nothing is lost: run `{command}` "
            "again to finish; what is already done is not done twice."
        )

    @property
    def config_path(self) -> Path:
        path = Path(self.args.config) if self.args.config else default_config_path(self.environ)
        return path.absolute()

    def config(self) -> Config:
        return load_config(self.config_path)

    def runner(
        self, *command: str, client_factory: ClientFactory | None = None
    ) -> Callable[[Path], int]:
        """Run another command of this program in-process, on another config file, with
        this command's log format and verbosity."""
        from jatos_sync.cli import main

        noise = ["-v"] if self.args.verbose else ["-q"] if self.args.quiet else []

        def run(config_path: Path) -> int:
            argv = ["-c", str(config_path), "--log-format", self.args.log_format, *noise]
            return main(
                [*argv, *command],
                environ=self.environ,
                stdout=self.out,
                stderr=self.err,
                client_factory=client_factory or self.client_factory,
            )

        return run

    def connect(self, config: Config) -> tuple[JatosClient, Any]:
        """A client whose token the server has accepted, and what it said about the token."""
        from jatos_sync.check import warn_about_token

        client = self.client(config)
        try:
            info = client.token_info()
        except BaseException:
            client.close()
            raise
        warn_about_token(info)
        return client, info

    def store(self, config: Config) -> StateStore:
        from jatos_sync.state import StateStore

        return StateStore(config.state_dir)

    def client(self, config: Config) -> JatosClient:
        """A client without the token check of `connect` (the first request checks it)."""
        from jatos_sync.check import warn_before_connecting

        token = load_token(config.server, environ=self.environ)
        warn_before_connecting(config.server.url)
        return self.client_factory(config, token)
