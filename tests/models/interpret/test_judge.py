"""The keyword judge: a report shows a name when it states one of its phrases, in either
number, and never when it negates it."""

from __future__ import annotations

import numpy as np

from models.interpret.base import Candidate
from models.interpret.keywords import KeywordJudge, build_corpus
from models.interpret.labels import inflections

# Every form occurs in two reports: the corpus keeps terms of at least two reports.
REPORTS = [
    "Coronary artery calcification is noted.",  # 0 singular
    "Dense coronary artery calcifications.",  # 1 plural
    "Coronary artery calcifications are present.",  # 2 plural
    "No coronary artery calcification.",  # 3 negated
    "No coronary artery calcifications.",  # 4 negated, plural
    "Small bilateral pleural effusion.",  # 5
    "Bilateral pleural effusions, small.",  # 6
    "Moderate ascites. Liver is normal.",  # 7
    "Small volume ascites.",  # 8
    "Heart size is normal.",  # 9
    "Mild coronary artery calcification.",  # 10
    "No coronary artery calcification or pleural effusion.",  # 11 negated
    "Trace pleural effusion.",  # 12
    "Layering pleural effusions.",  # 13
    "Heart size is normal. No coronary artery calcifications.",  # 14 negated, plural
]


def _scores(candidate: Candidate) -> np.ndarray:
    judge = KeywordJudge(build_corpus(REPORTS))
    sc = judge.score(candidate, np.arange(len(REPORTS)))
    return np.asarray(sc.values >= sc.threshold)


def test_a_label_phrase_matches_its_head_word_in_either_number_and_never_negated() -> None:
    hit = _scores(Candidate("coronary artery calcification", ("coronary artery calcification",)))
    np.testing.assert_array_equal(np.flatnonzero(hit), [0, 1, 2, 10])
    neg = _scores(Candidate("no coronary artery calcification", ("no coronary artery calcification",)))
    np.testing.assert_array_equal(np.flatnonzero(neg), [3, 4, 11, 14])


def test_a_free_text_name_matches_content_words_in_either_number() -> None:
    # an LLM's name (no corpus terms): "bilateral" is a modifier, not content
    hit = _scores(Candidate("Bilateral pleural effusions"))
    np.testing.assert_array_equal(np.flatnonzero(hit), [5, 6, 12, 13])
    assert not _scores(Candidate("Pleural thickening")).any()  # every content word must occur
    assert not _scores(Candidate("Renal calculi")).any()  # words no two reports share match nothing


def test_words_that_end_in_s_keep_their_own_form_first() -> None:
    assert inflections("ascites")[0] == "ascites"
    assert np.flatnonzero(_scores(Candidate("ascites", ("ascites",)))).tolist() == [7, 8]
    assert "calcification" in inflections("calcifications") and "arteries" in inflections("artery")
    assert "effusions" in inflections("effusion") and "masses" in inflections("mass")


def test_the_score_is_the_share_of_phrases_found() -> None:
    judge = KeywordJudge(build_corpus(REPORTS))
    sc = judge.score(Candidate("ascites; pleural effusion", ("ascites", "pleural effusion")), np.array([5, 7, 9, 11]))
    np.testing.assert_allclose(sc.values, [0.5, 0.5, 0.0, 0.0])
    assert sc.graded and sc.threshold == 0.5
