"""Counting with confidence: near-integer quotients are sure, half-way and large counts are not."""

from __future__ import annotations

import random

from edge.shelf.counting import count_pieces


def test_exact_quotient_is_certain() -> None:
    r = count_pieces(250.2, 25.0, 0.01, 0.1, 0.95)
    assert (r.count, r.uncertain) == (10, False)
    assert r.confidence > 0.99


def test_half_way_quotient_is_uncertain_with_its_weight() -> None:
    r = count_pieces(262.5, 25.0, 0.01, 0.1, 0.95)
    assert r.uncertain
    assert r.confidence < 0.6
    assert r.weight_g == 262.5
    assert r.quotient == 10.5


def test_no_unit_weight_reports_weight_only() -> None:
    r = count_pieces(100.0, None, 0.01, 0.1, 0.95)
    assert (r.count, r.uncertain, r.weight_g) == (0, True, 100.0)


def test_two_percent_variation_counts_until_ambiguous() -> None:
    rng = random.Random(7)
    unit = 10.0
    for n in range(1, 1500, 7):
        weight = sum(rng.gauss(unit, unit * 0.02) for _ in range(n))
        r = count_pieces(weight, unit, 0.02, 0.05, 0.95)
        if not r.uncertain:
            assert r.count == n, f"{n} pieces counted as {r.count} with confidence {r.confidence}"
        if n <= 60:
            assert not r.uncertain, f"{n} pieces should be a sure count"
        if n >= 700:
            assert r.uncertain, f"{n} pieces at 2 % variation cannot be a sure count"


def test_unit_weight_from_a_small_sample_lowers_confidence() -> None:
    direct = count_pieces(2000.0, 10.0, 0.02, 0.05, 0.95)
    sampled = count_pieces(2000.0, 10.0, 0.02, 0.05, 0.95, sample_pieces=5)
    assert sampled.confidence < direct.confidence
