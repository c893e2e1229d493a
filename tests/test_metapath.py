"""``callweave._metapath.spec_from_others``: the other finders' spec."""

from __future__ import annotations

import importlib.machinery
import sys

from callweave._metapath import spec_from_others


class _Finder:
    def __init__(self, answer=None, on_find=None):
        self.answer = answer
        self.on_find = on_find
        self.asked: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        self.asked.append(fullname)
        if self.on_find is not None:
            self.on_find()
        return self.answer


def test_skipped_and_finderless_entries_are_passed_over(monkeypatch):
    spec = importlib.machinery.ModuleSpec("cw_meta_mod", None)
    skipped, answering, later = _Finder(spec), _Finder(spec), _Finder(spec)
    monkeypatch.setattr(sys, "meta_path", [skipped, object(), answering, later])
    assert spec_from_others("cw_meta_mod", None, None, lambda f: f is skipped) is spec
    assert (skipped.asked, answering.asked, later.asked) == ([], ["cw_meta_mod"], [])


def test_none_when_no_finder_answers_even_if_one_edits_the_meta_path(monkeypatch):
    remover = _Finder(on_find=lambda: sys.meta_path.remove(remover))
    last = _Finder()
    monkeypatch.setattr(sys, "meta_path", [remover, last])
    assert spec_from_others("cw_meta_missing", None, None, lambda f: False) is None
    assert last.asked == ["cw_meta_missing"]  # not skipped by the removal
