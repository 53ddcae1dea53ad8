"""The background sandbox through real subprocesses: `sandbox up/status/down` and `apply_stack`.

One daemon for the module, started by `mlrollback sandbox up` in a copy of the project (stack
files copied, code symlinked) so the shared checkout's `.mlrollback/` is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from rollback.ops.deploy_records import deploy_records
from rollback.runtime.errors import SandboxError
from rollback.sandbox import apply_stack
from rollback.sandbox.daemon import pid_alive, read_info, sandbox_dir
from rollback.sandbox.emulator import FAKE_CREDENTIALS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "mlrollback")
ENDPOINT = "fraud-scorer-dev"


def _project(tmp: Path) -> Path:
    root = tmp / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "infra", "rollback", "schemas", "policy"):
        if (REPO / name).exists():
            (root / name).symlink_to(REPO / name)
    (root / "environments").mkdir()
    for path in (REPO / "environments").glob("Pulumi.*.yaml"):
        (root / "environments" / path.name).write_text(path.read_text())
    return root


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [CLI, *args, "--project-dir", str(root)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(root),
        timeout=120,
    )


def _sagemaker(endpoint_url: str) -> object:
    return boto3.client(
        "sagemaker",
        endpoint_url=endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = _project(tmp_path_factory.mktemp("background"))
    up = _cli(root, "sandbox", "up", "--stack", "dev")
    assert up.returncode == 0, up.stdout + up.stderr
    info = read_info(root)
    try:
        yield root
    finally:
        _cli(root, "sandbox", "down")
        if info and pid_alive(int(info["pid"])):  # down failed: do not leave the daemon behind
            os.kill(int(info["pid"]), signal.SIGKILL)


def test_up_deploys_the_stack_where_boto3_with_the_endpoint_url_sees_it(running: Path) -> None:
    url = (sandbox_dir(running) / "endpoint_url").read_text().strip()

    endpoint = _sagemaker(url).describe_endpoint(EndpointName=ENDPOINT)  # type: ignore[attr-defined]

    assert endpoint["EndpointStatus"] == "InService"
    assert {v["VariantName"] for v in endpoint["ProductionVariants"]} == {"stable", "candidate"}


def _deploys(endpoint_url: str) -> list[dict[str, Any]]:
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    return deploy_records(ddb, "mlrollback-dev-audit", ENDPOINT)


def test_up_records_the_deployed_release_as_a_deploy_audit_item(running: Path) -> None:
    info = read_info(running)
    assert info is not None

    records = _deploys(str(info["endpoint_url"]))

    assert len(records) == 1 and records[0]["actor"] == "sandbox:up"
    assert records[0]["detail"]["release"] == {"stable": "v1", "candidate": "v2", "shadow": None}
    assert info["deploys"] == [records[0]["at"].rsplit("#", 1)[-1]]


def test_status_reports_the_running_stack_and_address(running: Path) -> None:
    status = _cli(running, "sandbox", "status")

    info = read_info(running)
    assert status.returncode == 0, status.stderr
    assert info is not None and info["endpoint_url"] in status.stdout and "stack dev" in status.stdout


def test_second_up_while_one_runs_is_refused_with_a_clear_message(running: Path) -> None:
    again = _cli(running, "sandbox", "up", "--stack", "dev")

    assert again.returncode == 12
    assert "already running" in again.stderr and "mlrollback sandbox down" in again.stderr


def test_apply_stack_for_another_stack_is_refused(running: Path) -> None:
    with pytest.raises(SandboxError, match="serves stack dev, not staging"):
        apply_stack(running, "staging")


def test_apply_stack_updates_the_running_sandbox_from_the_stack_file(running: Path) -> None:
    path = running / "environments" / "Pulumi.dev.yaml"
    text = path.read_text()
    assert "stable: v1\n        candidate: v2\n" in text
    path.write_text(text.replace("stable: v1\n        candidate: v2\n", "stable: v1\n"))  # drop the candidate
    sm = _sagemaker(str(read_info(running)["endpoint_url"]))  # type: ignore[index]
    before = sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]  # type: ignore[attr-defined]

    result = apply_stack(running, "dev")

    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)  # type: ignore[attr-defined]
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])  # type: ignore[attr-defined]
    assert result["result"] == "succeeded" and result["changes"]["update"] > 0
    assert [d["release"] for d in result["deploys"]] == [{"stable": "v1", "candidate": None, "shadow": None}]
    assert len(_deploys(str(read_info(running)["endpoint_url"]))) == 2  # type: ignore[index]
    assert endpoint["EndpointConfigName"] != before
    assert [v["VariantName"] for v in config["ProductionVariants"]] == ["stable"]
    assert "-v1-" in config["ProductionVariants"][0]["ModelName"]
    assert pid_alive(int(read_info(running)["pid"]))  # type: ignore[index]


def test_revert_to_the_first_deployment_restores_its_release_through_the_cli(running: Path) -> None:
    first = (read_info(running) or {})["deploys"][0]

    revert = _cli(
        running, "revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--to-deployment", first,
        "--apply", "--sandbox", "--json", "--skip-schema-check",
    )  # fmt: skip

    assert revert.returncode == 0, revert.stdout + revert.stderr
    assert "stable: v1\n        candidate: v2\n" in (running / "environments" / "Pulumi.dev.yaml").read_text()
    sm = _sagemaker(str(read_info(running)["endpoint_url"]))  # type: ignore[index]
    endpoint = sm.describe_endpoint(EndpointName=ENDPOINT)  # type: ignore[attr-defined]
    assert {v["VariantName"] for v in endpoint["ProductionVariants"]} == {"stable", "candidate"}


def test_ctrl_c_during_revert_apply_leaves_the_old_file_one_line_and_exit_130(running: Path) -> None:
    """SIGINT (what Ctrl-C sends) while `revert --apply --sandbox` runs, through a real process."""
    import time

    path = running / "environments" / "Pulumi.dev.yaml"
    before = path.read_bytes()
    info = read_info(running)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_CREDENTIALS, AWS_ENDPOINT_URL=str(info["endpoint_url"]), AWS_REGION="eu-west-1")  # type: ignore[index]
    proc = subprocess.Popen(
        [CLI, "revert", "--stack", "dev", "--endpoint", "fraud-scorer", "--apply", "--sandbox",
         "--project-dir", str(running)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(running),
    )  # fmt: skip
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()  # a hung revert must not outlive the test (it holds the sandbox's apply lock)
        out, err = proc.communicate()
        pytest.fail(f"revert did not stop within 60 s of SIGINT:\n{err[-3000:]}")

    if proc.returncode == 0:
        pytest.skip("the revert finished before the interrupt arrived")
    assert proc.returncode == 130, out + err
    assert "interrupted" in err and "back to its previous text" in " ".join(err.split())
    assert "Traceback" not in err and "Task exception was never retrieved" not in err
    assert path.read_bytes() == before


def test_down_stops_the_daemon_and_removes_its_files(running: Path) -> None:
    pid = int(read_info(running)["pid"])  # type: ignore[index]

    down = _cli(running, "sandbox", "down")

    assert down.returncode == 0 and f"pid {pid}" in down.stdout
    assert not pid_alive(pid)
    assert not (sandbox_dir(running) / "pid").exists() and not (sandbox_dir(running) / "daemon.json").exists()
    status = _cli(running, "sandbox", "status")
    assert status.returncode == 3 and "no sandbox running" in status.stdout


def test_apply_stack_without_a_running_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    root = _project(tmp_path)

    with pytest.raises(SandboxError, match=r"no sandbox is running.*mlrollback sandbox up"):
        apply_stack(root, "dev")


def test_a_drill_started_right_after_sandbox_up_rolls_back_instead_of_hanging(tmp_path: Path) -> None:
    """`sandbox up` then at once the real-path drill against it (its SetAlarmState may beat the
    daemon's first evaluation tick; that state used to become the baseline and never be delivered)."""
    root = _project(tmp_path)
    up = _cli(root, "sandbox", "up", "--stack", "dev")
    assert up.returncode == 0, up.stdout + up.stderr
    info = read_info(root)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(FAKE_CREDENTIALS, AWS_ENDPOINT_URL=str(info["endpoint_url"]), AWS_REGION="eu-west-1")  # type: ignore[index]
        drill = subprocess.run(
            [CLI, "drill", "--stack", "dev", "--endpoint", "fraud-scorer", "--project-dir", str(root)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(root),
            timeout=120,  # the drill's own wait is 900 s: a hang fails here
        )
    finally:
        _cli(root, "sandbox", "down")
        if info and pid_alive(int(info["pid"])):
            os.kill(int(info["pid"]), signal.SIGKILL)
    assert drill.returncode == 0, drill.stdout + drill.stderr
    out = " ".join(drill.stdout.split())
    assert "s after the injected fault (time to rollback)" in out and "None" not in out
