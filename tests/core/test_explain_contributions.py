"""The handcrafted model's explanation: feature terms that add up to the logit of the P shown."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.errors import ModelError
from histoviewer.core.explain.contributions import (
    CALIBRATED_UNITS,
    FEATURE_GROUPS,
    feature_contributions,
    group_of,
)
from histoviewer.core.models.features import FEATURE_NAMES
from histoviewer.core.models.registry import open_model
from tests.core.model_helpers import toy_patches


@pytest.fixture(scope="module")
def handcrafted():
    return open_model("handcrafted")


def test_every_feature_has_a_group_a_pathologist_reads():
    groups = {group_of(n) for n in FEATURE_NAMES}
    assert groups == set(FEATURE_GROUPS)  # every group used, every feature placed


def test_terms_add_up_to_the_calibrated_logit_of_the_probability_shown(handcrafted):
    patches, _ = toy_patches(6, seed=3)
    shown = handcrafted.predict_proba(patches)
    for c, p in zip(feature_contributions(handcrafted, patches), shown, strict=True):
        assert (
            c.units == CALIBRATED_UNITS
        )  # the shipped model's Platt calibration is linear
        assert c.contribution.sum() + c.intercept == pytest.approx(c.logit, abs=1e-9)
        assert 1 / (1 + np.exp(-c.logit)) == pytest.approx(float(p), abs=1e-5)
        assert c.probability == pytest.approx(float(p), abs=1e-6)
        assert sum(v for _, v in c.groups()) == pytest.approx(
            c.contribution.sum(), abs=1e-9
        )
        top = c.top(5)
        assert [abs(t[3]) for t in top] == sorted(
            (abs(t[3]) for t in top), reverse=True
        )
        assert abs(top[0][3]) == pytest.approx(np.abs(c.contribution).max())


def test_the_two_toy_classes_are_explained_by_different_nuclei(handcrafted):
    patches, labels = toy_patches(8, seed=5)
    contribs = feature_contributions(handcrafted, patches)
    size = "nuclear size and pleomorphism"
    by_label = {
        lab: np.mean(
            [
                dict(c.groups())[size]
                for c, l in zip(contribs, labels, strict=True)
                if l == lab
            ]
        )
        for lab in (0, 1)
    }
    assert (
        by_label[1] > by_label[0]
    )  # large pale blobs push towards tumour more than small dots


def test_a_cnn_has_no_feature_terms():
    with pytest.raises(ModelError, match="handcrafted"):
        feature_contributions(
            open_model("cnn", device="cpu"), np.zeros((1, 96, 96, 3), np.uint8)
        )
