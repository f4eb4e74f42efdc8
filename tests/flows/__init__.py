"""Every call flow of issue 13 and of the README's flow table, as two PBX generations write it.

`shapes.py` builds the rows (on `tests/synth.py`'s primitives), each flow saying where its shape
comes from; `pbx.py` is the one door to interpretation; `test_matrix.py` crosses flows with
generations, numberings and modes (CEL + CDR, CDR only).
"""
