"""Annotation model and file formats (GeoJSON as QuPath writes it, CAMELYON/ASAP XML).

Entry points for a front end:

- ``AnnotationDocument``: the open annotations of a slide; commands (``add``, ``remove``,
  ``move``, ``set_vertex``, ``set_class``, ``rename``, ``set_note``, class edits,
  ``import_set``), ``undo``/``redo``, ``subscribe`` for change callbacks, ``paint_list`` /
  ``query_rect`` / ``hit_test`` for the view, ``measure`` and ``class_summaries``.
- ``Annotation`` / ``ShapeKind``: one immutable shape in level-0 px.
- ``load_annotations`` / ``save_annotations``: files by extension, parsed safely.
- ``open_document`` / ``Autosaver`` / ``load_autosave``: autosave beside the slide and recovery.
- ``add_lesion_annotations`` / ``slide_label``: AI lesions to annotations, labels from annotations.
- ``read_regions``: any annotation file as areas (exterior, holes, class, tumour or not,
  annotation or detection) for ground truth, masks and patch labels.
- ``ObjectKind``: annotation or a detection kind (QuPath cells): detections are shown and
  counted, never sized or staged.
- ``ReviewDecision`` / ``Verdict`` / ``review_labels``: the pathologist's decisions on AI
  hotspots, kept in the document (``set_decision``, undoable, autosaved), and the
  ``(polygon_l0, label)`` pairs they give for training.
"""

from histoviewer.core.annotations.classes import DEFAULT_CLASSES, AnnotationClass
from histoviewer.core.annotations.document import AnnotationDocument, ClassSummary, DocumentChange
from histoviewer.core.annotations.files import load_annotations, save_annotations
from histoviewer.core.annotations.labels import SlideLabel, add_lesion_annotations, slide_label
from histoviewer.core.annotations.measure import Measurement, measure
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.regions import Region, RegionFile, read_regions
from histoviewer.core.annotations.review import ReviewDecision, ReviewLabel, Verdict, hotspot_id, review_labels
from histoviewer.core.annotations.shapes import Annotation, ObjectKind, ShapeKind
from histoviewer.core.annotations.spatial import DisplayShape
from histoviewer.core.annotations.store import Autosaver, Recovery, load_autosave, open_document, save_document

__all__ = [
    "DEFAULT_CLASSES",
    "Annotation",
    "AnnotationClass",
    "AnnotationDocument",
    "AnnotationSet",
    "Autosaver",
    "ClassSummary",
    "DisplayShape",
    "DocumentChange",
    "ImportResult",
    "Measurement",
    "ObjectKind",
    "Recovery",
    "Region",
    "RegionFile",
    "ReviewDecision",
    "ReviewLabel",
    "ShapeKind",
    "SlideLabel",
    "Verdict",
    "add_lesion_annotations",
    "hotspot_id",
    "load_annotations",
    "load_autosave",
    "measure",
    "open_document",
    "read_regions",
    "review_labels",
    "save_annotations",
    "save_document",
    "slide_label",
]
