"""benchmarks.batch's section of RESULTS.md: replaced in place, appended when absent, kept by `make bench`."""

from __future__ import annotations

from benchmarks.batch import SECTION, extract_section, keep_section, replace_section

OLD = "# Results\n\n## 1. Stages\n\nold stages\n\n" + SECTION + "\n\nold batch\n\n## 4. Ceiling\n\nold ceiling\n"


def test_the_section_is_replaced_in_place_and_nothing_else_changes() -> None:
    new = replace_section(OLD, SECTION + "\n\nnew batch\n")
    assert new == OLD.replace("old batch", "new batch")
    assert extract_section(new) == SECTION + "\n\nnew batch\n"


def test_the_section_is_appended_when_absent_and_kept_by_a_full_rewrite() -> None:
    bench = "# Results\n\n## 1. Stages\n\nnew stages\n"
    assert replace_section(bench, SECTION + "\n\nx\n") == bench + "\n" + SECTION + "\n\nx\n"
    kept = keep_section(bench, OLD)
    assert kept.startswith(bench) and extract_section(kept) == SECTION + "\n\nold batch\n"
    assert keep_section(bench, "# no batch section\n") == bench
