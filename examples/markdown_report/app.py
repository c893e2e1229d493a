"""A tiny documentation builder: renders Markdown pages with Python-Markdown.

Nothing here mentions callweave; `callweave run app.py` profiles the library it uses.
"""

import logging
import sys

import markdown

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

SECTION = """
## Section {n}

Some *emphasis*, some **strong text**, a [link](https://example.org/{n}) and `code`.

- item one with _style_
- item two with a [reference][ref{n}]
- item three

> A quote with **bold** and `inline code`.

```
code block {n}
```

[ref{n}]: https://example.org/ref/{n}
"""


def build_page(sections: int) -> str:
    return f"# Page with {sections} sections\n" + "".join(
        SECTION.format(n=n) for n in range(sections)
    )


def main() -> int:
    pages = [build_page(n) for n in (5, 10, 80)]
    md = markdown.Markdown(extensions=["fenced_code", "tables"])
    total = 0
    for page in pages:
        html = md.reset().convert(page)
        total += len(html)
    print(f"rendered {len(pages)} pages, {total} bytes of HTML")
    return 0


if __name__ == "__main__":
    sys.exit(main())
