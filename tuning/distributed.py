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

A worker that dies and does not come back: Keras Tuner's oracle would keep
its trial for its ID forever, and the chief would wait forever. Here a
worker names each trial it trains to the chief every `HEARTBEAT_S` seconds
(`WorkerSide`; `CNNZOO_HEARTBEAT_S` in the environment overrides it), and the
chief (`Liveness`) hands a trial out again to the next worker that asks once
it has heard nothing of it for `worker_timeout` seconds (`WORKER_TIMEOUT_S`
by default). So that a worker is there to ask, a worker that asks while
other trials still run is told to wait (Keras Tuner's IDLE) instead of to
stop, and stops only when no trial runs.
"""

import contextlib
import os
import sys
import threading
import time

from cnnzoo import _validation as v
from tuning import _compat_keras_tuner as compat

# How long a worker waits for the chief to answer (Keras Tuner waits an hour):
# long enough for a chief that starts after its workers, short enough that a
# worker whose chief is gone ends by itself.
WORKER_WAIT_S = 600
# A worker names its running trials to the chief this often (seconds); the
# chief hands out again a trial it has heard nothing of for WORKER_TIMEOUT_S
# (ten missed beats).
HEARTBEAT_S = 30
HEARTBEAT_ENV = "CNNZOO_HEARTBEAT_S"
WORKER_TIMEOUT_S = 300
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
    compat.set_client_timeout(WORKER_WAIT_S if seconds is None else seconds)


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


def check_worker_timeout(value):
    """`worker_timeout` as `serve` takes it: seconds > 0, or `None` (wait forever)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        v.fail("Expected `worker_timeout` to be a number of seconds > 0 (or None to wait "
               "forever).", "worker_timeout", value)
    return float(value)


def check_timeout_against_heartbeat(worker_timeout):
    """A chief's `worker_timeout` must outlast two heartbeats, or it takes trials from live workers.

    The heartbeat is this process's (`CNNZOO_HEARTBEAT_S`): set it alike for
    the chief and the workers.
    """
    beat = heartbeat_interval()
    if worker_timeout is not None and worker_timeout < 2 * beat:
        v.fail(f"Expected `worker_timeout` of at least two heartbeats ({2 * beat:g} s): live "
               f"workers report every {beat:g} s ({HEARTBEAT_ENV}), so a shorter one hands "
               f"their trials to others, which then run twice.", "worker_timeout",
               worker_timeout)


def heartbeat_interval():
    """`HEARTBEAT_S`, or the seconds in `CNNZOO_HEARTBEAT_S`."""
    text = os.environ.get(HEARTBEAT_ENV)
    if text is None:
        return HEARTBEAT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        v.fail("Expected the heartbeat interval in seconds > 0.", HEARTBEAT_ENV, text)
    return seconds


# How long a worker told to wait (other trials still run) waits before it
# asks the chief again.
IDLE_WAIT_S = 1.0


class WorkerSide:
    """A worker's side of a distributed search, for the length of its search.

    A context manager that, while it is open:

    - names the trials in `trial_ids` (the tuner keeps it to the trials it
      trains) to the chief every `interval` seconds, from a thread: a
      `get_trial` call each, read-only on the chief; a failed beat is
      ignored (the search loop's own calls report a chief that has gone);
    - makes the tuner wait `IDLE_WAIT_S` before it asks again when every
      answer since it last asked said wait (`IDLE`; `wait_if_idle`, which
      the tuner calls before asking): Keras Tuner's loop would ask again at
      once.
    """

    def __init__(self, oracle, interval=None):
        self.oracle = oracle
        self.interval = heartbeat_interval() if interval is None else interval
        self.trial_ids = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnnzoo-heartbeat",
                                        daemon=True)
        self._got_trial = True

    def __enter__(self):
        import keras_tuner as kt

        create = self.oracle.create_trial
        running = kt.engine.trial.TrialStatus.RUNNING

        def create_trial(tuner_id):
            trial = create(tuner_id)
            if trial.status == running:
                self._got_trial = True
            return trial

        self.oracle.create_trial = create_trial
        self._thread.start()
        return self

    def wait_if_idle(self):
        """Waits `IDLE_WAIT_S` if no answer since the last call gave a trial."""
        if not self._got_trial:
            time.sleep(IDLE_WAIT_S)
        self._got_trial = False

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        del self.oracle.create_trial  # the class's method again

    def _run(self):
        while not self._stop.wait(self.interval):
            for trial_id in list(self.trial_ids):
                # A missed beat is not an error here.
                with contextlib.suppress(Exception):
                    self.oracle.get_trial(trial_id)


def _trial_id(arg):
    return getattr(arg, "trial_id", arg)


