"""Emulator clients are shared safely by the threads Pulumi's mock runtime runs appliers on.

CI once failed with a ``ResourceNotFoundException`` that an applier's
``except lam.exceptions.ResourceNotFoundException`` did not catch: two appliers, on two executor
threads, were the first to touch the Lambda client's lazily built exception classes at once.
"""

from __future__ import annotations

import threading

from rollback.sandbox.emulator import Emulator

THREADS = 8


def test_concurrent_callers_share_one_client_whose_modeled_errors_they_can_catch() -> None:
    with Emulator("eu-west-1") as emu:
        barrier = threading.Barrier(THREADS)
        clients: list[object] = []
        caught: list[bool] = []

        def applier() -> None:
            barrier.wait()
            lam = emu.client("lambda")
            clients.append(lam)
            try:
                lam.delete_function_event_invoke_config(FunctionName="no-such-function")
            except lam.exceptions.ResourceNotFoundException:
                caught.append(True)
            except Exception:  # the failure this test is about
                caught.append(False)

        threads = [threading.Thread(target=applier) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        assert len(clients) == THREADS and all(c is clients[0] for c in clients)
        assert caught == [True] * THREADS


def test_stop_forgets_clients_so_a_restarted_emulator_gets_fresh_ones() -> None:
    emu = Emulator("eu-west-1")
    emu.start()
    first = emu.client("sqs")
    emu.stop()
    emu.start()
    try:
        second = emu.client("sqs")
        assert second is not first
        assert second.meta.endpoint_url == emu.endpoint_url
    finally:
        emu.stop()
