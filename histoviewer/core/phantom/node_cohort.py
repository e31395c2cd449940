"""Phantom patients for the learned node classifier: node lesions drawn at random, maps
synthesised (``node_maps``), features computed (``analysis.node_features``).

Each patient has 3-5 nodes. A node is negative, or holds one lesion whose size is drawn
from one of these groups (largest diameter, mm): ITC 0.05-0.18, micro 0.25-1.75, macro
2.25-4.0, *near the ITC/micro border* 0.18-0.22, *near the micro/macro border* 1.8-2.2;
a positive node sometimes holds an extra ITC. A share of the maps is *noisy* (extra
false-positive specks, ``MapNoise``). Every draw comes from the cohort's seed, so a
training cohort and a held-out cohort of other seeds share no patient.

Slides are 16,000 px square at 0.5 um/px (8 x 8 mm, one node); maps have the default CNN's
geometry (96 px patches at 0.972 um/px: ~93 um cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histoviewer.core.analysis.lesions import LesionParams
from histoviewer.core.analysis.node_features import node_features
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.phantom.node_maps import (
    MapNoise,
    PhantomNodeMap,
    synthesise_node_map,
)
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.core.training.node_classifier import NodeExample

__all__ = ["COHORT_MPP", "COHORT_SIDE_PX", "GROUPS", "CohortNode", "phantom_cohort"]

COHORT_MPP = 0.5
COHORT_SIDE_PX = 16000
# (group, probability, diameter range mm or None for a negative node)
GROUPS: tuple[tuple[str, float, tuple[float, float] | None], ...] = (
    ("negative", 0.40, None),
    ("itc", 0.12, (0.05, 0.18)),
    ("micro", 0.14, (0.25, 1.75)),
    ("macro", 0.12, (2.25, 4.0)),
    ("near 0.2 mm", 0.11, (0.18, 0.22)),
    ("near 2 mm", 0.11, (1.8, 2.2)),
)
EXTRA_ITC_SHARE = 0.25  # of positive nodes


@dataclass(frozen=True, eq=False)
class CohortNode:
    """One synthesised node: its patient, name, group, noise, map and example."""

    patient: str
    node: str
    group: str
    lesions: str
    noisy: bool
    map: PhantomNodeMap
    example: NodeExample

    @property
    def near_border(self) -> bool:
        return self.group.startswith("near")


def phantom_cohort(
    patients: int,
    seed: int,
    threshold: float,
    *,
    noisy_share: float = 0.3,
    first_patient: int = 0,
) -> list[CohortNode]:
    """``patients`` phantom patients (module docstring) with their nodes' maps and features
    at lesion ``threshold`` (the operating point of the model whose maps these stand for)."""
    rng = np.random.default_rng([int(seed), 0xC0407])
    params = LesionParams(threshold=threshold, threshold_source="model operating point")
    probs = np.array([g[1] for g in GROUPS])
    out = []
    for p in range(first_patient, first_patient + patients):
        patient = f"patient_{p:03d}"
        for n in range(int(rng.integers(3, 6))):
            group, _w, span = GROUPS[
                int(rng.choice(len(GROUPS), p=probs / probs.sum()))
            ]
            tokens = [] if span is None else [f"{rng.uniform(*span):.4f}"]
            if tokens and rng.random() < EXTRA_ITC_SHARE:
                tokens.append(f"{rng.uniform(0.05, 0.15):.4f}")
            lesions = ",".join(tokens)
            noisy = bool(rng.random() < noisy_share)
            noise = MapNoise.draw(rng, noisy=noisy)
            node_seed = int(rng.integers(0, 2**31))
            m = synthesise_node_map(
                COHORT_SIDE_PX, COHORT_SIDE_PX, COHORT_MPP, lesions, node_seed, noise
            )
            found = analyse_map(m.encoded, m.frame, params)
            name = f"{patient}_node_{n}"
            example = NodeExample(
                f"phantom {name} (seed {node_seed}, lesions '{lesions}')",
                patient,
                m.truth,
                node_features(m.encoded, found),
            )
            out.append(CohortNode(patient, name, group, lesions, noisy, m, example))
    return out


def rule_label(node: CohortNode, threshold: float) -> NodeLabel:
    """The rule-based label of ``node``'s map (what ``analyze`` would state)."""
    return analyse_map(
        node.map.encoded, node.map.frame, LesionParams(threshold=threshold)
    ).label