class Liveness:
    """The chief's side: when each running trial was last heard of, and what to do then.

    Wraps the oracle's `create_trial`, `update_trial`, `end_trial` and
    `get_trial` (what the workers call) on this oracle object:

    - every call that names a trial records when it was heard of;
    - a worker told to stop while trials still run elsewhere is told to
      wait instead (`IDLE`), so that it can take one of them over;
    - `check()` hands out again (Keras Tuner's retry queue) each running
      trial not heard of for `timeout` seconds.
    """

    def __init__(self, oracle, timeout, clock=time.monotonic):
        self.oracle = oracle
        self.timeout = timeout
        self.clock = clock
        self.seen = {}
        for name in ("create_trial", "update_trial", "end_trial", "get_trial"):
            setattr(oracle, name, self._wrap(name, getattr(oracle, name)))

    def _wrap(self, name, method):
        def wrapped(*args, **kwargs):
            result = method(*args, **kwargs)
            if name == "create_trial":
                self._created(args[0] if args else kwargs["tuner_id"], result)
            elif args:
                self.seen[_trial_id(args[0])] = self.clock()
            if name == "end_trial" and args:
                _forget_ended(self.oracle, _trial_id(args[0]))
            return result

        wrapped.__name__ = name
        return wrapped

    def _created(self, tuner_id, trial):
        import keras_tuner as kt

        status = kt.engine.trial.TrialStatus
        if trial.status == status.RUNNING:
            self.seen[trial.trial_id] = self.clock()
        elif trial.status == status.STOPPED and (self.oracle.ongoing_trials
                                                 or compat.retry_queue(self.oracle)):
            # Keras Tuner stops a worker once every trial is handed out; it
            # waits instead while one may still come back to be run.
            _keep_waiting(self.oracle, tuner_id)
            trial.status = status.IDLE

    def check(self):
        """Hands out again the running trials not heard of for `timeout` seconds.

        Returns:
            `[(tuner_id, trial_id, seconds silent)]` for each one.
        """
        if self.timeout is None:
            return []
        now = self.clock()
        late = []
        for tuner_id, trial in list(self.oracle.ongoing_trials.items()):
            last = self.seen.setdefault(trial.trial_id, now)
            if now - last > self.timeout and _requeue(self.oracle, tuner_id, trial.trial_id):
                late.append((tuner_id, trial.trial_id, now - last))
                self.seen.pop(trial.trial_id, None)
        return late


def _locked(oracle, fn):
    """`fn(oracle)` under the oracle's lock, as Keras Tuner's own oracle methods run.

    The gRPC thread calls those while the chief's loop checks.
    """
    import keras_tuner as kt

    return kt.synchronized(fn)(oracle)


def _requeue(oracle, tuner_id, trial_id):
    def requeue(oracle):
        trial = oracle.ongoing_trials.get(tuner_id)
        if trial is None or trial.trial_id != trial_id:
            return False  # it ended or moved meanwhile
        oracle.ongoing_trials.pop(tuner_id)
        oracle.tuner_ids.discard(tuner_id)
        if trial_id not in compat.retry_queue(oracle):
            compat.retry_queue(oracle).append(trial_id)
        oracle.save()
        return True

    return _locked(oracle, requeue)


def _keep_waiting(oracle, tuner_id):
    _locked(oracle, lambda oracle: oracle.tuner_ids.add(tuner_id))


def _forget_ended(oracle, trial_id):
    # A trial handed out again whose first worker ends it after all: it is
    # not run a second time.
    def forget(oracle):
        trial = oracle.trials.get(trial_id)
        if trial is not None and trial.status in ("COMPLETED", "FAILED") \
                and trial_id in compat.retry_queue(oracle):
            compat.retry_queue(oracle).remove(trial_id)

    _locked(oracle, forget)


def _search_over(oracle):
    # Keras Tuner's condition: no trial running and every worker that asked
    # for a trial has been told to stop; and none waiting to be handed out
    # again.
    return not oracle.ongoing_trials and not oracle.tuner_ids and not compat.retry_queue(oracle)


