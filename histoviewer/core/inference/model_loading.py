"""A model that loads on a background thread while the slide is already being read.

Start-up: loading the default CNN costs ~1 s on 2 cores (importing torch is most of it),
one core's worth of work during which the other core would idle. ``PendingModel`` reads the
model file's description at once (cheap and unverified: the input size and scale, so the
grid and the reads can be planned) and loads and verifies the classifier on a thread; the
headless pipeline (``pipeline.classify_cells``) waits for it at its first model call, by
which time the reader has decoded the first regions. ``result()`` refuses a model whose
verified description differs from the one the work was planned with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models.classifier import ModelInfo, PatchClassifier
from histoviewer.core.models.model_file import load_model, read_model_info_unverified
from histoviewer.core.models.registry import resolve_model_path

__all__ = ["PendingModel", "loaded_model"]


class PendingModel:
    """A classifier that ``load`` builds on a thread; ``info`` (its file's description, read
    beforehand: ``read_model_info``) is known at once. ``result()`` waits for the classifier
    and raises what ``load`` raised. ``close()`` waits for the load and releases the
    classifier (safe to call twice).
    """

    def __init__(self, info: ModelInfo, load: Callable[[], PatchClassifier]) -> None:
        self.info = info
        self._load_fn = load
        self._model: PatchClassifier | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._closed = False
        self._thread = threading.Thread(
            target=self._load, name="histoviewer-model-loader", daemon=True
        )
        self._thread.start()

    @classmethod
    def open(cls, spec: str | Path, device: str = "auto") -> PendingModel:
        """``open_model(spec, device)`` on a thread; raises ``ModelLoadError`` at once for a
        model that cannot be found or whose header is not a model's."""
        path = resolve_model_path(spec)
        return cls(
            read_model_info_unverified(path), lambda: load_model(path, device=device)
        )

    def _load(self) -> None:
        try:
            self._model = self._load_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits (result)
            self._error = exc
        finally:
            self._done.set()

    @property
    def input(self) -> InputSpec:
        return self.info.input

    def done(self) -> bool:
        return self._done.is_set()

    def result(self) -> PatchClassifier:
        """The loaded classifier (waits for it); raises what loading raised, and
        ``ModelLoadError`` when it reads patches of another size or scale than ``info``
        said (the file changed on disk in between). What is written about the model comes
        from the loaded one."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._model is not None
        if self._model.info.input != self.info.input:  # the reads were planned for this input
            raise ModelLoadError(f"model {self.info.name!r}: its file changed while it was being loaded; run again")
        return self._model

    def close(self) -> None:
        self._thread.join()
        if self._model is not None and not self._closed:
            self._closed = True
            self._model.close()


def loaded_model(model: PatchClassifier | PendingModel) -> PatchClassifier:
    """``model`` itself, or the classifier a ``PendingModel`` loads (waiting for it)."""
    return model.result() if isinstance(model, PendingModel) else model
