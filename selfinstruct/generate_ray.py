"""`generate --ray`: the windows still to do are drafted by Ray actors, each holding one engine built once (the
transformers engine on CPUs, vLLM on GPUs); the drafts come back to the driver, which alone settles them
(near-duplicates, the refusal quota, names in use) and commits them in window order through the same
GenerateRun. Resume, the manifest and the pairs are those of a run in one process with the same seed and
options, with one window per engine step in both (batching can change the numbers an engine computes).

An actor that dies is restarted by Ray and its windows are drafted again; nothing is committed twice, since
only the driver writes and it commits each window once. Ray is imported here only."""

from __future__ import annotations

import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from .config import UserError
from .generate import QuestionWriter, WindowDraft

# How often Ray brings back a dead actor (rebuilding its engine) and reruns the windows it held.
RESTARTS = 3


class DraftWorker:
    """One engine in one Ray worker process."""

    def __init__(self, model_path: str, config, language: str, entities: dict):
        from .backends import load_generator

        generator = load_generator(Path(model_path), config.backend, config.quantization, config.batch_size,
                                   config.seed)
        self.writer = QuestionWriter(generator, config, language, entities)

    def engine_record(self) -> dict:
        return self.writer.generator.record

    def draft(self, windows) -> list[WindowDraft]:
        return self.writer.draft(windows)


@contextmanager
def ray_drafts(config, run_state, todo):
    """Starts (or joins) Ray and the workers; yields the drafts of `todo` in window order."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'selfinstruct[ray]'") from None
    local = config.ray == "local"
    try:
        ray.init(address=None if local else config.ray, include_dashboard=False, log_to_driver=False,
                 num_cpus=config.ray_workers * config.ray_cpus if local else None)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(f"--ray {config.ray}: could not start or join Ray ({str(e).splitlines()[0][:200]})") from None
    try:
        worker = ray.remote(num_cpus=config.ray_cpus, num_gpus=config.ray_gpus, max_restarts=RESTARTS,
                            max_task_retries=RESTARTS)(DraftWorker)
        entities = ray.put(run_state.entities)
        actors = [worker.remote(str(run_state.model.path), config, run_state.corpus.language, entities)
                  for _ in range(config.ray_workers)]
        record = ray.get(actors[0].engine_record.remote())
        run_state.record_engine({**record, "ray": {"address": config.ray, "workers": config.ray_workers,
                                                   "cpus_per_worker": config.ray_cpus,
                                                   "gpus_per_worker": config.ray_gpus}})
        print(f"generate: {config.ray_workers} Ray workers on {record['engine']}", file=sys.stderr)
        yield in_window_order(ray, actors, run_state, todo, config.windows_per_step)
    finally:
        if local:
            ray.shutdown()


def in_window_order(ray, actors, run_state, todo, per_step: int):
    """Each idle actor takes the next `per_step` windows; finished drafts wait until every window before
    them has been handed on, so the driver settles them in the order one process would."""
    queue = deque(todo[i:i + per_step] for i in range(0, len(todo), per_step))
    idle, running, ready = list(actors), {}, {}
    order = [w.index for w in todo]
    next_up = 0
    while queue or running:
        while idle and queue:
            actor = idle.pop()
            running[actor.draft.remote([(w, run_state.seen_until(w)) for w in queue.popleft()])] = actor
        finished, _ = ray.wait(list(running), num_returns=1)
        for ref in finished:
            idle.append(running.pop(ref))
            try:
                drafts = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise UserError(f"a Ray worker failed {RESTARTS + 1} times ({str(e).splitlines()[0][:200]}); the "
                                "windows committed so far are kept: run the same command again to go on") from None
            ready.update((d.window.index, d) for d in drafts)
        while next_up < len(order) and order[next_up] in ready:
            yield ready.pop(order[next_up])
            next_up += 1
