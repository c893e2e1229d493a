"""codetransformer's transformers as callweave source transforms (see the README)."""

from callweave.transforms.constants import asconstants
from callweave.transforms.exceptions import pattern_matched_exceptions
from callweave.transforms.strings import interpolated_strings

__all__ = [
    "asconstants",
    "interpolated_strings",
    "pattern_matched_exceptions",
]
