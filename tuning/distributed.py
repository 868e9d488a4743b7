"""A search across processes and machines, with Keras Tuner's own gRPC oracle.

One chief holds the oracle and hands out trials; workers train them. Keras
Tuner reads its roles from three environment variables
(`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP`, `KERASTUNER_ORACLE_PORT`);
`environment(...)` sets them for the length of a search and puts the old
values back. The chief serves with Keras Tuner's `OracleServicer` but its
own loop (`serve`): it says where it listens, checks every half second
(Keras Tuner's loop sleeps 20 s) whether the search is over, and returns
when every trial has ended and every worker has been told to stop.

A worker that starts after the search is over (the shared folder holds
every trial, ended, and no chief answers) says so and ends at once, instead
of waiting `WORKER_WAIT_S` for a chief that has gone. A worker that dies and
starts again with the same ID gets its unfinished trial back (the oracle
keeps each worker's ongoing trial by ID). A chief that restarts resumes from
its state on disk; trials that were running are handed out again.
"""

import contextlib
import os
import sys
import time

from cnnzoo import _validation as v

# How long a worker waits for the chief to answer (Keras Tuner waits an hour):
# long enough for a chief that starts after its workers, short enough that a
# worker whose chief is gone ends by itself.
WORKER_WAIT_S = 600
ENV_KEYS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
CHIEF_ID = "chief"


def parse_address(text, name="chief"):
    """`"HOST:PORT"` -> `(host, port)`; a ValueError otherwise."""
    if not isinstance(text, str) or ":" not in text:
        v.fail("Expected HOST:PORT, e.g. 127.0.0.1:8000.", name, text)
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        v.fail("Expected HOST:PORT with a port in 1..65535, e.g. 127.0.0.1:8000.", name, text)
    return host, port


def worker_tuner_id(worker):
    """The Keras Tuner ID of worker `worker` (an int or a name)."""
    text = str(worker).strip()
    if not text or any(c.isspace() for c in text):
        v.fail("Expected a worker ID without spaces, e.g. 0, 1 or gpu-a.", "worker", worker)
    # Keras Tuner treats any ID containing "chief" as the chief.
    if CHIEF_ID in text.lower():
        v.fail("Expected a worker ID that does not contain 'chief'.", "worker", worker)
    if text.startswith("worker"):
        return text
    return f"worker{text}" if text.isdigit() else f"worker-{text}"


def current_role():
    """`"local"`, `"chief"` or `"worker"`, from Keras Tuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    return "chief" if CHIEF_ID in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


@contextlib.contextmanager
def environment(chief=None, worker=None):
    """Sets Keras Tuner's role variables for a chief or a worker, then restores them.

    Args:
        chief: `"HOST:PORT"`: where the chief listens (alone) or where the
            workers find it (with `worker`). `None` runs locally.
        worker: this worker's ID. Needs `chief`.

    Yields:
        The role: `"local"`, `"chief"` or `"worker"`.
    """
    if worker is not None and chief is None:
        v.fail("A worker needs the chief's address: pass --chief HOST:PORT too.", "worker",
               worker)
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    try:
        if chief is None:
            for key in ENV_KEYS:
                os.environ.pop(key, None)
            role = "local"
        else:
            host, port = parse_address(chief)
            os.environ["KERASTUNER_ORACLE_IP"] = host
            os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
            if worker is None:
                os.environ["KERASTUNER_TUNER_ID"] = CHIEF_ID
                role = "chief"
            else:
                os.environ["KERASTUNER_TUNER_ID"] = worker_tuner_id(worker)
                role = "worker"
        yield role
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def worker_wait(seconds=None):
    """Sets how long workers wait for the chief's answers (`WORKER_WAIT_S`)."""
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = WORKER_WAIT_S if seconds is None else seconds


def chief_answers(oracle, seconds=3.0):
    """True when the chief behind a worker's `oracle` answers within `seconds`.

    Leaves workers waiting `WORKER_WAIT_S` for later answers (`worker_wait`).
    """
    import grpc

    worker_wait(seconds)
    try:
        oracle.get_space()
    except grpc.RpcError:
        return False
    finally:
        worker_wait()
    return True


def _search_over(oracle):
    # Keras Tuner's condition: no trial running and every worker that asked
    # for a trial has been told to stop.
    return not oracle.ongoing_trials and not oracle.tuner_ids


def serve(oracle, *, poll=0.5, stream=None):
    """Serves `oracle` to the workers until the search is over.

    The address comes from `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
    (see `environment`).

    Raises:
        ValueError: the address cannot be listened on (a port in use, a host
            that is not this machine's).
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    stream = stream or sys.stdout
    host = os.environ["KERASTUNER_ORACLE_IP"]
    port = os.environ["KERASTUNER_ORACLE_PORT"]
    address = f"{host}:{port}"
    remaining = oracle.remaining_trials()
    if remaining is not None and remaining <= 0 and not oracle.ongoing_trials \
            and not oracle._retry_queue:
        print(f"Chief: the search in this folder is already complete "
              f"({len(oracle.trials)} trials); not serving.", file=stream, flush=True)
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        bound = 0
        detail = f" ({error})"
    else:
        detail = ""
    if not bound:
        v.fail(f"Cannot listen on {address}{detail}: is the port in use, or the host not "
               f"one of this machine's addresses?", "chief", address)
    server.start()
    print(f"Chief listening on {address}: start workers with "
          f"`cnnzoo tune --worker ID --chief <this host>:{port}` (same options).",
          file=stream, flush=True)
    last_note = None
    try:
        while True:
            time.sleep(poll)
            if not servicer.stop_triggered:
                continue
            if _search_over(oracle):
                break
            if last_note is None:
                last_note = time.monotonic()
            elif time.monotonic() - last_note > 30:
                waiting = ", ".join(f"{tid} (trial {int(t.trial_id) + 1})"
                                    for tid, t in oracle.ongoing_trials.items())
                print(f"Chief: all trials handed out; waiting for {waiting or 'workers'}",
                      file=stream, flush=True)
                last_note = time.monotonic()
    finally:
        # A grace period lets the last worker's stop answer reach it.
        server.stop(grace=2).wait()
    print(f"Chief: search complete ({len(oracle.trials)} trials).", file=stream, flush=True)
