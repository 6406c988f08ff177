"""Known answers for folding papermill's injected cell into the visible parameters cell."""
import nbformat

from lib.parameters import INJECTED_MARK, MERGED_HEADER, assignments, merge_injected_parameters, merged_source

TEMPLATE = ('profile = "smoke"\nresults_dir = "results"\noverrides = {}\n'
            'study_overrides = {}  # fields of lib.transfer_study.TransferStudy, e.g. {"seeds": [0]}')
INJECTED = f'{INJECTED_MARK}profile = "mini"\nresults_dir = "results"\noverrides = {{"seeds": [0]}}\n'


def test_injected_values_replace_the_declared_ones_and_comments_stay():
    merged = merged_source(TEMPLATE, INJECTED)
    assert merged.splitlines() == [
        MERGED_HEADER, 'profile = "mini"', 'results_dir = "results"', 'overrides = {"seeds": [0]}',
        'study_overrides = {}  # fields of lib.transfer_study.TransferStudy, e.g. {"seeds": [0]}']
    assert not merged.startswith(INJECTED_MARK), "a later papermill run must not take it for its own cell"
    assert assignments(merged) == {"profile": '"mini"', "results_dir": '"results"', "overrides": '{"seeds": [0]}',
                                   "study_overrides": "{}"}


def test_merging_twice_keeps_one_header_and_the_latest_values():
    again = merged_source(merged_source(TEMPLATE, INJECTED), f'{INJECTED_MARK}profile = "class"\n')
    assert again.count(MERGED_HEADER) == 1 and 'profile = "class"' in again and 'overrides = {"seeds": [0]}' in again


def test_an_undeclared_injected_name_is_appended_not_lost():
    assert merged_source('profile = "smoke"', f'{INJECTED_MARK}profile = "mini"\nextra = 3\n').splitlines()[-1] == "extra = 3"


def test_merge_removes_the_injected_cell_and_keeps_the_visible_cells_tags():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(TEMPLATE, metadata={"tags": ["parameters", "hide-cell"]}),
                nbformat.v4.new_code_cell(INJECTED, metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("print(profile)")]
    assert merge_injected_parameters(nb)
    assert len(nb.cells) == 2 and nb.cells[0].metadata.tags == ["parameters", "hide-cell"]
    assert 'profile = "mini"' in nb.cells[0].source
    assert not merge_injected_parameters(nb), "nothing left to merge"
