"""The sweep's grid: rows and columns labelled with two axes' values, a compact grid
otherwise, thumbnails in the cells, the saved notebook's static grid (escaped, no key),
Cancel all with a confirming click, and a cell opening its run's card on the same watch."""

from __future__ import annotations

from modelslab_widget.sweepgrid import CONFIRM

from .conftest import wait_for

PARAMETERS = [{"key": "prompt", "type": "string", "required": True},
              {"key": "seed", "type": "integer", "required": False}]
STEPS = [("Text to Image", 0.2), ("Image Upscaler", 0.2)]





def test_two_axes_make_labelled_rows_and_columns_with_a_thumbnail_per_cell(
        qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    axes = {"prompt": ["a cat", "<b>a fox</b>"], "seed": [1, 2, 3]}
    sweep = sweeps(workflow, axes, grid=True, client=qclient, poll_interval=0.05)
    grid = sweep.grid_view()
    heads, *rows = grid.grid_box.children  # the seeds' headings, then per prompt: heading, row
    assert [h.value for h in heads.children] == [f'<div class="mlw-card mlw-sweep-axis">seed={s}'
                                                 "</div>" for s in (1, 2, 3)]
    assert len(rows) == 2 * 2 and [len(row.children) for row in rows[1::2]] == [3, 3]
    sweep.wait(30)
    wait_for(lambda: all(cell.image.value for cell in grid.cells), timeout=10)
    assert "prompt=&lt;b&gt;a fox&lt;/b&gt;" in rows[2].value
    assert all("Completed" in cell.text.value for cell in grid.cells)
    html = grid.static_html()
    assert html.count("data:image/") == 6 and "<b>a fox" not in html
    assert "6 completed" in html and qsim.api_key not in html
    assert "text/html" in grid.mimebundle()  # done: the saved notebook keeps the grid


def test_a_list_of_runs_is_a_compact_grid_that_wraps(qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sweep = sweeps(workflow, [{"prompt": "a"}, {"prompt": "b"}], client=qclient)
    grid = sweep.grid_view()
    assert len(grid.grid_box.children) == 2
    assert "auto-fill" in grid.grid_box.layout.grid_template_columns
    assert "text/html" not in grid.mimebundle() or sweep.done


def test_cancel_all_asks_once_then_cancels_every_run(qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS,
                                 steps=[("Text to Image", 20.0), ("Image Upscaler", 20.0)])
    sweep = sweeps(workflow, [{"prompt": f"p{n}"} for n in range(4)], client=qclient)
    grid = sweep.grid_view()
    wait_for(lambda: qsim.runs_started(workflow) == 3, timeout=10)
    grid.cancel_button.click()
    assert grid.cancel_button.description == CONFIRM and qsim.request_count("cancel") == 0
    grid.cancel_button.click()
    assert sweep.wait(15) == {"cancelled": 3, "skipped": 1}
    assert qsim.request_count("cancel") == 3


def test_a_cell_opens_its_runs_card_on_the_same_watch(qsim, qclient, sweeps):
    workflow = qsim.add_workflow(parameters=PARAMETERS, steps=STEPS)
    sweep = sweeps(workflow, [{"prompt": "a"}], client=qclient)
    sweep.wait(30)
    grid = sweep.grid_view()
    cell = grid.cells[0]
    assert not cell.button.disabled
    cell.button.click()
    card = grid.card
    assert card is not None and card.execution_id == sweep.runs[0].execution_id
    assert card.run_watch is sweep.runs[0].watch  # one request stream for the run
