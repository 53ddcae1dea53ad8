"""The embedded AWS emulator: a moto server on 127.0.0.1 in this process, plus client factory.

Everything the sandbox and the runtime do goes through boto3 against this server, so every
payload is checked against the AWS API model. Because the server is a thread of this process,
the sandbox can also read moto's backends directly where that is cheaper (alarm evaluation reads
metric data in place; see :mod:`rollback.sandbox.moto_patches` for the behaviours added to moto).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from rollback.runtime.errors import SandboxError
from rollback.sandbox import moto_patches

#: moto's default account; ARNs the sandbox builds use it.
ACCOUNT_ID = "123456789012"

#: Fake credentials: the emulator accepts anything, real AWS would refuse these.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


class Emulator:
    """A moto server bound to a free loopback port, and boto3 clients pointed at it.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. While started, the process
    environment carries ``AWS_ENDPOINT_URL``, the region and fake credentials, so code that builds
    its own clients through boto3's standard chain (the Lambda handlers, the CLI) reaches the
    emulator too; :meth:`stop` restores the previous environment.
    """

    def __init__(self, region: str = "us-east-1", port: int = 0) -> None:
        self.region = region
        self._port = port
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._session: boto3.session.Session | None = None
        self.endpoint_url = ""
        self.attached = False

    @classmethod
    def attach(cls, endpoint_url: str, region: str) -> Emulator:
        """An emulator another process runs (``mlrollback sandbox up``): its clients, not its backends.

        Enough for the applier, which only talks to the emulator through boto3.
        """
        emu = cls(region)
        emu.endpoint_url = endpoint_url.rstrip("/")
        emu.attached = True
        return emu

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        """Start the server (free port unless one was given); return its endpoint URL."""
        if self.attached:
            raise SandboxError(f"the emulator at {self.endpoint_url} runs in another process")
        from moto.server import ThreadedMotoServer

        moto_patches.install()
        # werkzeug logs one line per request on stderr; the drill makes thousands.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self._set_env(self.env())
        return self.endpoint_url

    def stop(self) -> None:
        """Stop the server, forget moto's state and restore the environment."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            reset_backends()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        self._clients = {}

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 (and the AWS CLI) at this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **FAKE_CREDENTIALS,
        }

    def _set_env(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        # A profile from the developer's machine must not leak real credentials into the sandbox.
        self._saved_env.setdefault("AWS_PROFILE", os.environ.get("AWS_PROFILE"))
        os.environ.pop("AWS_PROFILE", None)

    def client(self, service: str) -> Any:
        """A cached boto3 client for ``service`` against the emulator; safe to call from any thread.

        Pulumi's mock runtime calls the appliers from a thread pool, so two appliers may ask for
        the same client at once. boto3 sessions are not thread-safe, and a client builds its
        modeled exception classes lazily on first use: two threads doing that together can each
        get their own ``ResourceNotFoundException`` class, and an ``except`` on one then misses an
        error raised as the other. Clients are therefore made, and their exceptions loaded, under
        a lock from one session the emulator owns.
        """
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                client = self._session.client(
                    service,
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    config=Config(retries={"max_attempts": 2, "mode": "standard"}),
                )
                _ = client.exceptions  # load the modeled exception classes once, here
                self._clients[service] = client
        return client

    def backend(self, service: str) -> Any:
        """moto's in-process backend of ``service`` for this account and region."""
        if self.attached:
            raise SandboxError(
                f"the emulator at {self.endpoint_url} runs in another process: its {service} state is only "
                "reachable through the AWS API (use client())"
            )
        from moto.backends import get_backend

        return get_backend(service)[ACCOUNT_ID][self.region]  # type: ignore[call-overload]

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        """An ARN in this emulator's account (and region unless ``region=False``)."""
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID}:{resource}"


def reset_backends() -> None:
    """Forget all state of moto's in-process backends (a new sandbox starts empty)."""
    from moto.moto_api import _internal

    _internal.moto_api_backend.reset()


def ping(endpoint_url: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections at ``endpoint_url`` (used by ``sandbox status``).

    A TCP connect, not an API call: moto's state dump grows with the deployed stack.
    """
    parsed = urllib.parse.urlparse(endpoint_url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 80), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Temporarily set environment variables (restored afterwards, also on error)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
