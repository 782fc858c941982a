"""Model calls that Ctrl-C and a time limit can stop.

``InferenceSession.run`` holds the calling thread in native code until the graph is
done, and Python runs signal handlers only in the main thread between bytecodes: a
Ctrl-C waits for the run to finish, which for an untrusted graph may be never. Here the
run happens in a worker thread while the calling thread waits on it; a
``KeyboardInterrupt`` raised in the wait (SIGINT, or SIGTERM under
:func:`ast_onnx.cli.interrupt.terminate_as_interrupt`) sets the call's
``RunOptions.terminate``, which onnxruntime checks between operators (inside a ``Loop``
too), and is raised again once the worker has stopped. The same flag enforces
``RuntimeOptions.run_timeout``.
"""

from __future__ import annotations

import threading
from typing import Any

from ast_onnx.errors import ModelTimeoutError
from ast_onnx.runtime.providers import import_onnxruntime


def run_session(
    session: Any, output_names: list[str], feeds: dict[str, Any], timeout: float | None = None
) -> list[Any]:
    """``session.run(output_names, feeds)`` that a signal or ``timeout`` seconds can stop.

    Any other session (OpenVINO's) is called as it is: it has no terminate flag, and
    :func:`~ast_onnx.runtime.loading.open_session` refuses ``run_timeout`` for it.

    Args:
        session: An onnxruntime ``InferenceSession``.
        output_names: Outputs to return.
        feeds: Input name -> array.
        timeout: Seconds the call may take (None: no limit).

    Raises:
        ModelTimeoutError: The call ran past ``timeout`` and was stopped.
        KeyboardInterrupt: The process was interrupted; the run was stopped first.
    """
    ort = import_onnxruntime()
    if not isinstance(session, ort.InferenceSession):
        return list(session.run(output_names, feeds))
    run_options = ort.RunOptions()
    # Errors of a run come back as its exception; onnxruntime would also log them on
    # stderr, a stopped run as a red "Exiting due to terminate flag" line.
    run_options.log_severity_level = 4
    if timeout is None and threading.current_thread() is not threading.main_thread():
        return list(session.run(output_names, feeds, run_options))  # no signal reaches this thread
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def work() -> None:
        try:
            outcome["outputs"] = session.run(output_names, feeds, run_options)
        except BaseException as e:  # handed to the caller's thread below
            outcome["error"] = e
        finally:
            done.set()

    # Waits on an Event, not Thread.join: a join interrupted by a signal can mark a
    # running thread as finished (CPython 3.11), and the process would then exit with
    # onnxruntime still running and abort.
    worker = threading.Thread(target=work, name="ast-onnx-run", daemon=True)
    worker.start()
    try:
        finished = done.wait(timeout)  # interruptible: a signal's handler runs in this wait
    except BaseException:
        run_options.terminate = True
        done.wait()
        raise
    if not finished:
        run_options.terminate = True
        done.wait()
        if "outputs" not in outcome:
            raise ModelTimeoutError(
                f"the model call ran longer than run_timeout={timeout:g} s and was stopped"
            ) from outcome.get("error")
    if "error" in outcome:
        raise outcome["error"]
    return list(outcome["outputs"])
