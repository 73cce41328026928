"""Resume asks the barcode readers where a sample is when no device can say (labloop/run/identity.py
``locating``): two reads in a row that both name the sample put it at the reader's station; one misread, a no-read
or a neighbour's label never does, and the question stays an operator's (``sample.unlocated``)."""

from __future__ import annotations

from types import SimpleNamespace

from labloop.run.identity import locating


class Reader:
    """A reader that returns the codes it is given, one per read (None: a no-read)."""

    def __init__(self, codes):
        self.codes = list(codes)
        self.code = SimpleNamespace(get=lambda: self.current)
        self.current = None

    def trigger(self):
        self.current = self.codes.pop(0) if self.codes else None
        return SimpleNamespace(wait=lambda timeout: None)


def lab_with(reader, answer=None):
    return SimpleNamespace(devices={"barcode": reader}, locate=lambda sample: answer)


SPEC = SimpleNamespace(lab=SimpleNamespace(identity=SimpleNamespace(readers={"balance": "barcode"})))


def test_two_reads_naming_the_sample_put_it_at_the_readers_station():
    assert locating(SPEC, lab_with(Reader(["ab-0003", "ab-0003"])))("ab-0003") == "balance"


def test_a_misread_a_no_read_or_another_label_leaves_it_unlocated():
    assert locating(SPEC, lab_with(Reader(["ab-0003", "ab-0005"])))("ab-0003") is None  # the second read disagrees
    assert locating(SPEC, lab_with(Reader(["ab-0003", None])))("ab-0003") is None
    assert locating(SPEC, lab_with(Reader(["ab-0004", "ab-0004"])))("ab-0003") is None  # another crucible sits there
    assert locating(SPEC, lab_with(Reader([])))("ab-0003") is None  # nothing on the balance


def test_the_labs_own_answer_comes_first_and_costs_no_read():
    reader = Reader(["ab-0003", "ab-0003"])
    assert locating(SPEC, lab_with(reader, answer="furnace2"))("ab-0003") == "furnace2"
    assert len(reader.codes) == 2  # not read


def test_a_campaign_without_readers_is_the_labs_answer_alone():
    spec = SimpleNamespace(lab=SimpleNamespace(identity=None))
    assert locating(spec, lab_with(Reader(["ab-0003", "ab-0003"])))("ab-0003") is None
