"""``mlrollback sandbox up``: an emulator with the stack deployed, kept running in the background.

The daemon process starts the emulator on a free loopback port, applies the stack's program,
writes ``endpoint_url``, ``pid`` and ``daemon.json`` under ``.mlrollback/sandbox/`` (read by
``--sandbox`` in the other commands, see :func:`rollback.ops.stack_context.sandbox_endpoint`), and then,
once a second of real time, publishes the metrics of predictions sent to it, evaluates alarms and
delivers alarm events and schedules to the Lambda handlers, as the drill does on a virtual clock.

:func:`apply_stack` applies the stack file's program again to that running emulator, from the
calling process (``mlrollback revert --apply --sandbox``): the applier only needs the emulator's
API. The daemon notices the new applier state and re-reads the EventBridge rules.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollback.ops.stack_context import SANDBOX_DIR
from rollback.runtime.errors import SandboxError


def sandbox_dir(root: Path) -> Path:
    """Where the background sandbox of the project at ``root`` keeps its files."""
    return root / SANDBOX_DIR


def read_info(root: Path) -> dict[str, Any] | None:
    """The running sandbox's ``daemon.json`` (pid, port, endpoint_url, stack), or None."""
    path = sandbox_dir(root) / "daemon.json"
    if not path.is_file():
        return None
    try:
        return dict(json.loads(path.read_text()))
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_background(root: Path, stack: str, timeout: float = 60.0) -> dict[str, Any]:
    """Spawn the daemon for ``stack`` and wait until it reports ready; return its info."""
    info = read_info(root)
    if info and pid_alive(int(info["pid"])):
        raise SandboxError(
            f"a sandbox is already running for stack {info.get('stack')} (pid {info['pid']}, "
            f"{info.get('endpoint_url')}); stop it with `mlrollback sandbox down`"
        )
    base = sandbox_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    for name in ("daemon.json", "endpoint_url", "pid", "error"):
        (base / name).unlink(missing_ok=True)
    log = (base / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollback.sandbox.daemon", "--stack", stack, "--project-dir", str(root)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=str(root),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_info(root)
        if info:
            return info
        if proc.poll() is not None:
            error = (
                (base / "error").read_text()
                if (base / "error").exists()
                else (base / "daemon.log").read_text()
            )
            raise SandboxError(f"the sandbox failed to start: {error.strip()[-800:]}")
        time.sleep(0.2)
    proc.terminate()
    raise SandboxError(f"the sandbox did not become ready within {timeout:.0f} s; see {base / 'daemon.log'}")


def stop_background(root: Path, timeout: float = 10.0) -> dict[str, Any] | None:
    """Stop the running daemon (SIGTERM to its pid) and remove its files; None if none ran."""
    info = read_info(root)
    base = sandbox_dir(root)
    if not info:
        return None
    pid = int(info["pid"])
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    for name in ("daemon.json", "endpoint_url", "pid"):
        (base / name).unlink(missing_ok=True)
    return info


def running_info(root: Path) -> dict[str, Any]:
    """The running sandbox's info, or a :class:`SandboxError` saying how to start one."""
    from rollback.sandbox.emulator import ping

    info = read_info(root)
    if not info or not pid_alive(int(info["pid"])) or not ping(str(info["endpoint_url"])):
        raise SandboxError(
            f"no sandbox is running in {root} (no live {sandbox_dir(root) / 'daemon.json'}); "
            "start one with `mlrollback sandbox up --stack <stack>`"
        )
    return info


def _program_path(root: Path) -> Path | None:
    path = root / "infra" / "__main__.py"
    return path if path.is_file() else None


def apply_stack(root: Path, stack: str, *, actor: str = "sandbox:apply") -> dict[str, Any]:
    """Apply ``environments/Pulumi.<stack>.yaml`` of ``root`` to the running background sandbox.

    The sandbox's ``pulumi up``: the real program under the mock runtime, each resource created or
    updated through boto3 against the daemon's emulator, with the daemon's applier state (so it
    updates what ``sandbox up`` created). One apply at a time (a lock file). Returns what
    :func:`rollback.ops.pulumi_cli.up` returns (``result``, ``changes``) plus the resources touched.
    ``deploys`` lists the ``deploy`` audit items recorded for it (one per endpoint, as CI's
    ``record-deploy`` does after ``pulumi up``). Raises :class:`SandboxError` when no sandbox runs
    or it serves another stack.
    """
    from infra.config import pulumi_config_from_stack_file
    from rollback.sandbox.deploy_log import record_applied
    from rollback.sandbox.emulator import Emulator, environment
    from rollback.sandbox.runner import apply_program
    from rollback.sandbox.simulation import stack_file

    root = root.resolve()
    info = running_info(root)
    if info.get("stack") != stack:
        raise SandboxError(
            f"the running sandbox serves stack {info.get('stack')}, not {stack}: run `mlrollback sandbox "
            f"down` and `mlrollback sandbox up --stack {stack}`, or pass --stack {info.get('stack')}"
        )
    config = pulumi_config_from_stack_file(stack_file(stack, root))
    emu = Emulator.attach(str(info["endpoint_url"]), str(info.get("region") or "us-east-1"))
    base = sandbox_dir(root)
    with (base / "apply.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Anything in the program that builds its own client reaches the sandbox, never real AWS.
        with environment(emu.env()):
            result = apply_program(
                emu,
                stack=stack,
                config=config,
                state_path=base / "applied.json",
                program_path=_program_path(root),
            )
            deploys = record_applied(emu, config, stack, actor=actor, project_dir=root)
    same = len(result.resources) - len(result.created) - len(result.updated)
    return {
        "result": "succeeded",
        "changes": {"create": len(result.created), "update": len(result.updated), "same": max(0, same)},
        "created": list(result.created),
        "updated": list(result.updated),
        "resources": len(result.resources),
        "warnings": list(result.warnings),
        "deploys": deploys,
        "stack": stack,
        "endpoint_url": emu.endpoint_url,
    }


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def serve(stack: str, root: Path) -> None:
    """The daemon body: emulator + deployed stack + the real-time loop, until SIGTERM."""
    from infra.config import pulumi_config_from_stack_file
    from rollback.runtime.metrics import MetricsPublisher
    from rollback.sandbox import moto_patches
    from rollback.sandbox.alarm_evaluator import AlarmEvaluator
    from rollback.sandbox.deploy_log import record_applied
    from rollback.sandbox.emulator import Emulator
    from rollback.sandbox.eventbus import EventBus
    from rollback.sandbox.runner import apply_program
    from rollback.sandbox.simulation import stack_file
    from rollback.sandbox.traffic import SimulatedCloud

    base = sandbox_dir(root)
    path = stack_file(stack, root)
    config = pulumi_config_from_stack_file(path)
    emu = Emulator(config.get("aws:region", "us-east-1"))
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emu.start()
    try:
        now = lambda: datetime.now(UTC)  # noqa: E731
        # Callers of the background sandbox are plain boto3 clients that publish no custom metrics,
        # so the simulated endpoint counts them (the drill's client publishes its own instead).
        cloud = SimulatedCloud(emu, now, publisher=MetricsPublisher(emu.client("cloudwatch")))
        moto_patches.set_invoke_hook(cloud.route)
        # A new emulator starts empty: the previous daemon's applier state describes nothing here.
        (base / "applied.json").unlink(missing_ok=True)
        state_path = base / "applied.json"
        result = apply_program(
            emu, stack=stack, config=config, state_path=state_path, program_path=_program_path(root)
        )
        applied_at = _mtime(state_path)
        deploys = record_applied(emu, config, stack, actor="sandbox:up", project_dir=root)
        evaluator = AlarmEvaluator(emu.backend("cloudwatch"), now)
        bus = EventBus(emu, now)
        info = {
            "pid": os.getpid(),
            "port": int(emu.endpoint_url.rsplit(":", 1)[1]),
            "endpoint_url": emu.endpoint_url,
            "stack": stack,
            "region": emu.region,
            "resources": len(result.resources),
            "deploys": [d["id"] for d in deploys],
            "started_at": datetime.now(UTC).isoformat(),
        }
        (base / "endpoint_url").write_text(emu.endpoint_url + "\n")
        (base / "pid").write_text(f"{os.getpid()}\n")
        tmp = base / "daemon.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, base / "daemon.json")
        print(f"sandbox for {stack} ready at {emu.endpoint_url}", flush=True)
        while not stopping:
            time.sleep(1.0)
            if _mtime(state_path) != applied_at:
                # `apply_stack` ran from another process: rules and targets may have changed.
                applied_at = _mtime(state_path)
                bus.invalidate()
            cloud.flush()
            bus.publish_alarm_changes(evaluator.tick())
            bus.run_schedules()
    finally:
        emu.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m rollback.sandbox.daemon --stack dev --project-dir .`` (spawned by ``sandbox up``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    root = args.project_dir.resolve()
    try:
        serve(args.stack, root)
    except Exception as exc:
        with contextlib.suppress(OSError):
            (sandbox_dir(root) / "error").write_text(f"{type(exc).__name__}: {exc}\n")
        raise


if __name__ == "__main__":
    main()