def serve(oracle, *, poll=0.5, stream=None, worker_timeout=WORKER_TIMEOUT_S):
    """Serves `oracle` to the workers until the search is over.

    The address comes from `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`
    (see `environment`).

    Args:
        oracle: the search's oracle.
        poll: seconds between checks of the search's state.
        stream: where the chief's messages go (default `sys.stdout`).
        worker_timeout: hand a running trial out again when nothing has
            been heard of it for this many seconds (its worker has died);
            `None`: wait for it forever.

    Raises:
        ValueError: the address cannot be listened on (a port in use, a host
            that is not this machine's), or a bad `worker_timeout`.
    """
    from concurrent import futures

    import grpc
    protos, OracleServicer = compat.oracle_service()

    stream = stream or sys.stdout
    worker_timeout = check_worker_timeout(worker_timeout)
    host = os.environ["KERASTUNER_ORACLE_IP"]
    port = os.environ["KERASTUNER_ORACLE_PORT"]
    address = f"{host}:{port}"
    remaining = oracle.remaining_trials()
    if remaining is not None and remaining <= 0 and not oracle.ongoing_trials \
            and not compat.retry_queue(oracle):
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
    liveness = Liveness(oracle, worker_timeout)
    server.start()
    print(f"Chief listening on {address}: start workers with "
          f"`cnnzoo tune --worker ID --chief <this host>:{port}` (same options).",
          file=stream, flush=True)
    last_note = None
    try:
        while True:
            time.sleep(poll)
            for tuner_id, trial_id, silent in liveness.check():
                print(f"Chief: nothing heard from {tuner_id} on trial {_number(trial_id)} "
                      f"for {silent:.0f} s; handing it to the next worker that asks.",
                      file=stream, flush=True)
            if not servicer.stop_triggered:
                continue
            if _search_over(oracle):
                break
            if last_note is None:
                last_note = time.monotonic()
            elif time.monotonic() - last_note > 30:
                waiting = ", ".join(f"{tid} (trial {_number(t.trial_id)})"
                                    for tid, t in oracle.ongoing_trials.items())
                if compat.retry_queue(oracle):
                    queued = ", ".join(_number(t) for t in compat.retry_queue(oracle))
                    waiting = (f"{waiting}; " if waiting else "") + \
                        f"a worker to take trial {queued}"
                print(f"Chief: all trials handed out; waiting for {waiting or 'workers'}",
                      file=stream, flush=True)
                last_note = time.monotonic()
    finally:
        # A grace period lets the last worker's stop answer reach it.
        server.stop(grace=2).wait()
    print(f"Chief: search complete ({len(oracle.trials)} trials).", file=stream, flush=True)


def _number(trial_id):
    """A trial's number as the logs show it (IDs count from 0, numbers from 1)."""
    return str(int(trial_id) + 1) if str(trial_id).isdigit() else str(trial_id)


# -- local workers (`cnnzoo tune --workers N`) ----------------------------------------

WORKER_LOGS = "workers"  # under the search's folder: worker_<i>.log


def free_loopback_address():
    """`"127.0.0.1:PORT"` with a port free now (the chief binds it moments later)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _run_worker(settings, log_path):
    """A local worker process: the search of `settings` (a worker's), its output in `log_path`."""
    import tuning

    with open(log_path, "a", buffering=1) as log:
        sys.stdout = sys.stderr = log
        try:
            tuning.run(settings, stream=log)
        except BaseException as error:  # the log says why; the exit code tells the chief
            print(f"{type(error).__name__}: {error}", file=log)
            raise SystemExit(1)


@contextlib.contextmanager
def local_workers(settings, count, address):
    """Starts `count` workers of search `settings` on this machine, as processes.

    Each is `settings` with `worker="i"` and `chief=address`, its own share
    of the cores (`threads`, unless given), its output in
    `<out>/workers/worker_<i>.log`. Yields the log folder; on leaving, waits
    for the workers (they end once the chief says the search is over) and
    raises `SearchFailedError` naming the log of one that failed.
    """
    import dataclasses
    import multiprocessing

    folder = os.path.join(settings.out, WORKER_LOGS)
    os.makedirs(folder, exist_ok=True)
    threads = settings.threads
    if threads == "auto":
        threads = max(1, (os.cpu_count() or 1) // count)
    # "spawn": a fresh interpreter, not a fork of this one's TensorFlow.
    context = multiprocessing.get_context("spawn")
    procs = []
    for i in range(1, count + 1):
        worker = dataclasses.replace(settings, workers=None, chief=address, worker=str(i),
                                     threads=threads, overwrite=False, quiet=False)
        log = os.path.join(folder, f"worker_{i}.log")
        proc = context.Process(target=_run_worker, args=(worker, log), name=f"worker{i}")
        proc.start()
        procs.append((proc, log))
    try:
        yield folder
    except BaseException:  # the chief failed or was interrupted: its workers go too
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.join()
        raise
    failed = None
    for proc, log in procs:
        proc.join(timeout=WORKER_WAIT_S)
        if proc.is_alive():
            proc.terminate()
            proc.join()
        if proc.exitcode and failed is None:
            failed = log
    if failed is not None:
        from tuning.tuners import SearchFailedError

        raise SearchFailedError(f"A local worker failed; its output is in {failed}.")
