"""The shuffled-label baseline's donor rule (models/interpret/driver.donors)."""

from __future__ import annotations

import numpy as np

from models.interpret.base import Candidate
from models.interpret.driver import donors


def test_donor_is_the_next_name_sharing_no_phrase() -> None:
    names = [Candidate("coronary artery calcification; atherosclerosis",
                       ("coronary artery calcification", "atherosclerosis")),
             Candidate("atherosclerosis; coronary artery calcification",
                       ("atherosclerosis", "coronary artery calcification")),  # a family of the same concept
             Candidate("Pleural effusion"),  # a free-text (LLM) name: phrases from the label
             Candidate("cirrhosis; ascites", ("cirrhosis", "ascites"))]
    got = donors(names, np.arange(4))
    assert got == [2, 2, 3, 0]  # 0 skips 1 (shared phrases); 1 takes 2; the cycle wraps
    for i, d in enumerate(got):
        assert d is not None and d != i
        assert not ({p.lower() for p in names[i].terms} & {p.lower() for p in names[d].terms})


def test_no_donor_when_every_other_name_shares_a_phrase() -> None:
    names = [Candidate("effusion; pleural effusion", ("effusion", "pleural effusion")),
             Candidate("Pleural  Effusion; Effusion"), Candidate("effusion")]
    assert donors(names, np.array([2, 0, 1])) == [None, None, None]
    assert donors([Candidate("a"), Candidate("b")], np.array([1, 0])) == [1, 0]
