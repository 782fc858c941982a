"""Ray Data batch tagging on more than one node and under faults (toy model, tens of files).

- a simulated 3-node cluster (``ray.cluster_utils.Cluster``, 1 CPU per node): every
  file exactly once in the one output, the scoring actors on different nodes;
- a scoring actor that dies mid-run (``os._exit`` in its process): Ray restarts it and
  retries its batch, no row lost or duplicated, the restart in the worker's log;
- ``ast-classify --ray`` killed with SIGKILL mid-run (its whole process group, Ray's
  processes included), then the same command again: every file exactly once, a torn
  last line repaired.

Each test checks the rows against what the files are (their paths, and the scores of
:meth:`Runtime.classify` for the same files), not against another run of the pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import SR

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ast-onnx[distributed]'")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pandas, pyarrow)")
psutil = pytest.importorskip("psutil", reason="psutil (a Ray dependency) is not installed")

from ray.cluster_utils import Cluster  # noqa: E402

from ast_onnx.distributed import RayOptions, classify_to_file, pipeline, read_results  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.ray_faults]

N_FILES = 36
TOL = 1e-5
STORE = 100 * 1024**2  # object store per node: Ray's minimum is 75 MB


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from helpers.runtime_toy import toy_model

    return toy_model(tmp_path_factory.mktemp("toy") / "toy.onnx", activation="softmax")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """``N_FILES`` short WAVs (0.3-1.5 s, some longer than one window) in two folders."""
    root = tmp_path_factory.mktemp("faults-corpus")
    rng = np.random.default_rng(19)
    paths = []
    for i in range(N_FILES):
        path = root / f"d{i % 2}" / f"clip{i:03d}.wav"
        path.parent.mkdir(exist_ok=True)
        wave = 0.1 * rng.standard_normal(int((0.3 + 1.2 * rng.random()) * SR))
        sf.write(path, wave.astype(np.float32), SR)
        paths.append(str(path))
    return root, sorted(paths)


@pytest.fixture(scope="module")
def reference(toy, corpus):
    """Top-5 labels and scores of every file from a plain in-process Runtime."""
    from ast_onnx.runtime import Runtime

    runtime = Runtime(toy)
    _, paths = corpus
    return {p: runtime.classify(p, top_k=5) for p in paths}


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes of 1 CPU each, in one private temp dir."""
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="rayf")  # short: Ray's socket paths live under it
    node = {"num_cpus": 1, "object_store_memory": STORE}
    c = Cluster(
        initialize_head=True,
        head_node_args={**node, "include_dashboard": False, "temp_dir": temp},
    )
    try:
        for _ in range(2):
            c.add_node(**node)
        c.wait_for_nodes()
        ray.init(address=c.address, logging_level="WARNING")
        ray.data.DataContext.get_current().enable_progress_bars = False
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def recording_scorer(log_dir: Path, kill_after: int | None = None) -> type:
    """A :class:`Scorer` that records where it starts and, once, dies mid-run.

    Every actor start appends ``pid node-id`` to ``log_dir/starts``. With
    ``kill_after``, the first actor to receive its ``kill_after``-th batch creates
    ``log_dir/killed`` and exits its process at once (``os._exit``: no cleanup, as a
    segfault or the OOM killer would); later actors (and the restarted one) go on.
    The class is local, so Ray pickles it by value to the workers.
    """
    base = pipeline.Scorer

    class RecordingScorer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.batches = 0
            node = ray.get_runtime_context().get_node_id()
            with open(log_dir / "starts", "a") as f:
                f.write(f"{os.getpid()} {node}\n")

        def __call__(self, batch):
            self.batches += 1
            if kill_after is not None and self.batches == kill_after:
                try:
                    os.close(os.open(log_dir / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass
                else:
                    os._exit(1)
            return super().__call__(batch)

    return RecordingScorer


def _starts(log_dir: Path) -> list[tuple[int, str]]:
    lines = (log_dir / "starts").read_text().split("\n")
    return [(int(pid), node) for pid, node in (line.split() for line in lines if line)]


def _assert_rows(rows: list[dict], reference: dict) -> None:
    """Exactly one row per file, each equal to the single-process Runtime's result."""
    paths = [r["path"] for r in rows]
    assert len(paths) == len(reference) and set(paths) == set(reference)
    for row in rows:
        ref = reference[row["path"]]
        assert row["error"] is None, row
        assert row["labels"] == [p.label for p in ref.labels]
        np.testing.assert_allclose(row["scores"], [p.score for p in ref.labels], atol=TOL, rtol=0)


def test_three_node_cluster_every_file_exactly_once(
    cluster, toy, corpus, reference, tmp_path, monkeypatch
):
    assert len(ray.nodes()) == 3 and ray.cluster_resources()["CPU"] == 3
    monkeypatch.setattr(pipeline, "Scorer", recording_scorer(tmp_path))
    root, _ = corpus
    out = tmp_path / "out.jsonl"
    summary = classify_to_file(toy, [root], out, RayOptions(batch_size=2, num_actors=2))
    assert (summary.files, summary.classified, summary.failed) == (N_FILES, N_FILES, 0)
    _assert_rows(read_results(out), reference)
    assert len(out.read_text().splitlines()) == N_FILES
    # Two 1-CPU actors on 1-CPU nodes: they ran on two different nodes.
    assert len({node for _, node in _starts(tmp_path)}) == 2


def _worker_logs(cluster) -> str:
    logs = Path(cluster.head_node.get_logs_dir_path())
    return "".join(p.read_text(errors="replace") for p in sorted(logs.glob("worker-*")))


def test_a_scoring_actor_killed_mid_run_loses_no_row(
    cluster, toy, corpus, reference, tmp_path, monkeypatch
):
    monkeypatch.setattr(pipeline, "Scorer", recording_scorer(tmp_path, kill_after=3))
    root, _ = corpus
    out = tmp_path / "out.parquet"
    summary = classify_to_file(toy, [root], out, RayOptions(batch_size=2, num_actors=2))
    assert (tmp_path / "killed").is_file(), "the fault was not injected"
    assert (summary.classified, summary.failed) == (N_FILES, 0)
    _assert_rows(read_results(out), reference)
    starts = _starts(tmp_path)
    assert len(starts) == 3 and len({pid for pid, _ in starts}) == 3  # 2 actors + 1 restart
    # The restarted actor says so in its log (forwarded to the driver, and on disk).
    deadline = time.monotonic() + 20
    while "scoring actor restarted" not in _worker_logs(cluster):
        assert time.monotonic() < deadline, "no restart warning in the worker logs"
        time.sleep(0.2)


# ----- the driver killed with SIGKILL, then the same command again -----


def _classify_cmd(toy: Path, root: Path, out: Path) -> list[str]:
    script = Path(sys.executable).with_name("ast-classify")
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "ast_onnx.cli.classify"]
    # --batch-size 1: many small batches, so the first rows land well before the end.
    return [*head, str(toy), str(root), "--ray", "--output", str(out), "--batch-size", "1"]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid and _alive(proc):
                found.append(proc)
        except (ProcessLookupError, PermissionError):
            continue
    return found


@pytest.fixture
def ray_env(tmp_path):
    """Environment of an ``ast-classify --ray`` subprocess: its own local Ray instance.

    Its own ``RAY_TMPDIR`` (so it never joins a cluster another process started on this
    machine, e.g. the module's test cluster) and no ``RAY_ADDRESS``.
    """
    temp = tempfile.mkdtemp(prefix="rayd")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = temp
    yield env
    shutil.rmtree(temp, ignore_errors=True)


def _kill_when_rows_appear(proc: subprocess.Popen, out: Path, total: int) -> tuple[list, str]:
    """SIGKILL ``proc``'s process group once ``out`` has a row.

    Returns the processes the driver had started (Ray's GCS, raylet, workers...) and
    their names, so the caller can check that they died with it.
    """
    deadline = time.monotonic() + 120
    while not (out.is_file() and out.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no row after 120 s"
        time.sleep(0.02)
    children = psutil.Process(proc.pid).children(recursive=True)
    names = " ".join(p.name() for p in children if _alive(p))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert out.read_text().count("\n") < total, "the run finished before the kill"
    return children, names


def test_driver_killed_with_sigkill_then_rerun_resumes(toy, corpus, reference, tmp_path, ray_env):
    root, _ = corpus
    out = tmp_path / "out.jsonl"
    cmd = _classify_cmd(toy, root, out)
    first = subprocess.Popen(
        cmd, env=ray_env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sid = first.pid  # a new session's id is its leader's pid
    children, names = _kill_when_rows_appear(first, out, N_FILES)
    assert "raylet" in names and "gcs_server" in names, names  # a local instance ran
    deadline = time.monotonic() + 30
    while left := _session_processes(sid) + [p for p in children if _alive(p)]:
        assert time.monotonic() < deadline, f"still running: {[p.pid for p in left]}"
        time.sleep(0.2)  # the driver's Ray processes went with its process group
    kept = read_results(out)
    assert 1 <= len(kept) < N_FILES
    with out.open("a") as f:  # as if the kill had come in the middle of a write
        f.write('{"path": "' + kept[0]["path"][:10])

    second = subprocess.Popen(
        cmd, env=ray_env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = second.communicate(timeout=300)
    err = err.decode(errors="replace")
    assert second.returncode == 0, err
    assert f"{len(kept)} already in" in err and "Traceback" not in err
    rows = read_results(out)
    _assert_rows(rows, reference)
    assert [r["path"] for r in rows[: len(kept)]] == [r["path"] for r in kept]  # kept, not redone
    text = out.read_text()
    assert text.endswith("\n") and len(text.splitlines()) == N_FILES
    for line in text.splitlines():
        json.loads(line)
    deadline = time.monotonic() + 30
    while left := _session_processes(second.pid):  # a clean exit stops Ray too
        assert time.monotonic() < deadline, [p.cmdline() for p in left]
        time.sleep(0.2)
