"""train.card: the model card of a smoke run."""

from __future__ import annotations


def test_the_card_cites_the_dataset_and_says_screening_aid(binary_run):
    card = (binary_run / "model_card.md").read_text()
    assert "10.17632/rscbjbr9sj.2" in card and "10.1016/j.cell.2018.02.010" in card
    assert "screening aid" in card and "never a diagnosis" in card
