"""What a run holds, read and edited in place: its record (name, tags, status...),
its params, its stored sequences and its artifacts.

``RunData`` is a base of :class:`runstore.tracking.run.Run`; its methods work the same on
a writer and on a read view (a view's edits are written too). The tracking side (the
hot path, flushes, close) stays in ``run.py``.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from time import time as _time
from typing import TYPE_CHECKING, Any, Callable

from . import artifacts as _artifacts, values as _values
from ..errors import InvalidParamError, RunNotFoundError, SequenceNotFoundError
from ..storage import records as _rec
from .run_args import _key_parts, _opt_str, _parent_id, _tag_list
from .sequence import Sequence, _ClosedBuffer

if TYPE_CHECKING:
    from ..analysis.keys import RunInfo  # an annotation only (see pyproject's ignore_imports)
    from .run import Run

_NO_DEFAULT = object()


class RunData:
    """The record, params, stored sequences and artifacts of a run (see the module)."""

    # -- the record ----------------------------------------------------------------
    def _rec(self) -> dict:
        if self._record is None:
            env = self.repo._env
            with env.read() as txn:
                record = _rec.get_record(env, txn, self._id)
            if record is None:
                raise RunNotFoundError(f"run {self._id} does not exist (was it deleted?)")
            self._record = record
        return self._record

    def _modify_in(self, txn, change: Callable[[dict], Any]) -> dict:
        env = self.repo._env
        record = _rec.get_record(env, txn, self._id)
        if record is None:
            raise RunNotFoundError(f"run {self._id} does not exist in {self.repo.path} (was it deleted?)")
        change(record)
        _rec.put_record(env, txn, self._id, record)
        return record

    def _modify(self, change: Callable[[dict], Any]) -> None:
        self._keep("_record", self.repo._env.write(lambda txn: self._modify_in(txn, change)))

    def _keep(self, attr: str, stored: dict) -> None:
        """Hold the record or params just written. A view shares these dicts with the
        run table of the selection it came from (selections do not keep a view per
        run: iterating 100,000 of them must leave nothing for the cyclic GC), so it
        changes them in place: the next view of that run made from the same selection
        sees the change."""
        mine = self.__dict__.get(attr) if self._is_view else None
        if mine is None or mine is stored:
            setattr(self, attr, stored)
        else:
            mine.clear()
            mine.update(stored)

    def refresh(self) -> "Run":
        """Re-read the record and params (another process may have changed them)."""
        self._record = self._params = None
        return self

    @property
    def id(self) -> str:
        return self._id

    @property
    def hash(self) -> str:
        """Aim's name for :attr:`id` (also ``run.hash`` in queries)."""
        return self._id

    @property
    def info(self) -> "RunInfo":
        """HydraFlow's ``RunInfo``: ``run_id``, ``run_dir`` (the artifacts folder), ``job_name``."""
        from ..analysis.keys import RunInfo

        return RunInfo(self._id, self.repo.path / "artifacts" / self._id, self.experiment)

    @property
    def handle(self) -> str:
        """The 8-character short name of the run shown by ``runstore ls`` (see runstore.tracking.handles)."""
        from .handles import handle

        return handle(self._id)

    @property
    def name(self) -> str | None:
        return self._rec()["name"]

    @name.setter
    def name(self, value: str | None) -> None:
        value = _opt_str(value, "name")
        self._modify(lambda r: r.update(name=value))

    @property
    def experiment(self) -> str:
        return self._rec()["experiment"]

    @experiment.setter
    def experiment(self, value: str) -> None:
        value = _opt_str(value, "experiment") or "default"
        self._modify(lambda r: r.update(experiment=value))

    @property
    def description(self) -> str | None:
        return self._rec()["description"]

    @description.setter
    def description(self, value: str | None) -> None:
        value = _opt_str(value, "description")
        self._modify(lambda r: r.update(description=value))

    @property
    def tags(self) -> list[str]:
        return list(self._rec()["tags"])

    def add_tag(self, tag: str) -> None:
        (tag,) = _tag_list([tag])
        self._modify(lambda r: r["tags"].append(tag) if tag not in r["tags"] else None)

    def remove_tag(self, tag: str) -> None:
        self._modify(lambda r: r["tags"].remove(tag) if tag in r["tags"] else None)

    @property
    def status(self) -> str:
        return self._rec()["status"]

    @property
    def created_at(self) -> float:
        return self._rec()["created_at"]

    @property
    def ended_at(self) -> float | None:
        return self._rec()["ended_at"]

    @property
    def duration(self) -> float | None:
        """Seconds from creation to end (to now while running)."""
        record = self._rec()
        if record["ended_at"] is not None:
            return record["ended_at"] - record["created_at"]
        return _time() - record["created_at"] if record["status"] == "running" else None

    @property
    def parent(self) -> str | None:
        return self._rec()["parent"]

    @parent.setter
    def parent(self, value: "Run | str | None") -> None:
        parent = _parent_id(value)
        if parent == self._id:
            raise ValueError("a run cannot be its own parent")
        self._modify(lambda r: r.update(parent=parent))

    @property
    def children(self) -> list["Run"]:
        """Runs whose parent is this run, in creation order."""
        return list(self.repo.query(f"run.parent == '{self._id}'"))

    @property
    def archived(self) -> bool:
        return self._rec()["archived"]

    @archived.setter
    def archived(self, value: bool) -> None:
        self._modify(lambda r: r.update(archived=bool(value)))

    @property
    def hostname(self) -> str:
        return self._rec()["hostname"]

    @property
    def env(self) -> dict:
        """The environment captured when the run was created (git, command, python,
        packages, host, cuda; see ``capture_env``); ``{}`` when none was. In queries:
        ``run.env.git.commit``."""
        return copy.deepcopy(self._rec().get("env") or {})

    @property
    def pid(self) -> int:
        return self._rec()["pid"]

    # -- params --------------------------------------------------------------------
    def _param_tree(self) -> dict:
        if self._params is None:
            env = self.repo._env
            with env.read() as txn:
                self._params = _rec.get_params(env, txn, self._id)
        return self._params

    @property
    def params(self) -> dict:
        """Every param as plain dicts and lists (a copy)."""
        return copy.deepcopy(self._param_tree())

    def __setitem__(self, key: str, value: Any) -> None:
        _values.check_param_key(key)
        value = _values.normalize_params(value, key)
        env = self.repo._env

        def work(txn):
            params = _rec.get_params(env, txn, self._id)
            params[key] = value
            _rec.put_params(env, txn, self._id, params)
            return params

        self._keep("_params", env.write(work))

    def update_params(self, params: dict[str, Any]) -> None:
        """Set several top-level params in one write transaction, all or nothing
        (``run[key] = value`` for each, validated first). Importers use it: one
        durable commit per run instead of one per param."""
        if not isinstance(params, dict):
            raise InvalidParamError(f"update_params takes a dict of top-level key -> value, got {type(params).__name__}")
        clean = {}
        for key, value in params.items():
            _values.check_param_key(key)
            clean[key] = _values.normalize_params(value, key)
        env = self.repo._env

        def work(txn):
            stored = _rec.get_params(env, txn, self._id)
            stored.update(clean)
            _rec.put_params(env, txn, self._id, stored)
            return stored

        self._keep("_params", env.write(work))

    def __getitem__(self, key: str | tuple) -> Any:
        """A param by dotted key (``run["hparams.lr"]``) or Aim's tuple key (``run["hparams", "lr"]``)."""
        node: Any = self._param_tree()
        parts = _key_parts(key)
        key = ".".join(map(str, parts))
        for part in parts:
            if isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
                node = node[part]
                continue
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"run {self._id} has no param {key!r}; top-level params: {sorted(self._param_tree())}")
            node = node[part]
        return copy.deepcopy(node)

    def __delitem__(self, key: str) -> None:
        env = self.repo._env

        def work(txn):
            params = _rec.get_params(env, txn, self._id)
            if key not in params:
                raise KeyError(f"run {self._id} has no top-level param {key!r}")
            del params[key]
            _rec.put_params(env, txn, self._id, params)
            return params

        self._keep("_params", env.write(work))

    def __contains__(self, key: str) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    # -- Hydra output folders (the logic lives in runstore.experiment.rundirs) -----
    @classmethod
    def load(cls, path_or_paths: Any) -> Any:
        """The run recorded in a Hydra output folder by ``@runstore.main``
        (``runstore.json``); a ``RunCollection`` for an iterable of folders, e.g.
        ``Run.load(runstore.iter_run_dirs("multirun"))`` (HydraFlow's ``Run.load``)."""
        # An upward facade like get/cfg/impl below: imported on use, so the
        # tracking layer does not load the experiment layer.
        from ..experiment.rundirs import load

        return load(path_or_paths)

    # -- analysis access (the logic lives in runstore.analysis.keys) -----------------------
    def get(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        """A value by dotted key: a param (``"hparams.lr"``), else an attribute
        (``"status"``), else a sequence summary (``"loss.last"``,
        ``"loss@subset=val.max"``). ``KeyError`` naming the closest keys when
        found nowhere, unless ``default`` is given (a callable is called with the run)."""
        from ..analysis.keys import run_get

        return run_get(self, key) if default is _NO_DEFAULT else run_get(self, key, default)

    @property
    def cfg(self) -> Any:
        """The params as an OmegaConf config; structured (IDE completion) for runs
        from ``RunCollection.typed(Config)``."""
        from ..analysis.keys import run_cfg

        return run_cfg(self)

    @property
    def impl(self) -> Any:
        """The object built by ``RunCollection.with_impl(factory)`` for this run (created once)."""
        from ..analysis.keys import run_impl

        return run_impl(self)

    # -- sequences -----------------------------------------------------------------
    def _stored_sequences(self) -> list[Sequence]:
        return [Sequence(self, s.pop("name"), s.pop("context"), seq_id, s, False)
                for seq_id, s in self.repo._run_sequences(self._id)]

    # Reads of a sequence's points go through these two (a run tracked through a
    # server reads them from it: runstore.server.client.RemoteRun).
    def _summary_of(self, seq: Sequence) -> dict:
        """``seq``'s summary (count, last, ...), everything tracked so far included."""
        if self._writable:
            self.flush()
        return seq._summary

    def _points_of(self, seq: Sequence) -> tuple:
        """The four columns of ``seq`` (one of this run's sequences; flushed first)."""
        seq._require_points()
        return self.repo._read_sequence(self._id, seq._id)

    def _part_of(self, seq: Sequence, work: Callable) -> Any:
        """``work(reader, record)`` over ``seq``'s blocks (runstore.storage.locate); None
        when the sequence is gone."""
        seq._require_points()
        return self.repo._read_part(self._id, seq._id, work)

    def _stored_index(self) -> dict:
        """(name, frozen context) -> stored Sequence, rebuilt only when sequence data
        changed (the repository's sequence version): a loop of ``run.sequence``
        lookups over a run's sequences is one scan, not one scan per lookup."""
        version = self.repo._versions()[1]
        cached = getattr(self, "_stored_idx", None)
        if cached is None or cached[0] != version:
            index = {(seq.name, _values.freeze(seq.context)): seq for seq in self._stored_sequences()}
            cached = self._stored_idx = (version, index)
        return cached[1]

    def metrics(self) -> list[Sequence]:
        """The run's numeric sequences (Aim's ``run.metrics()``), in creation order."""
        if self._writable:
            self.flush()
        return self._stored_sequences()

    def sequences(self) -> list[tuple[str, dict]]:
        """Every (name, context) of the run, in creation order."""
        if self._writable:
            self.flush()
        # straight from the stored records' names and contexts: a Sequence object per
        # pair, then a whole summary dict per pair, was most of the cost for a run with
        # 10,000 metrics
        return self.repo._run_sequence_names(self._id)

    def delete_sequence(self, name: str, context: dict | None = None) -> None:
        """Delete a sequence and all its points."""
        ctx = _values.canonical_context(context, _values.check_name(name))
        with self._lock:
            if self._writable:
                self.flush()
            target = next((s for s in self._stored_sequences() if s.name == name and s.context == ctx), None)
            if target is None:
                raise SequenceNotFoundError(
                    f"run {self._id} has no {_values.describe(name, ctx)}; it has {self.sequences()}"
                )
            env = self.repo._env
            env.write(lambda txn: _rec.delete_sequence(env, txn, self._id, target._id))
            key = (name, _values.freeze(ctx))
            with self._buf_lock:  # the sequence index (Run._buf_lock)
                local = self._seqs.pop(key, None) if self._writable else None
                if local is not None:
                    local._buf = _ClosedBuffer(self._id)
                    self._seq_list.remove(local)

    # -- artifacts -----------------------------------------------------------------
    @property
    def artifacts_dir(self) -> Path:
        """This run's folder inside the repository (created on first use)."""
        path = self.repo.path / "artifacts" / self._id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def artifacts(self) -> list[dict]:
        return [dict(a) for a in self._rec().get("artifacts", [])]

    def log_artifact(self, path: str | os.PathLike, kind: str | None = None, name: str | None = None, *,
                     level: str | None = None, epoch: int | None = None, link: bool = False) -> dict:
        """Copy a file (or folder) into the run's artifacts folder and record it.

        ``level`` and ``epoch`` label where it belongs (the Experiment Manager's levels:
        ``"experiment"``, ``"trial"``, ``"trial_run"``, ``"epoch"``); an epoch's artifacts
        are kept under ``epoch_<n>/`` so every epoch can have its ``checkpoint.pth``.
        ``link=True`` records a symbolic link to the file instead of copying it (big
        files that stay where they are; the record says ``linked``)."""
        src, name = _artifacts.named_source(path, name)
        if epoch is not None:
            if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
                raise ValueError(f"artifact epoch must be a whole number >= 0, not {epoch!r}")
            name = f"epoch_{int(epoch)}/{name}"
        if not link:
            _artifacts.check_source(src, self.repo.path)  # a loop is refused before copying
        dest = self.artifacts_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        # All or nothing: a temporary copy renamed into place, removed on any error.
        size = _artifacts.copy(src, dest, link=link)
        entry = {"name": name, "kind": kind, "path": str(dest), "size": size, "created_at": _time()}
        if level is not None:
            entry["level"] = str(level)
        if epoch is not None:
            entry["epoch"] = int(epoch)
        if link:
            entry["linked"] = True
            entry["source"] = str(src.resolve())

        def change(record):
            arts = [a for a in record.setdefault("artifacts", []) if a["name"] != name]
            arts.append(entry)
            record["artifacts"] = arts

        self._modify(change)
        return dict(entry)

    def __repr__(self) -> str:
        try:
            rec = self._rec()
            return f"<Run {self._id} name={rec['name']!r} experiment={rec['experiment']!r} status={rec['status']}>"
        except Exception:
            return f"<Run {self._id}>"

