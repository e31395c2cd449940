""""Improve the model from my corrections": the menu action, the dialog's slide list, a run with
live curves ending in the offer to switch, and Cancel leaving no model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.annotations.store import save_document
from histoviewer.core.paths import user_models_dir
from histoviewer.core.phantom import write_phantom


def _normal_box(slide: Path, lesion: np.ndarray):
    """A 400 px square of tissue well away from the lesion."""
    from histoviewer.core.patches.tissue import slide_tissue_map
    from histoviewer.core.slide import open_slide

    with open_slide(slide) as reader:
        tissue = slide_tissue_map(reader, l0_px_per_mask_px=16)
    (x0, y0), (x1, y1) = lesion.min(0), lesion.max(0)
    for y in range(0, 2600, 100):
        for x in range(0, 2600, 100):
            far = x + 400 < x0 - 200 or x > x1 + 200 or y + 400 < y0 - 200 or y > y1 + 200
            if far and tissue.fractions(np.array([x]), np.array([y]), 400)[0] > 0.98:
                return (float(x), float(y)), (float(x + 400), float(y + 400))
    raise AssertionError("no normal tissue found")


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """Two small lobular phantoms with a tumour and a normal region saved as the viewer saves
    them, and one with no labels."""
    root = tmp_path_factory.mktemp("ft-gui")
    out = []
    for seed in (7, 8, 9):
        r = write_phantom(root / f"phantom_{seed}.tiff", width=3000, height=3000, mpp=0.5, lesions="micro:0.35",
                          seed=seed, tumour_morphology="lobular", workers=1)
        out.append(r.slide_path)
    for slide in out[:2]:
        poly = load_annotations(slide.with_suffix(".geojson")).annotation_set.annotations[0].outline()
        slide.with_suffix(".geojson").unlink()  # labels only from the viewer's saved annotations
        slide.with_suffix(".xml").unlink()
        doc = AnnotationDocument(mpp=0.5)
        doc.add(Annotation(ShapeKind.POLYGON, poly, class_name="Tumor"))
        box = _normal_box(slide, np.asarray(poly))
        doc.add(Annotation(ShapeKind.RECTANGLE, box, class_name="Normal"))
        save_document(doc, slide)
    out[2].with_suffix(".geojson").unlink()
    out[2].with_suffix(".xml").unlink()
    return out


@pytest.mark.slow  # trains a CNN on 2 CPU cores
def test_dialog_lists_slides_runs_with_curves_and_offers_the_new_model(qtbot, corrected, tmp_path):
    from histoviewer.qt.finetune_dialog import FinetuneDialog

    d = FinetuneDialog([str(p) for p in corrected], "cnn", device="cpu")
    qtbot.addWidget(d)
    d.show()
    rows = [d.slide_list.topLevelItem(i) for i in range(d.slide_list.topLevelItemCount())]
    assert [r.text(0) for r in rows] == [p.name for p in corrected]
    assert "1 tumour annotation" in rows[0].text(1) and "1 normal annotation" in rows[0].text(1)
    assert rows[2].text(1).startswith("not used:") and "no labels" in rows[2].text(1)
    assert len(d.labelled) == 2 and d.start_button.isEnabled()
    d.epochs.setValue(2)
    switched = []
    d.switchRequested.connect(switched.append)
    d.start(out=tmp_path / "ft.safetensors")
    assert not d.start_button.isEnabled() and d.cancel_button.isEnabled()
    with qtbot.waitSignal(d.job.finished, timeout=120_000) as done:
        pass
    outcome, message = done.args
    assert message == "" and outcome is not None and (tmp_path / "ft.safetensors").exists()
    assert len(d.history) >= 1
    xs, _ys = d.auc_curve.getData()
    assert list(xs) == [h.epoch for h in d.history if h.valid_auc is not None]
    assert "Validation on" in d.status.text() and "AUC" in d.status.text()
    d.switch_box.button(d.switch_box.StandardButton.Yes).click()
    assert switched == [str(tmp_path / "ft.safetensors")]
    d.close()


@pytest.mark.slow  # trains a CNN on 2 CPU cores
def test_cancel_stops_and_saves_nothing(qtbot, corrected):
    from histoviewer.qt.finetune_dialog import FinetuneDialog

    d = FinetuneDialog([str(p) for p in corrected[:2]], "cnn", device="cpu")
    qtbot.addWidget(d)
    d.epochs.setValue(30)
    d.start()
    with qtbot.waitSignal(d.job.epoch, timeout=120_000):
        pass
    d.cancel()
    with qtbot.waitSignal(d.job.finished, timeout=60_000) as done:
        pass
    assert done.args == [None, "cancelled"]
    assert "no model was saved" in d.status.text()
    models = user_models_dir()
    assert not models.exists() or not list(models.iterdir())
    d.close()


def test_menu_action_opens_the_dialog_on_the_open_slides(window, qtbot, corrected):
    from .conftest import open_settled

    open_settled(window, qtbot, corrected[0])
    dialog = window.improve_model()
    qtbot.waitExposed(dialog)
    assert [Path(s.slide) for s in dialog.labelled] == [corrected[0]]
    assert window.improve_action.text().startswith("&Improve the model")
    dialog.close()


def test_warns_before_a_fine_tuned_model_learns_the_same_slides_again(qtbot, corrected, tmp_path):
    """A second round on the slides a fine-tuned model learned from made held-out results
    worse (docs/benchmarks.md): the dialog names the overlap and still lets the user start."""
    from dataclasses import replace

    from histoviewer.core.models.model_file import save_model
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.patches.region_patches import slide_labels
    from histoviewer.core.training.finetune import FINETUNE_KEY
    from histoviewer.qt.finetune_dialog import FinetuneDialog

    model = open_model("cnn", device="cpu")
    parent_name = model.info.name
    # the header a fine-tune from the first slide's corrections writes (finetune_model's record)
    record = {"parent": {"name": parent_name, "content_hash": model.info.content_hash},
              "slides": [slide_labels(corrected[0]).to_dict()]}
    model.info = replace(model.info, name=f"{parent_name}-ft", extra={**model.info.extra, FINETUNE_KEY: record})
    save_model(tmp_path / "ft.safetensors", model)
    model.close()

    d = FinetuneDialog([str(p) for p in corrected], str(tmp_path / "ft.safetensors"), device="cpu")
    qtbot.addWidget(d)
    d.show()
    assert d.relearn_warning.isVisible()
    text = d.relearn_warning.text()
    assert f"{parent_name}-ft" in text and corrected[0].name in text and corrected[1].name not in text
    assert "1 of these slides" in text and "2 of the 2 corrections" in text and parent_name in text
    assert d.start_button.isEnabled()  # a warning, not a refusal
    d.set_slides([corrected[1]])  # slides it has not seen
    assert not d.relearn_warning.isVisible() and d.overlap is None
    d.close()

    plain = FinetuneDialog([str(p) for p in corrected], "cnn", device="cpu")  # not a fine-tuned model
    qtbot.addWidget(plain)
    plain.show()
    assert not plain.relearn_warning.isVisible() and plain.overlap is None
    plain.close()
