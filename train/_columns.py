"""The columns of an evaluation's ``predictions.csv``, shared by ``train.evaluate`` and its figures."""
from __future__ import annotations

PREDICTIONS = "predictions.csv"
MEMBER = "member:"          # column prefix of a member's own P(AS)
READER = "reader:"          # column prefix of a simulated reader's call (1 = AS)
GRADE_COLUMNS = ("grade_left", "grade_right", "reader_grade_left", "reader_grade_right")
